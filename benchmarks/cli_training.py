"""What `audiotask train` costs per step against the bare step, before and after a change.

Voice activity detection on debug-speech with the command line's defaults (CRNN, 2-s chunks,
batches of 32, validation every epoch), a budget of ``--steps`` optimiser steps. For the
working tree and for the revision ``--against`` (default HEAD: the committed code, exported
into a temporary folder), in one run:

- bare step (the working tree's): the same model and trainer (``training.make_trainer``)
  fed a list of batches built beforehand: no data loading, no validation;
- `audiotask train` with its default dataloader workers, and with ``--num-workers`` 0 and 1.

Every run is a process of its own, started through a wrapper that adds the same timing
callback to the Trainer, so that both revisions are measured alike: seconds per step of the
training loop (validation left out), the share of it spent waiting for data, and the whole
process's wall and CPU time (workers included).

    .venv/bin/python benchmarks/cli_training.py [--quick] [--steps N] [--against REV]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

TRAIN = ["train", "--database", str(common.DEBUG_SPEECH / "database.yml"), "--protocol", common.DEBUG_PROTOCOL,
         "--task", "vad", "--no-progress"]
#: batches built beforehand for the bare step, taken in turn
BARE_BATCHES = 8


# ---- in the child process -----------------------------------------------------------------
def step_timer():
    """A callback timing steps, the time between them (validation left out) and validation.

    A ``Checkpoint`` subclass: Lightning calls those last, after the checkpoints that save
    when a step or a validation ends (as ``training.TrainingSpeed``, which it copies, so that
    a revision without it is measured alike).
    """
    from lightning.pytorch.callbacks import Checkpoint

    class StepTimer(Checkpoint):
        def __init__(self):
            self.stepping = self.waiting = self.validating = 0.0
            self.steps = 0
            self.durations, self.waits = [], []  # of each step, before each step
            self.first = self.mark = None
            self.validation_start = None
            self.workers = 0

        def on_train_start(self, trainer, pl_module):
            self.first, self.mark = trainer.global_step, time.perf_counter()
            self.workers = getattr(getattr(pl_module, "task", None), "num_workers", 0)

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            now = time.perf_counter()
            self.waiting += now - self.mark
            self.waits.append(now - self.mark)
            self.mark = now

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            now = time.perf_counter()
            self.stepping += now - self.mark
            self.durations.append(now - self.mark)
            self.mark = now
            self.steps = trainer.global_step - self.first

        def on_validation_start(self, trainer, pl_module):
            if self.mark is not None:
                self.validation_start = time.perf_counter()
                self.waiting += self.validation_start - self.mark

        def on_validation_end(self, trainer, pl_module):
            if self.validation_start is not None:
                self.mark = time.perf_counter()
                self.validating += self.mark - self.validation_start
                self.validation_start = None

        def record(self) -> dict:
            return dict(steps=self.steps, stepping=self.stepping, waiting=self.waiting, validating=self.validating,
                        median_step=statistics.median(self.durations) if self.durations else 0.0,
                        first_wait=self.waits[0] if self.waits else 0.0, workers=self.workers)

    return StepTimer()


def child(src: str, record: str, bare: bool, argv: list[str]) -> int:
    """Run ``audiotask`` (or the bare step) with the timing callback; write its figures to ``record``."""
    if src:
        sys.path.insert(0, src)  # ahead of the editable install's path
    import lightning.pytorch as pl

    timer = step_timer()
    original = pl.Trainer.__init__

    def with_timer(self, *args, callbacks=None, **kwargs):
        original(self, *args, callbacks=[*(callbacks or []), timer], **kwargs)

    pl.Trainer.__init__ = with_timer
    from audiotask.cli.main import build_parser, main

    if bare:
        bare_step(build_parser().parse_args(argv))
        code = 0
    else:
        code = main(argv)
    Path(record).write_text(json.dumps(timer.record()))
    return code


def bare_step(args) -> None:
    """The command line's model and trainer on batches built beforehand (no loading, no validation)."""
    import itertools

    import lightning.pytorch as pl

    from audiotask.cli.train import load_protocol, make_task, prepared_model, training_options
    from audiotask.training import make_trainer

    pl.seed_everything(args.seed, verbose=False)
    model = prepared_model(args, make_task(args, load_protocol(args.database, args.protocol)))
    model.prepare_data()
    model.setup("fit")
    batches = list(itertools.islice(model.task.train_batches(epoch=0), BARE_BATCHES))
    options = {**training_options(args), "progress": False}
    trainer, _ = make_trainer(args.output, validation=False, limit_val_batches=0, **options)
    model.train()
    trainer.fit(model, train_dataloaders=BatchList([batches[k % BARE_BATCHES] for k in range(args.max_steps)]))


class BatchList:
    """Batches as one dataloader (Lightning takes a plain list for a list of dataloaders)."""

    def __init__(self, batches: list):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


# ---- in the benchmark process -----------------------------------------------------------
def export_revision(revision: str, folder: Path) -> Path:
    """``src/`` of ``revision`` of this repository, written under ``folder``."""
    archive = subprocess.run(["git", "-C", str(common.REPOSITORY), "archive", revision, "src"],
                             check=True, capture_output=True).stdout
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "archive.tar"
    path.write_bytes(archive)
    with tarfile.open(path) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def measure(src: str, options: list[str], steps: int, work: Path, bare: bool = False) -> dict:
    """Figures of one run (a process of its own) of ``audiotask train`` or of the bare step."""
    output = Path(tempfile.mkdtemp(dir=work))
    record = output / "timer.json"
    command = [sys.executable, __file__, "--child", src, str(record), *(["--bare"] if bare else []), "--",
               *TRAIN, "--max-steps", str(steps), "--output", str(output / "run"), *options]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0 or not record.is_file():
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    figures = json.loads(record.read_text())
    return dict(figures, wall=wall, user=after.ru_utime - before.ru_utime, system=after.ru_stime - before.ru_stime,
                speed=[line for line in done.stdout.splitlines() if line.startswith("speed:")])


def per_step(figures: dict) -> float:
    """Seconds per step of the training loop: the median step (robust to bursts of load from
    other processes) plus the mean wait for data (which comes in bursts of its own: a worker
    started at each epoch)."""
    return figures["median_step"] + figures["waiting"] / max(figures["steps"], 1)


def row(name: str, figures: dict, bare: float) -> list:
    steps = max(figures["steps"], 1)
    return [
        name, figures["steps"], f"{figures['wall'] / steps:.3f}", f"{figures['median_step']:.3f}",
        f"{figures['first_wait']:.2f}", f"{1000 * figures['waiting'] / steps:.1f}", f"{per_step(figures):.3f}", f"{per_step(figures) / bare:.2f}",
        f"{100 * figures['waiting'] / max(figures['stepping'] + figures['waiting'], 1e-9):.1f} %",
        f"{figures['validating']:.1f}", f"{figures['user']:.0f}", f"{figures['system']:.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--steps", type=int, help="optimiser steps of each run (default: 60, --quick: 20)")
    parser.add_argument("--against", default="HEAD", help="revision measured before (default: %(default)s); "
                        "'none' measures the working tree only")
    args = parser.parse_args()
    steps = args.steps or (20 if args.quick else 60)
    print(f"== cli_training: `audiotask train --task vad` on debug-speech, {steps} steps a run, {os.cpu_count()} cores"
          f"{' (quick)' if args.quick else ''}")
    if common.debug_speech_protocol() is None:
        return
    from audiotask.core.task import default_num_workers

    os.environ.setdefault("AUDIOTASK_CACHE", str(common.bench_dir() / "cache"))
    with tempfile.TemporaryDirectory(dir=common.bench_dir()) as folder:
        work = Path(folder)
        trees = [("working tree", "")]
        if args.against != "none":
            trees.insert(0, (args.against, str(export_revision(args.against, work / "before"))))
        # the first run prepares the cache (metadata, decoded audio): done before timing
        measure("", ["--num-workers", "0"], 1, work)
        # the bare step, with the working tree's trainer: what the command line should cost;
        # an older revision may lack the functions that build it
        bare = measure("", [], steps, work, bare=True)
        bare_per_step = per_step(bare)
        rows, speed_lines = [row("bare step (batches built before), working tree", bare, bare_per_step)], []
        for label, src in trees:
            default = measure(src, [], steps, work)
            runs = [(f"CLI, default workers ({default['workers']})", default)]
            runs += [(f"CLI, --num-workers {n}", measure(src, ["--num-workers", str(n)], steps, work))
                     for n in (0, 1) if n != default["workers"]]
            for name, figures in runs:
                rows.append(row(f"{label}: {name}", figures, bare_per_step))
                speed_lines += [f"  {label}, {name}: {line}" for line in figures["speed"]]
    common.table(
        ["run", "steps", "s/step, process", "median step s", "first wait s", "waited ms/step", "s/step, training", "vs bare",
         "waiting share", "validation s", "user s", "sys s"],
        rows, title=f"Seconds per step (the working tree's default workers here: {default_num_workers()})",
    )
    print("  s/step, process: the whole command's wall time (start-up, preparation, validation) per step;")
    print("  s/step, training: median step + mean wait for data per step (validation left out); waiting share:")
    print("  of the training loop's whole time; first wait: for the first batch (workers starting), included in")
    print("  the mean wait; user and sys: CPU seconds of the command and its workers")
    if speed_lines:
        print("\nWhat `audiotask train` printed")
        print("\n".join(speed_lines))


if __name__ == "__main__":
    if "--child" in sys.argv:
        at = sys.argv.index("--child")
        separator = sys.argv.index("--")
        sys.exit(child(sys.argv[at + 1], sys.argv[at + 2], "--bare" in sys.argv[at:separator], sys.argv[separator + 1:]))
    main()
