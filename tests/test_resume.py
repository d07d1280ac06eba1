"""Training resumed from a mid-epoch checkpoint sees exactly the batches it would have seen."""

import hashlib

import lightning.pytorch as pl
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from audiotask.engine.resume import batches_from_worker
from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol
from conftest import quiet_trainer


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


class CrashAt(Callback):
    """Raises at the start of training batch ``batch_idx`` (a crash, or Ctrl-C, mid-epoch)."""

    def __init__(self, batch_idx: int):
        self.batch_idx = batch_idx

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == self.batch_idx:
            raise RuntimeError("simulated crash")


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
