"""`train --from`: a task fine-tunes a saved or imported model, its head rebuilt where the
task needs another, the encoder trained whole, gently or not at all."""

import pytest
import torch

from audiotask.cli.main import main
from audiotask.core.model import Model

TINY = "Tiny.SpeakerDiarization.Events"


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny protocol and an imported Silero VAD (random weights of the package's layout)."""
    from safetensors.torch import save_file

    from audiotask.pretrained.silero_vad import import_silero_vad
    from audiotask.testing.dummies import make_sound_event_protocol
    from audiotask.testing.pretrained_layouts import random_silero_vad_state as random_layout

    root = tmp_path_factory.mktemp("fine-tuning")
    database = make_sound_event_protocol(root / "data", name="Tiny", files_per_subset=(3, 1, 1), seed=3)
    save_file(random_layout(), root / "weights.safetensors")
    model = import_silero_vad(root / "silero", weights=root / "weights.safetensors")
    return root, database, model


def fine_tune(root, database, model, output, *options):
    return main(["train", "--database", str(database), "--protocol", TINY, "--from", str(model), "--duration", "2",
                 "--batch-size", "4", "--max-steps", "3", "--num-workers", "0", "--cache", str(root / "cache"),
                 "--learning-rate", "0.01", "--output", str(output), "--no-progress", *options])


def changed(before: Model, after: Model) -> set[str]:
    old, new = before.state_dict(), after.state_dict()
    return {name.split(".")[0] for name in old if not torch.equal(old[name], new[name])}


def test_a_frozen_encoder_keeps_its_weights_and_the_head_learns(pretrained):
    root, database, model = pretrained
    assert fine_tune(root, database, model, root / "frozen", "--task", "vad", "--freeze-encoder") == 0
    assert changed(Model.from_pretrained(model), Model.from_pretrained(root / "frozen" / "model")) == {"final_conv"}


def test_an_encoder_at_a_lower_learning_rate_learns_too(pretrained):
    root, database, model = pretrained
    assert fine_tune(root, database, model, root / "gentle", "--task", "vad", "--encoder-lr-scale", "0.1") == 0
    assert {"final_conv", "conv1", "lstm"} <= changed(Model.from_pretrained(model),
                                                      Model.from_pretrained(root / "gentle" / "model"))


def test_another_problem_rebuilds_the_head_and_says_so(pretrained, capsys):
    """A speech detector fine-tuned into a multi-label detector of the protocol's classes:
    the head (one output) is rebuilt for the classes; the encoder is the pretrained one."""
    root, database, model = pretrained
    assert fine_tune(root, database, model, root / "sed", "--task", "mls", "--freeze-encoder") == 0
    assert "re-initialised final_conv.weight, final_conv.bias" in capsys.readouterr().err
    tuned = Model.from_pretrained(root / "sed" / "model")
    assert tuned.specifications.num_outputs > 1 and changed(Model.from_pretrained(model), tuned) == {"final_conv"}


def test_fine_tuning_options_are_refused_where_they_cannot_apply(pretrained, capsys):
    root, database, model = pretrained
    assert fine_tune(root, database, model, root / "x", "--task", "vad", "--model-option", "hidden_size=8") == 2
    assert "--model, --model-option and --features-from do not apply" in capsys.readouterr().err
    assert fine_tune(root, database, root / "data", root / "x", "--task", "vad") == 2
    assert "is not a model folder" in capsys.readouterr().err
    assert main(["train", "--protocol", TINY, "--database", str(database), "--task", "vad", "--freeze-encoder",
                 "--output", str(root / "x")]) == 2
    assert "give --from" in capsys.readouterr().err
