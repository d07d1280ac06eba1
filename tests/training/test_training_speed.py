"""Training from persistent dataloader workers, and the speed `audiotask train` reports."""

import itertools
import re
from types import SimpleNamespace

import pytest
import torch

import test_resume
from audiotask.cli.main import main
from audiotask.engine.batches import TrainBatches
from audiotask.engine.resume import ResumableDataLoader
from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import make_sound_event_protocol
from audiotask.training import TrainingResult


def epoch_batches(loader, count=3):
    return [batch["X"].clone() for batch in itertools.islice(iter(loader), count)]


@pytest.mark.slow
@pytest.mark.parametrize("context", [None, "spawn"])
def test_a_persistent_worker_draws_the_batches_of_each_new_epoch(tiny_protocol, tmp_path, context):
    task = SoundEventDetection(tiny_protocol, duration=1.0, batch_size=2, num_workers=2, cache=tmp_path / "cache")
    Debug(task=task)
    task.prepare_data()
    task.setup("fit")
    trainer = task.model._trainer = SimpleNamespace(current_epoch=0)

    def loader():
        return task._batch_loader(TrainBatches(task), loader=ResumableDataLoader, task=task, multiprocessing_context=context)

    persistent = loader()
    assert persistent.persistent_workers
    first = epoch_batches(persistent)
    workers = persistent._iterator._workers
    trainer.current_epoch = 1
    second = epoch_batches(persistent)
    assert persistent._iterator._workers == workers  # the same processes, not started again
    fresh = epoch_batches(loader())  # workers started at epoch 1
    assert all(torch.equal(a, b) for a, b in zip(second, fresh, strict=True))
    assert not any(torch.equal(a, b) for a, b in zip(first, second))
    persistent._iterator._shutdown_workers()


def test_persistent_workers_give_every_epoch_the_batches_of_a_run_started_at_it(tmp_path):
    # 9 batches an epoch: the full run crosses into epoch 1 with the workers of epoch 0; the
    # resumed one starts its workers at epoch 1 (from the checkpoint at the end of epoch 0)
    full, trainer = test_resume.fit(tmp_path / "full", workers=2, max_steps=14)
    assert trainer.num_training_batches == 9
    assert len(set(full)) == 14  # epoch 1 is not epoch 0 again
    checkpoint = tmp_path / "full" / "checkpoints" / "epoch=0-step=9.ckpt"
    resumed, _ = test_resume.fit(tmp_path / "resumed", workers=2, max_steps=14, ckpt_path=checkpoint)
    assert resumed == full[9:]


def test_a_run_resumed_mid_epoch_with_persistent_workers_sees_the_batches_of_the_uninterrupted_run(tmp_path):
    full, _ = test_resume.fit(tmp_path / "full", workers=2, max_steps=14)
    checkpoint = tmp_path / "full" / "checkpoints" / "epoch=0-step=6.ckpt"
    resumed, _ = test_resume.fit(tmp_path / "resumed", workers=2, max_steps=14, ckpt_path=checkpoint)
    assert resumed == full[6:]  # the rest of epoch 0, then epoch 1 from the same workers


def test_the_speed_line_gives_steps_per_second_and_the_share_spent_waiting_for_data():
    result = TrainingResult(model=None, checkpoints=None, metrics=None, checkpoint=None,
                            steps_per_second=7.91, data_wait_share=0.123)
    assert result.speed() == "7.91 steps/s, 12.3 % of the time waiting for data"
    validated = TrainingResult(model=None, checkpoints=None, metrics=None, checkpoint=None,
                               steps_per_second=7.91, data_wait_share=0.123, validation_share=0.25)
    assert validated.speed() == "7.91 steps/s, 12.3 % of the time waiting for data; validation 25.0 % of the run"
    assert TrainingResult(model=None, checkpoints=None, metrics=None, checkpoint=None).speed() is None


@pytest.mark.parametrize("workers", [0, 1])
def test_audiotask_train_ends_with_its_speed(tmp_path, capsys, workers):
    yml = make_sound_event_protocol(tmp_path / "data", name="Speed")
    arguments = [
        "train", "--database", str(yml), "--protocol", "Speed.SpeakerDiarization.Events", "--task", "sed",
        "--resolution", "frame", "--model", "Debug", "--duration", "1", "--batch-size", "4", "--max-steps", "12",
        "--num-workers", str(workers), "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "run"),
        "--no-progress",
    ]
    assert main(arguments) == 0
    speed = re.search(r"^speed: +([0-9.]+) steps/s, ([0-9.]+) % of the time waiting for data; "
                      r"validation ([0-9.]+) % of the run$", capsys.readouterr().out, re.M)
    assert speed is not None
    assert float(speed[1]) > 0 and 0 <= float(speed[2]) < 100 and 0 < float(speed[3]) < 100


def test_validate_every_k_epochs_validates_that_much_less(tmp_path, capsys):
    import csv

    yml = make_sound_event_protocol(tmp_path / "data", name="Every")
    arguments = [
        "train", "--database", str(yml), "--protocol", "Every.SpeakerDiarization.Events", "--task", "sed",
        "--resolution", "frame", "--model", "Debug", "--duration", "1", "--batch-size", "4", "--epochs", "4",
        "--num-workers", "0", "--cache", str(tmp_path / "cache"), "--no-progress",
    ]
    validated = {}
    for every in (1, 2):
        output = tmp_path / f"every{every}"
        assert main([*arguments, "--output", str(output), "--validate-every", str(every)]) == 0
        rows = list(csv.DictReader(open(output / "metrics.csv")))
        validated[every] = [int(row["epoch"]) for row in rows if row.get("val/loss")]
    assert validated == {1: [0, 1, 2, 3], 2: [1, 3]}
    assert main([*arguments, "--output", str(tmp_path / "bad"), "--validate-every", "0"]) != 0
    assert "--validate-every must be positive" in capsys.readouterr().err
