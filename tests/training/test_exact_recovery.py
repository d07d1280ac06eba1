"""A run stopped anywhere and resumed from any checkpoint that training writes ends bit-identical
to the uninterrupted run: final weights (the mean teacher's too), the kept model and every row
of metrics.csv. With a CRNN (dropout, batch normalisation) under the SED recipe (mixup draws,
mean teacher), at an epoch boundary, mid-epoch, during validation, with dataloader workers."""

import csv

import lightning.pytorch as pl
import pytest
import torch
from safetensors.torch import load_file

from audiotask.models import CRNN
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol
from audiotask.training import checkpoint_step, fit
from helpers import CrashAt

STEPS = 22  # 9 batches per epoch: validations after steps 9 and 18


@pytest.fixture(scope="module")
def protocol_yml(tmp_path_factory):
    """3 train files of 6 s: 9 batches of four 0.5-s chunks per epoch; one development file."""
    return make_sound_event_protocol(tmp_path_factory.mktemp("data"), name="Exact")


def train(yml, output, *, recipe: str, workers: int = 0, **options):
    from audiotask.augmentation.recipe import DetectionAugmentation

    # "teacher": the default augmentation (mixup, FilterAugment) and a mean teacher
    task_options = dict(mean_teacher=True) if recipe == "teacher" else dict(augmentation=DetectionAugmentation.none())
    task = SoundEventDetection(load_protocol(yml, "Exact.SpeakerDiarization.Events"), duration=0.5, batch_size=4,
                               num_workers=workers, resolution="frame", cache=output.parent / "cache", **task_options)
    pl.seed_everything(0, verbose=False)
    model = CRNN(task=task, channels=[4, 8, 8], n_mels=16, hidden_size=8)
    return fit(model, output, max_steps=STEPS, progress=False, checkpoint_every=5, **options)


def outcome(output):
    """What an uninterrupted and a resumed run must share."""
    last = torch.load(output / "checkpoints" / "last.ckpt", weights_only=True)
    with open(output / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {
        "weights": last["state_dict"],
        "teacher": last.get("teacher_state_dict", {}),
        "kept model": load_file(output / "model" / "model.safetensors"),
        "metrics rows": rows,
    }


def assert_same_run(resumed, full):
    for part in ("weights", "teacher", "kept model"):
        assert resumed[part].keys() == full[part].keys(), part
        differing = [name for name in full[part] if not torch.equal(resumed[part][name], full[part][name])]
        assert not differing, f"{part}: {len(differing)} of {len(full[part])} tensors differ, {differing[:3]}"
    assert resumed["metrics rows"] == full["metrics rows"]


CASES = {
    # (crash, checkpoint resumed, its step)
    "mid-epoch, last.ckpt": (CrashAt(13), "last", 10),
    "mid-epoch, interrupted.ckpt": (CrashAt(13), "interrupted", 13),
    "epoch boundary": (CrashAt(9), "interrupted", 9),
    "during validation": (CrashAt(18, "validation", batch=1), "interrupted", 18),
}


@pytest.mark.parametrize("recipe", ["plain", "teacher"], ids=["crnn", "crnn-augmented-mean-teacher"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_resumed_run_is_bit_identical_to_the_uninterrupted_run(tmp_path, protocol_yml, recipe, case):
    crash, checkpoint, step = CASES[case]
    train(protocol_yml, tmp_path / "full", recipe=recipe)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(protocol_yml, tmp_path / "run", recipe=recipe, callbacks=[crash])
    path = tmp_path / "run" / "checkpoints" / f"{checkpoint}.ckpt"
    assert checkpoint_step(path) == step
    train(protocol_yml, tmp_path / "run", recipe=recipe, ckpt_path=path)
    assert_same_run(outcome(tmp_path / "run"), outcome(tmp_path / "full"))


@pytest.mark.slow
def test_a_run_with_workers_resumed_mid_epoch_is_bit_identical(tmp_path, protocol_yml):
    train(protocol_yml, tmp_path / "full", recipe="teacher", workers=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(protocol_yml, tmp_path / "run", recipe="teacher", workers=2, callbacks=[CrashAt(13)])
    train(protocol_yml, tmp_path / "run", recipe="teacher", workers=2,
          ckpt_path=tmp_path / "run" / "checkpoints" / "interrupted.ckpt")
    assert_same_run(outcome(tmp_path / "run"), outcome(tmp_path / "full"))


def test_the_random_draws_of_a_training_step_depend_on_the_step_only():
    from audiotask.utils.random import seed_training_step

    def dropout_mask(step):
        seed_training_step(step)
        return torch.nn.functional.dropout(torch.ones(64), 0.5)

    first = dropout_mask(7)
    torch.rand(100)  # whatever drew from the generator in between
    assert torch.equal(dropout_mask(7), first)
    assert not torch.equal(dropout_mask(8), first)


def test_a_checkpoint_saved_during_validation_resumes_by_validating_again_from_its_first_batch():
    from audiotask.training import validate_again_on_resume

    # the second validation of a run, stopped in its third batch (two validation batches each)
    progress = {"total": {"ready": 5, "started": 5, "processed": 4, "completed": 4},
                "current": {"ready": 3, "started": 3, "processed": 2, "completed": 2}, "is_last_batch": False}
    validate_again_on_resume(progress)
    # Lightning's "restarted mid-evaluation" state, with no batch of this validation done
    assert progress["current"] == {"ready": 1, "started": 1, "processed": 0, "completed": 0}
    assert progress["total"] == {"ready": 3, "started": 3, "processed": 2, "completed": 2}
