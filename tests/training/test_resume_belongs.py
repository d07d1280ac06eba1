"""A checkpoint belongs to its run: resuming it with another task, other classes, another
chunk duration or other model options is refused in one line naming what differs, before any
weight is loaded, leaving the output folder as it was (fine-tuning is --from)."""

import copy

import pytest

from audiotask.cli.main import main
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.core.resumed_run import ResumeMismatch, check_resumed_manifest
from audiotask.models import Debug
from helpers import stderr_lines

PROTOCOL = "Tiny.SpeakerDiarization.Events"


def manifest(**arguments):
    model = Debug(**arguments)
    model.attach_specifications(Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME, 2.0,
                                               classes=["Cat", "Dog"], extra={"task": "sound-event-detection"}))
    return model.manifest()


def changed(saved, **fields):
    current = copy.deepcopy(saved)
    current["specifications"].update(fields)
    return current


@pytest.mark.parametrize("current, what, message", [
    (changed(manifest(), extra={"task": "multi-label-segmentation"}), "task",
     "was trained for task 'sound-event-detection' (classes [\"Cat\",\"Dog\"]); this run is for "
     "'multi-label-segmentation' (classes [\"Cat\",\"Dog\"])"),
    (changed(manifest(), classes=["Cat", "Dog", "Bird"]), "specifications",
     "was trained with other specifications than this run's: classes [\"Cat\",\"Dog\"] there, "
     "[\"Cat\",\"Dog\",\"Bird\"] here"),
    (changed(manifest(), duration=3.0), "specifications",
     "was trained with other specifications than this run's: duration 2.0 there, 3.0 here"),
    (changed(manifest(), resolution="chunk", warm_up=[0.5, 0.5]), "specifications",
     "was trained with other specifications than this run's: resolution 'frame' there, 'chunk' here; "
     "warm_up [0.0,0.0] there, [0.5,0.5] here"),
    ({**manifest(), "architecture": "CRNN"}, "architecture", "holds a Debug model, not a CRNN"),
    (manifest(hidden_size=8), "arguments", "was saved from a Debug with other arguments (hidden_size=16 there, 8 here)"),
])
def test_every_difference_of_task_specifications_or_model_is_named(current, what, message):
    with pytest.raises(ResumeMismatch) as caught:
        check_resumed_manifest(manifest(), current)
    assert caught.value.what == what
    assert str(caught.value) == f"the checkpoint {message}"


def test_the_same_run_resumes_whatever_the_versions():
    saved = manifest()
    check_resumed_manifest(saved, {**saved, "versions": {"audiotask": "9.9", "torch": "9.9"}})
    check_resumed_manifest(None, saved)  # a checkpoint Lightning alone wrote: nothing to compare


# ---- from the command line -------------------------------------------------------------------
def train_arguments(root, output, *options):
    return ["train", "--database", str(root / "data" / "database.yml"), "--protocol", PROTOCOL, "--model", "Debug",
            "--batch-size", "4", "--num-workers", "0", "--cache", str(root / "cache"), "--output", str(output),
            "--no-progress", *options]


@pytest.fixture(scope="module")
def vad_run(tmp_path_factory):
    """A voice activity detector trained 2 steps on 2-s chunks: its folder."""
    from audiotask.testing.dummies import make_sound_event_protocol

    root = tmp_path_factory.mktemp("belongs")
    make_sound_event_protocol(root / "data", name="Tiny", files_per_subset=(2, 1, 1), seed=3)
    assert main(train_arguments(root, root / "vad", "--task", "vad", "--duration", "2", "--max-steps", "2")) == 0
    return root / "vad"


@pytest.mark.parametrize("options, message", [
    (["--task", "osd", "--duration", "2"],
     "was trained for task 'voice-activity-detection' (classes [\"speech\"]); this run is for "
     "'overlapped-speech-detection' (classes [\"overlap\"]): resume with that run's options, or fine-tune its weights "
     "for this run with --from {run}/model"),
    (["--task", "vad", "--duration", "3"],
     "was trained with other specifications than this run's: duration 2.0 there, 3.0 here: resume with that run's "
     "options, or fine-tune its weights for this run with --from {run}/model"),
    (["--task", "vad", "--duration", "2", "--model-option", "hidden_size=8"],
     "was saved from a Debug with other arguments (hidden_size=16 there, 8 here): resume with --model-option "
     "hidden_size=16"),
])
def test_resuming_another_run_is_refused_in_one_line_and_changes_nothing(vad_run, capsys, options, message):
    checkpoint = vad_run / "checkpoints" / "last.ckpt"
    before = {path.name: path.read_bytes() for path in (vad_run / "metrics.csv", checkpoint)}
    capsys.readouterr()
    # into the checkpoint's own folder: its metrics.csv must survive the refusal
    arguments = train_arguments(vad_run.parent, vad_run, *options, "--max-steps", "4", "--resume", str(checkpoint))
    assert main(arguments) == 2
    assert stderr_lines(capsys)[-1] == f"audiotask train: error: {checkpoint} " + message.format(run=vad_run)
    assert {path.name: path.read_bytes() for path in (vad_run / "metrics.csv", checkpoint)} == before
    assert not (vad_run / "checkpoints" / "interrupted.ckpt").exists()


def test_fit_names_the_checkpoint_of_another_run(vad_run, tmp_path):
    import lightning.pytorch as pl

    from audiotask.tasks import OverlappedSpeechDetection
    from audiotask.testing.dummies import load_protocol
    from audiotask.training import fit

    task = OverlappedSpeechDetection(load_protocol(vad_run.parent / "data" / "database.yml", PROTOCOL), duration=2.0,
                                     batch_size=4, num_workers=0, cache=vad_run.parent / "cache")
    pl.seed_everything(0, verbose=False)
    checkpoint = vad_run / "checkpoints" / "last.ckpt"
    with pytest.raises(ResumeMismatch) as caught:
        fit(Debug(task=task), tmp_path / "osd", ckpt_path=checkpoint, max_steps=4, progress=False)
    assert caught.value.checkpoint == checkpoint and caught.value.what == "task"
    assert str(caught.value).startswith(f"{checkpoint} was trained for task 'voice-activity-detection'")
