"""Training resumed from a mid-epoch checkpoint sees exactly the batches it would have seen."""

import csv
import hashlib

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from audiotask.engine.resume import batches_from_worker
from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol
from helpers import CrashAt, quiet_trainer


class BatchRecorder(Callback):
    """Fingerprint of every training batch, in order."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(hashlib.sha1(batch["X"].numpy().tobytes() + batch["y"].numpy().tobytes()).hexdigest())


def fit(tmp_path, *, workers: int, max_steps: int, ckpt_path=None):
    yml = make_sound_event_protocol(tmp_path / "data", name="Resume")
    task = SoundEventDetection(
        load_protocol(yml, "Resume.SpeakerDiarization.Events"), duration=0.5, batch_size=4,
        num_workers=workers, resolution="frame", cache=tmp_path / "cache",
    )
    model = Debug(task=task)
    recorder = BatchRecorder()
    checkpoints = ModelCheckpoint(dirpath=tmp_path / "checkpoints", every_n_train_steps=3, save_top_k=-1)
    pl.seed_everything(0, verbose=False)
    trainer = quiet_trainer(max_steps=max_steps, callbacks=[recorder, checkpoints], enable_checkpointing=True,
                            limit_val_batches=0, default_root_dir=tmp_path)
    trainer.fit(model, ckpt_path=ckpt_path)
    return recorder.seen, trainer


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_training_sees_the_batches_of_the_uninterrupted_run(tmp_path, workers):
    full, trainer = fit(tmp_path / "full", workers=workers, max_steps=7)
    assert trainer.num_training_batches == 9  # 18 s of training audio in 0.5-s chunks: 36 chunks, 9 batches
    checkpoint = tmp_path / "full" / "checkpoints" / "epoch=0-step=3.ckpt"
    with pytest.warns() as caught:
        resumed, _ = fit(tmp_path / "resumed", workers=workers, max_steps=7, ckpt_path=checkpoint)
    assert not [w for w in caught if "not resumable" in str(w.message)]
    assert len(set(full)) == 7
    assert resumed == full[3:]


def test_batches_come_from_the_workers_in_turn():
    assert [batches_from_worker(5, worker, 2) for worker in (0, 1)] == [3, 2]
    assert [batches_from_worker(1, worker, 3) for worker in (0, 1, 2)] == [1, 0, 0]
    assert batches_from_worker(7, 0, 0) == 7


def test_resumed_workers_continue_the_streams_in_the_order_of_the_interrupted_run():
    from audiotask.engine.resume import resumed_stream

    state = {"epoch": 1, "batches": 3, "num_workers": 2, "batch_size": 4}
    # batch 3 would have come from worker 1 (its second batch): the new worker 0 continues it
    assert resumed_stream(state, epoch=1, worker=0, num_workers=2, batch_size=4) == (1, 4)
    assert resumed_stream(state, epoch=1, worker=1, num_workers=2, batch_size=4) == (0, 8)
    # another epoch: untouched
    assert resumed_stream(state, epoch=2, worker=1, num_workers=2, batch_size=4) == (1, 0)


def test_a_crashed_run_resumes_from_its_interrupted_checkpoint(tmp_path):
    from audiotask.training import fit as fit_and_save

    yml = make_sound_event_protocol(tmp_path / "data", name="Crash")

    def model_and_recorder():
        task = SoundEventDetection(
            load_protocol(yml, "Crash.SpeakerDiarization.Events"), duration=0.5, batch_size=4, num_workers=0,
            resolution="frame", cache=tmp_path / "cache",
        )
        pl.seed_everything(0, verbose=False)
        return Debug(task=task), BatchRecorder()

    model, full = model_and_recorder()
    fit_and_save(model, tmp_path / "full", max_steps=7, progress=False, callbacks=[full])
    model, crashed = model_and_recorder()
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_and_save(model, tmp_path / "crashed", max_steps=7, progress=False, callbacks=[crashed, CrashAt(3)])
    checkpoint = tmp_path / "crashed" / "checkpoints" / "interrupted.ckpt"
    assert checkpoint.is_file()
    model, resumed = model_and_recorder()
    fit_and_save(model, tmp_path / "crashed", max_steps=7, progress=False, callbacks=[resumed], ckpt_path=checkpoint)
    assert len(full.seen) == 7 and resumed.seen == full.seen[3:]
    assert not checkpoint.exists()  # the run completed: the crash's checkpoint would only go back in time


class FailInSetup(Callback):
    def setup(self, trainer, pl_module, stage):
        raise RuntimeError("broken before training")


def test_an_error_before_training_surfaces_as_itself_and_saves_nothing(tmp_path):
    from audiotask.training import fit as fit_and_save

    yml = make_sound_event_protocol(tmp_path / "data", name="Early")
    task = SoundEventDetection(load_protocol(yml, "Early.SpeakerDiarization.Events"), duration=0.5, batch_size=4,
                               num_workers=0, cache=tmp_path / "cache")
    with pytest.raises(RuntimeError, match="broken before training"):
        fit_and_save(Debug(task=task), tmp_path / "run", max_steps=3, progress=False, callbacks=[FailInSetup()])
    assert not (tmp_path / "run" / "checkpoints" / "interrupted.ckpt").exists()


def test_a_new_run_in_a_used_output_folder_starts_afresh(tmp_path):
    from audiotask.training import fit as fit_and_save

    yml = make_sound_event_protocol(tmp_path / "data", name="Again")
    for _ in range(2):  # the second run must not pick up the first one's last.ckpt
        task = SoundEventDetection(load_protocol(yml, "Again.SpeakerDiarization.Events"), duration=0.5, batch_size=4,
                                   num_workers=0, resolution="frame", cache=tmp_path / "cache")
        recorder = BatchRecorder()
        # one whole epoch (9 batches): it ends with last.ckpt written
        fit_and_save(Debug(task=task), tmp_path / "run", max_steps=9, progress=False, callbacks=[recorder])
        assert len(recorder.seen) == 9
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def small_task(yml, name, cache):
    return SoundEventDetection(load_protocol(yml, f"{name}.SpeakerDiarization.Events"), duration=0.5, batch_size=4,
                               num_workers=0, resolution="frame", cache=cache)


@pytest.mark.parametrize("steps", [13, 18], ids=["between-validations", "at-a-validation-that-replaces-the-best"])
def test_last_checkpoint_is_the_final_state_of_a_run(tmp_path, steps):
    import torch

    from audiotask.training import checkpoint_step
    from audiotask.training import fit as fit_and_save

    yml = make_sound_event_protocol(tmp_path / "data", name="Last")

    def train(output, max_steps, ckpt_path=None):
        pl.seed_everything(0, verbose=False)
        recorder = BatchRecorder()
        result = fit_and_save(Debug(task=small_task(yml, "Last", tmp_path / "cache")), output, max_steps=max_steps,
                              progress=False, callbacks=[recorder], ckpt_path=ckpt_path)
        assert result.checkpoint.is_file()  # the best one, which the resumed run's state must name
        return recorder.seen

    full = train(tmp_path / "full", 22)
    # validations (and best checkpoints) come at steps 9 and 18, the ends of 9-step epochs
    train(tmp_path / "run", steps)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == steps
    # the budget raised from there: the run goes on where it stopped, on the same batches
    assert train(tmp_path / "run", 22, ckpt_path=last) == full[steps:]
    weights = [torch.load(path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
               for path in (tmp_path / "full", tmp_path / "run")]
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def metrics_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def same_run_metrics(resumed, full):
    """``resumed`` rows equal ``full`` rows, the epoch mean of the training loss of the epoch
    the run resumed in included (core/epoch_loss.py keeps it in the checkpoint)."""
    assert [(row["epoch"], row["step"]) for row in resumed] == [(row["epoch"], row["step"]) for row in full]
    assert resumed == full


@pytest.mark.parametrize("checkpoint,step", [("last", 10), ("interrupted", 13)])
def test_a_resumed_run_continues_the_metrics_log_of_its_output_folder(tmp_path, checkpoint, step):
    from audiotask.training import checkpoint_step
    from audiotask.training import fit as fit_and_save

    yml = make_sound_event_protocol(tmp_path / "data", name="Log")
    options = dict(max_steps=22, progress=False, log_every_n_steps=1, checkpoint_every=5)

    def train(output, **extra):
        pl.seed_everything(0, verbose=False)
        fit_and_save(Debug(task=small_task(yml, "Log", tmp_path / "cache")), output, **options, **extra)

    train(tmp_path / "full")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tmp_path / "run", callbacks=[CrashAt(13)])
    # the crashed run logged steps 10 to 12 after last.ckpt: the resumed run logs them again
    assert max(int(row["step"]) for row in metrics_rows(tmp_path / "run" / "metrics.csv")) == 12
    path = tmp_path / "run" / "checkpoints" / f"{checkpoint}.ckpt"
    assert checkpoint_step(path) == step
    train(tmp_path / "run", ckpt_path=path)
    full = metrics_rows(tmp_path / "full" / "metrics.csv")
    assert len(full) == 22 + 2 + 3  # a row per step, per validation, per epoch's mean
    same_run_metrics(metrics_rows(tmp_path / "run" / "metrics.csv"), full)


