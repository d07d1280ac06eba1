"""`train --accelerator --devices --num-nodes --strategy --precision`: passed to Lightning's
Trainer, checked first, absent ones leaving make_trainer's defaults (one device)."""

import pytest

from audiotask.cli.common import CommandError
from audiotask.cli.main import build_parser
from audiotask.cli.train import training_options


def options(*flags):
    return training_options(build_parser().parse_args(["train", "--protocol", "P", "--output", "unused", *flags]))


def test_device_flags_reach_the_trainer_keywords():
    assert {"accelerator", "devices", "num_nodes", "strategy", "precision"}.isdisjoint(options())
    given = options("--accelerator", "gpu", "--devices", "4", "--num-nodes", "2", "--strategy", "ddp",
                    "--precision", "bf16-mixed")
    assert {key: given[key] for key in ("accelerator", "devices", "num_nodes", "strategy", "precision")} == {
        "accelerator": "gpu", "devices": 4, "num_nodes": 2, "strategy": "ddp", "precision": "bf16-mixed"}
    assert options("--devices", "0,2")["devices"] == [0, 2]
    assert options("--devices", "auto")["devices"] == "auto"


@pytest.mark.parametrize("flags, message", [
    (("--devices", "two"), "--devices takes a count"), (("--devices", "0"), "--devices must be positive"),
    (("--num-nodes", "0"), "--num-nodes must be positive"),
])
def test_wrong_device_values_are_refused_before_any_work(flags, message):
    with pytest.raises(CommandError, match=message):
        options(*flags)


def test_a_run_trains_at_the_precision_asked(tmp_path):
    import torch

    from audiotask.cli.main import main
    from audiotask.core.model import Model
    from audiotask.testing.dummies import make_sound_event_protocol

    database = make_sound_event_protocol(tmp_path / "data", name="Tiny", files_per_subset=(2, 1, 1), seed=1)
    arguments = ["train", "--database", str(database), "--protocol", "Tiny.SpeakerDiarization.Events", "--task", "vad",
                 "--model", "Debug", "--duration", "1", "--batch-size", "4", "--max-steps", "2", "--num-workers", "0",
                 "--accelerator", "cpu", "--devices", "1", "--precision", "64-true", "--cache", str(tmp_path / "cache"),
                 "--output", str(tmp_path / "run"), "--no-progress"]
    assert main(arguments) == 0
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert {value.dtype for value in state["state_dict"].values() if value.is_floating_point()} == {torch.float64}
    assert isinstance(Model.from_pretrained(tmp_path / "run" / "model"), Model)
