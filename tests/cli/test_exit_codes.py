"""Exit codes a scheduler can trust: a command stopped by SIGINT (Ctrl-C) or SIGTERM (a job
preempted) exits 130 or 143, never 0, after keeping what it could (train its
checkpoints/interrupted.ckpt, apply the outputs of the files it finished), and says so in
one line (with how to resume a training), without a traceback.

The signals are real: the tests send them to their own process at a chosen point (a patched
step), so that they arrive while the command works, deterministically; one slow test sends
them from outside to a training started as `python -m audiotask.cli.main`.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from audiotask.cli.main import main
from audiotask.testing.dummies import TONES, make_sound_event_protocol
from helpers import saved_debug_frame_model, stderr_lines

PROTOCOL = "Tiny.SpeakerDiarization.Events"
STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
SIGNALS = [pytest.param(signal.SIGINT, id="SIGINT"), pytest.param(signal.SIGTERM, id="SIGTERM")]

# a SIGTERM the command does not handle would end the test session itself
pytestmark = pytest.mark.skipif(signal.getsignal(signal.SIGTERM) != signal.SIG_DFL,
                                reason="SIGTERM is handled by the test runner")


def stop_self(signum):
    os.kill(os.getpid(), signum)
    time.sleep(5)  # the signal interrupts this at once; the sleep only keeps a missed one visible


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("exit-codes")
    make_sound_event_protocol(root / "data", name="Tiny", files_per_subset=(2, 1, 1), duration=4.0, seed=3)
    return root


# ---- train -----------------------------------------------------------------------------------
def train_arguments(data, output, *options):
    return ["train", "--database", str(data / "data" / "database.yml"), "--protocol", PROTOCOL, "--task", "vad",
            "--model", "Debug", "--duration", "2", "--batch-size", "4", "--num-workers", "0", "--cache",
            str(data / "cache"), "--checkpoint-every", "1", "--output", str(output), "--no-progress", *options]


# a first training in a process takes seconds (torch's first backward passes): one signal in the quick tests
@pytest.mark.parametrize("signum", [pytest.param(signal.SIGINT, id="SIGINT", marks=pytest.mark.slow),
                                    pytest.param(signal.SIGTERM, id="SIGTERM")])
def test_a_training_stopped_by_a_signal_saves_its_state_says_how_to_resume_and_exits_non_zero(
        data, tmp_path, capsys, monkeypatch, signum):
    from audiotask.training import LatestCheckpoint, checkpoint_step

    save = LatestCheckpoint.on_train_batch_end

    def stop_at_step_two(self, trainer, *args):
        save(self, trainer, *args)
        if trainer.global_step == 2:
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(LatestCheckpoint, "on_train_batch_end", stop_at_step_two)
    output = tmp_path / "run"
    assert main(train_arguments(data, output, "--max-steps", "1000")) == STATUS[signum]
    interrupted = output / "checkpoints" / "interrupted.ckpt"
    # SIGTERM: Lightning stops at the end of the step (its SIGTERMException); Ctrl-C where it lands
    assert checkpoint_step(interrupted) == 2
    assert not (output / "model").exists()
    lines = stderr_lines(capsys)
    assert lines[-1] == (f"audiotask train: stopped by {signal.Signals(signum).name} at step 2: {interrupted} holds "
                         f"the run; continue it with the same options: audiotask train ... --resume {interrupted}")
    # neither the exception nor Lightning's notices ("Detected KeyboardInterrupt", "Received SIGTERM: 15"); the
    # traceback is looked for in the subprocess test below (here, pytest's captures may log errors of their own)
    assert [line for line in lines if line.startswith("audiotask train:")] == lines[-1:]
    assert not [line for line in lines if "KeyboardInterrupt" in line or "SIGTERM" in line and line != lines[-1]]
    # and it does continue
    monkeypatch.setattr(LatestCheckpoint, "on_train_batch_end", save)
    assert main(train_arguments(data, output, "--max-steps", "3", "--resume", str(interrupted))) == 0
    assert (output / "model" / "model.safetensors").is_file()


def test_a_training_stopped_before_it_began_says_there_is_nothing_to_resume(data, tmp_path, capsys, monkeypatch):
    import audiotask.cli.train as train

    monkeypatch.setattr(train, "load_protocol", lambda *args: stop_self(signal.SIGTERM))
    assert main(train_arguments(data, tmp_path / "run")) == 143
    assert stderr_lines(capsys)[-1] == ("audiotask train: stopped by SIGTERM before training began: nothing to resume "
                                        "(no checkpoint written), run it again")


# ---- apply, tune, demo -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return saved_debug_frame_model(tmp_path_factory.mktemp("model"), sorted(TONES))


@pytest.mark.parametrize("signum", SIGNALS)
def test_apply_stopped_by_a_signal_writes_the_files_it_finished(data, model, tmp_path, capsys, monkeypatch, signum):
    import audiotask.cli.apply_files as apply_files

    process_files = apply_files.process_files

    def stopping_after_the_first(outputs, files):
        for outcome in process_files(outputs, files):
            yield outcome
            os.kill(os.getpid(), signum)

    monkeypatch.setattr(apply_files, "process_files", stopping_after_the_first)
    audio = sorted((data / "data" / "audio").glob("*.wav"))
    output = tmp_path / "out"
    assert main(["apply", str(model), *map(str, audio), "--output", str(output), "--no-progress"]) == STATUS[signum]
    assert sorted(path.name for path in (output / "scores").iterdir()) == [f"{audio[0].stem}.tsv"]
    assert {line.split("\t")[0] for line in (output / "detections.tsv").read_text().splitlines()[1:]} <= {audio[0].name}
    assert stderr_lines(capsys) == [
        f"audiotask apply: stopped by {signal.Signals(signum).name} after 1 of {len(audio)} files: the outputs of 1 "
        f"written under {output}; the other {len(audio) - 1} were not processed (apply them again)"]


def test_tune_stopped_by_a_signal_writes_nothing(data, model, tmp_path, capsys, monkeypatch):
    import shutil

    import audiotask.cli.tune as tune

    folder = shutil.copytree(model, tmp_path / "model")
    monkeypatch.setattr(tune, "score_files", lambda *args, **kwargs: stop_self(signal.SIGTERM))
    arguments = ["tune", str(folder), "--database", str(data / "data" / "database.yml"), "--protocol", PROTOCOL,
                 "--no-progress"]
    assert main(arguments) == 143
    assert stderr_lines(capsys)[-1] == (f"audiotask tune: stopped by SIGTERM before tuning ended: "
                                        f"{folder / 'postprocessing.json'} was not written (left as it was); run tune "
                                        "again")
    assert not (folder / "postprocessing.json").exists()


@pytest.mark.parametrize("signum", SIGNALS)
def test_the_demo_stopped_by_a_signal_exits_non_zero(tmp_path, capsys, monkeypatch, signum):
    import audiotask.demo.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run_demo", lambda *args, **kwargs: stop_self(signum))
    assert main(["demo", "--output", str(tmp_path / "demo"), "--no-progress"]) == STATUS[signum]
    assert stderr_lines(capsys) == [f"audiotask demo: stopped by {signal.Signals(signum).name}: the demo under "
                                    f"{tmp_path / 'demo'} is incomplete (run it again: it starts over)"]


def test_the_handlers_of_the_caller_come_back(tmp_path, monkeypatch):
    import audiotask.demo.pipeline as pipeline

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(pipeline, "run_demo", lambda *args, **kwargs: None)
    assert main(["demo", "--output", str(tmp_path / "demo"), "--no-progress"]) == 0
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_a_bare_keyboard_interrupt_exits_130_without_a_traceback(tmp_path, capsys, monkeypatch):
    import audiotask.demo.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run_demo", interrupted)
    assert main(["demo", "--output", str(tmp_path / "demo"), "--no-progress"]) == 130
    assert stderr_lines(capsys)[-1].startswith("audiotask demo: stopped by SIGINT")


# ---- from outside, as a scheduler does it ----------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_training_process_stopped_from_outside_exits_130_or_143(data, tmp_path, signum):
    output = tmp_path / "run"
    command = [sys.executable, "-m", "audiotask.cli.main", *train_arguments(data, output, "--max-steps", "100000")]
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    # a shell's background job ignores SIGINT: the child gets it back as a terminal's job would
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        last = output / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 120
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), "training did not start"
        process.send_signal(signum)
        _, errors = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == STATUS[signum], errors
    interrupted = output / "checkpoints" / "interrupted.ckpt"
    assert torch.load(interrupted, map_location="cpu", weights_only=True)["global_step"] >= 1
    lines = [line for line in errors.splitlines() if line.strip() and "pkg_resources" not in line]
    assert "Traceback" not in errors
    assert lines[-1].startswith(f"audiotask train: stopped by {signal.Signals(signum).name} at step ")
    assert lines[-1].endswith(f"--resume {interrupted}")


@pytest.mark.slow
def test_a_job_whose_every_process_gets_sigterm_exits_143(data, tmp_path):
    """A scheduler signals every process of the job: the dataloader workers die of it too, and
    the training still reads as stopped by SIGTERM (the worker's error said), not as failed."""
    output = tmp_path / "run"
    options = ("--max-steps", "100000", "--num-workers", "2")
    command = [sys.executable, "-m", "audiotask.cli.main", *train_arguments(data, output, *options)]
    process = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        last = output / "checkpoints" / "last.ckpt"
        deadline = time.monotonic() + 120
        while not last.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert last.exists(), "training did not start"
        os.killpg(process.pid, signal.SIGTERM)
        _, errors = process.communicate(timeout=60)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 143, errors
    interrupted = output / "checkpoints" / "interrupted.ckpt"
    assert errors.strip().splitlines()[-1].startswith("audiotask train: stopped by SIGTERM")
    assert errors.strip().splitlines()[-1].endswith(f"--resume {interrupted}") and interrupted.is_file()


def test_a_dataloader_worker_killed_by_sigterm_reads_as_a_stop_by_sigterm():
    """The job's SIGTERM may kill a worker, and torch report it, before the command's own
    process runs its handler: the error still says which signal stopped the command."""
    from audiotask.cli.common import exit_status, signals_stop_the_command, stop_message, stopped_by_signal

    with signals_stop_the_command():
        assert not stopped_by_signal(RuntimeError("DataLoader worker (pid(s) 12) exited unexpectedly"))
        killed = RuntimeError("DataLoader worker (pid 11760) is killed by signal: Terminated. ")
        assert stopped_by_signal(killed) and exit_status() == 143
        assert stop_message(killed).startswith("stopped by SIGTERM (RuntimeError: DataLoader worker")
    with signals_stop_the_command():
        assert stopped_by_signal(RuntimeError("DataLoader worker (pid 7) is killed by signal: Interrupt. "))
        assert exit_status() == 130
