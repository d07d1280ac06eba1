"""Training keeps what it has: a killed run resumes exactly, a NaN loss skips its batch, budgets
are steps and a time cap that cuts a run short says so."""

import argparse
import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
import time

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import Callback

from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol
from audiotask.training import checkpoint_step, fit


@pytest.fixture
def protocol_yml(tmp_path):
    """3 train files of 6 s: 9 batches of four 0.5-s chunks per epoch, one development file."""
    return make_sound_event_protocol(tmp_path / "data", name="Safety")


def debug_model(yml, cache):
    task = SoundEventDetection(load_protocol(yml, "Safety.SpeakerDiarization.Events"), duration=0.5, batch_size=4,
                               num_workers=0, resolution="frame", cache=cache)
    pl.seed_everything(0, verbose=False)
    return Debug(task=task)


# ---- a SIGKILL loses at most --checkpoint-every steps ------------------------------------
def train_command(tmp_path, output, *options):
    return [
        sys.executable, "-m", "audiotask.cli.main", "train", "--database", str(tmp_path / "data" / "database.yml"),
        "--protocol", "Safety.SpeakerDiarization.Events", "--task", "sed", "--resolution", "frame",
        "--duration", "0.5", "--batch-size", "4", "--num-workers", "0", "--cache", str(tmp_path / "cache"),
        "--no-progress", "--checkpoint-every", "5", "--output", str(output), *options,
    ]


def final_weights(output):
    return torch.load(output / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


#: the Debug model, and a CRNN (dropout, batch normalisation) trained by the SED recipe
MODELS = {"debug": ("--model", "Debug"),
          "crnn": ("--model", "CRNN", "--model-option", "channels=[4,8,8]", "--model-option", "n_mels=16",
                   "--model-option", "hidden_size=8")}


@pytest.mark.slow
@pytest.mark.parametrize("model", list(MODELS))
def test_a_killed_run_resumed_from_its_last_checkpoint_ends_as_the_uninterrupted_run(tmp_path, protocol_yml, model):
    environment = {**os.environ, "OMP_NUM_THREADS": "2"}
    run = tmp_path / "run"
    last = run / "checkpoints" / "last.ckpt"
    options = MODELS[model]
    killed = subprocess.Popen(train_command(tmp_path, run, "--max-steps", "100000", *options), env=environment,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not last.exists() and killed.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert last.exists(), "the run wrote no checkpoint"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    step = checkpoint_step(last)  # whole: it was renamed into place once written
    assert step % 5 == 0
    steps = str(step + 12)  # past the end of an epoch (9 steps) and its validation
    subprocess.run(train_command(tmp_path, run, "--max-steps", steps, "--resume", str(last), *options),
                   env=environment, check=True, capture_output=True)
    subprocess.run(train_command(tmp_path, tmp_path / "full", "--max-steps", steps, *options), env=environment,
                   check=True, capture_output=True)
    assert checkpoint_step(last) == int(steps)
    resumed, full = final_weights(run), final_weights(tmp_path / "full")
    assert resumed.keys() == full.keys()
    assert all(torch.equal(resumed[name], full[name]) for name in full)
    assert (run / "metrics.csv").read_text() == (tmp_path / "full" / "metrics.csv").read_text()


class KilledWhileSaving:
    """A trainer whose save dies halfway through writing the file."""

    is_global_zero = True

    def save_checkpoint(self, path, weights_only=None):
        with open(path, "wb") as handle:
            handle.write(b"half a checkpo")
        raise KeyboardInterrupt


def test_a_save_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path):
    from audiotask.training import save_checkpoint_atomically

    path = tmp_path / "last.ckpt"
    path.write_bytes(b"a whole checkpoint")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint_atomically(KilledWhileSaving(), path)
    assert path.read_bytes() == b"a whole checkpoint"


# ---- a non-finite loss skips its batch ---------------------------------------------------
def nan_at(model, steps):
    """Make ``model``'s training forward pass return NaN at optimiser steps ``steps``."""
    forward = model.forward

    def nan_forward(waveforms):
        output = forward(waveforms)
        return output * float("nan") if model.training and model.trainer.global_step in steps else output

    model.forward = nan_forward


class BatchRecorder(Callback):
    """Fingerprint of every training batch, in order."""

    def __init__(self):
        self.seen = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append(hashlib.sha1(batch["X"].numpy().tobytes()).hexdigest())


class WeightChanges(Callback):
    """Whether each optimiser step changed the weights, by step."""

    def __init__(self):
        self.changed = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.before = [parameter.detach().clone() for parameter in pl_module.parameters()]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        after = list(pl_module.parameters())
        self.changed[trainer.global_step - 1] = any(not torch.equal(a, b) for a, b in zip(self.before, after))


def test_a_nonfinite_loss_skips_its_batch_with_a_warning_that_names_the_step(tmp_path, protocol_yml):
    model = debug_model(protocol_yml, tmp_path / "cache")
    nan_at(model, {1, 3})
    changes = WeightChanges()
    with pytest.warns(RuntimeWarning, match="batch skipped") as caught:
        result = fit(model, tmp_path / "run", max_steps=6, progress=False, callbacks=[changes])
    skipped = [str(warning.message) for warning in caught if "batch skipped" in str(warning.message)]
    assert len(skipped) == 2
    assert "loss is nan at training step 1 (batch 1 of epoch 0): the model output diverged" in skipped[0]
    assert "at training step 3 " in skipped[1] and "(1 non-finite loss(es) in a row, training stops at 5)" in skipped[1]
    assert changes.changed == {0: True, 1: False, 2: True, 3: False, 4: True, 5: True}
    # the optimiser did not count the skipped steps either
    optimizer = model.trainer.optimizers[0]
    assert {int(optimizer.state[parameter]["step"]) for parameter in model.parameters()} == {4}
    assert result.steps == 6 and result.skipped == 2
    assert "2 batches skipped for a non-finite loss" in result.summary()


def test_nonfinite_losses_in_a_row_stop_training_with_a_clear_error(tmp_path, protocol_yml):
    model = debug_model(protocol_yml, tmp_path / "cache")
    model.task.max_nonfinite_losses = 3
    nan_at(model, set(range(2, 100)))
    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError) as error:
        fit(model, tmp_path / "run", max_steps=20, progress=False)
    assert "at training step 4 " in str(error.value)
    assert str(error.value).endswith("3 non-finite losses in a row: training stopped.")
    # what was learned before is kept, to resume (with a lower learning rate, say)
    assert checkpoint_step(tmp_path / "run" / "checkpoints" / "interrupted.ckpt") == 4


def test_a_resumed_run_counts_the_nonfinite_losses_before_its_checkpoint(tmp_path, protocol_yml):
    """NaN from step 2 on, 3 in a row stop training at step 4: a run resumed from the
    checkpoint of step 3 (one NaN loss so far) stops there too, not a step later."""
    model = debug_model(protocol_yml, tmp_path / "cache")
    model.task.max_nonfinite_losses = 3
    nan_at(model, set(range(2, 100)))
    with pytest.warns(RuntimeWarning, match="batch skipped"):
        fit(model, tmp_path / "run", max_steps=3, progress=False, checkpoint_every=1)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["audiotask_nonfinite_losses_in_a_row"] == 1
    model = debug_model(protocol_yml, tmp_path / "cache")
    model.task.max_nonfinite_losses = 3
    nan_at(model, set(range(2, 100)))
    with pytest.warns(RuntimeWarning), pytest.raises(FloatingPointError) as error:
        fit(model, tmp_path / "run", max_steps=20, progress=False, ckpt_path=last)
    assert "at training step 4 " in str(error.value) and "3 non-finite losses in a row" in str(error.value)


# ---- options of `audiotask train` reach the Trainer ------------------------------------
def train_arguments(*options):
    from audiotask.cli import train

    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(["--protocol", "X.SpeakerDiarization.Y", "--output", "run", *options])


def test_gradient_clipping_reaches_the_trainer(tmp_path):
    from audiotask.cli.train import training_options
    from audiotask.training import make_trainer

    trainer, _ = make_trainer(tmp_path, **training_options(train_arguments("--gradient-clip", "0.5")))
    assert trainer.gradient_clip_val == 0.5
    trainer, _ = make_trainer(tmp_path, **training_options(train_arguments()))
    assert trainer.gradient_clip_val is None


def test_checkpoint_every_reaches_the_last_checkpoint_and_wrong_values_are_refused(tmp_path):
    from audiotask.cli.common import CommandError
    from audiotask.cli.train import CHECKPOINT_EVERY, training_options
    from audiotask.training import CHECKPOINT_EVERY as DEFAULT
    from audiotask.training import LatestCheckpoint, make_trainer

    assert CHECKPOINT_EVERY == DEFAULT
    trainer, _ = make_trainer(tmp_path, **training_options(train_arguments("--checkpoint-every", "7")))
    assert [callback.every_n_steps for callback in trainer.callbacks if isinstance(callback, LatestCheckpoint)] == [7]
    for option in ("--checkpoint-every", "--gradient-clip", "--max-nonfinite-losses"):
        with pytest.raises(CommandError, match=f"{option} must be positive"):
            training_options(train_arguments(option, "0"))


# ---- budgets are steps; a time cap that cuts a run short says so -------------------------
@pytest.mark.slow
def test_a_run_cut_short_by_a_time_cap_says_so(tmp_path, protocol_yml):
    model = debug_model(protocol_yml, tmp_path / "cache")
    with pytest.warns(UserWarning, match="training cut short: the wall-clock cap"):
        result = fit(model, tmp_path / "capped", max_steps=100_000, max_time={"seconds": 1}, progress=False)
    assert 0 < result.steps < 100_000
    assert result.cut_short == (f"the wall-clock cap (max_time 1 s) stopped training at step {result.steps}, "
                                "before its budget of 100000 steps")
    assert "CUT SHORT: the wall-clock cap" in result.summary()
    # last.ckpt holds the step the cap stopped at, mid-epoch: a resumed run goes on from there
    last = tmp_path / "capped" / "checkpoints" / "last.ckpt"
    assert checkpoint_step(last) == result.steps
    steps = result.steps + 2
    full, resumed = BatchRecorder(), BatchRecorder()
    fit(debug_model(protocol_yml, tmp_path / "cache"), tmp_path / "full", max_steps=steps, progress=False, callbacks=[full])
    fit(debug_model(protocol_yml, tmp_path / "cache"), tmp_path / "capped", max_steps=steps, progress=False,
        callbacks=[resumed], ckpt_path=last)
    assert len(full.seen) == steps and resumed.seen == full.seen[-2:]
    result = fit(debug_model(protocol_yml, tmp_path / "cache"), tmp_path / "uncut", max_steps=3,
                 max_time={"hours": 1}, progress=False)
    assert result.cut_short is None and result.summary() == "3 steps in 1 epoch"


def test_the_demo_budget_is_epochs_and_steps_never_wall_clock(tmp_path, monkeypatch):
    import audiotask.training
    from audiotask.demo import pipeline
    from audiotask.demo.soundscapes import build_demo_dataset

    for config in (pipeline.FULL, pipeline.QUICK):
        names = [field.name for field in dataclasses.fields(config)]
        assert not [name for name in names if "time" in name or "second" in name], names
    database_yml = build_demo_dataset(tmp_path / "data", seed=0, num_train=3, num_development=2, num_test=2,
                                      duration=4.0)
    given = {}
    monkeypatch.setattr(audiotask.training, "fit", lambda model, output, **options: given.update(options))
    pipeline.train_model(database_yml, tmp_path, pipeline.FULL, seed=0, progress=False)
    assert given["max_epochs"] == 40 and given["max_steps"] is None
    assert not {"max_time", "callbacks"} & set(given)


@pytest.mark.slow
def test_training_prints_no_advertisement_nor_accelerator_inventory(tmp_path, protocol_yml):
    # in a fresh process, as a user's script: Lightning's loggers print to its stderr
    script = (
        "import lightning.pytorch as pl\n"
        "from audiotask.models import Debug\n"
        "from audiotask.tasks import SoundEventDetection\n"
        "from audiotask.testing.dummies import load_protocol\n"
        "from audiotask.training import fit\n"
        f"task = SoundEventDetection(load_protocol({str(protocol_yml)!r}, 'Safety.SpeakerDiarization.Events'), "
        f"duration=0.5, batch_size=4, num_workers=0, cache={str(tmp_path / 'cache')!r})\n"
        f"fit(Debug(task=task), {str(tmp_path / 'run')!r}, max_steps=2, progress=False)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = done.stdout + done.stderr
    assert "GPU available" not in printed and "TPU available" not in printed and "\U0001f4a1" not in printed
    # nothing written into the current folder unasked
    assert not (tmp_path / "lightning_logs").exists()


def test_a_model_left_in_eval_mode_still_trains_in_train_mode(tmp_path, protocol_yml):
    class Modes(Callback):
        seen = []

        def on_train_batch_start(self, trainer, model, batch, batch_idx):
            self.seen.append(model.training)

    model = debug_model(protocol_yml, tmp_path / "cache")
    model.eval()  # e.g. after scoring the untrained model
    fit(model, tmp_path / "run", max_steps=2, progress=False, callbacks=[Modes()])
    assert Modes.seen == [True, True]
