"""What loading costs a training step: CRNN, VAD, 5-s chunks, batches of 32.

Seconds per step (forward, loss, backward, optimizer step) fed by the data pipeline (0 and
2 dataloader workers) against the same pre-made batch reused, and the time each step
waited for its batch. The three feeds take turns step by step, on one model, and medians
are reported, so that load from other processes on a shared machine hits them alike.

    .venv/bin/python benchmarks/train.py [--quick]
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from data import BATCH_SIZE, make_task  # noqa: E402


def step_function(task, model):
    """One optimisation step of ``model`` on a batch, with the task's loss."""
    optimizer = model.configure_optimizers()
    model.train()

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = task.compute_loss(model(batch["X"]), batch["y"])
        loss.backward()
        optimizer.step()

    return step


def repeat(batch):
    while True:
        yield batch


def main() -> None:
    quick = common.quick_mode()
    rounds = 3 if quick else 10
    print(f"== train: CRNN training step, VAD, 5-s chunks, batch {BATCH_SIZE}, {torch.get_num_threads()} torch threads{' (quick)' if quick else ''}")
    protocol = common.debug_speech_protocol()
    label = "debug-speech"
    if protocol is None:
        protocol, label = common.large_protocol(), "large 1000x10min"
    torch.manual_seed(0)
    task = make_task(protocol, "int16", 0)
    step = step_function(task, task.model)
    with_workers = make_task(protocol, "int16", 2)  # its own model only sets frames and rate
    feeds = {
        "pre-made batch (reused)": repeat(next(iter(task.train_dataloader()))),
        "pipeline, 0 workers": iter(task.train_dataloader()),
        "pipeline, 2 workers": iter(with_workers.train_dataloader()),
    }
    steps = {name: [] for name in feeds}
    waits = {name: [] for name in feeds}
    for round_index in range(rounds + 1):  # round 0 warms up (workers start, first allocations)
        for name, feed in feeds.items():
            before = time.perf_counter()
            batch = next(feed)
            got = time.perf_counter()
            step(batch)
            if round_index:
                waits[name].append(got - before)
                steps[name].append(time.perf_counter() - before)
    del feeds
    premade = statistics.median(steps["pre-made batch (reused)"])
    rows = []
    for name in steps:
        seconds, waited = statistics.median(steps[name]), statistics.median(waits[name])
        extra = "" if name.startswith("pre-made") else f"{100 * (seconds - premade) / seconds:+.1f} %"
        rows.append([name, f"{seconds:.3f}", f"{min(steps[name]):.3f}", f"{1000 * waited:.2f}", extra, f"{100 * waited / seconds:.2f} %"])
    common.table(
        ["data: " + label, "median s/step", "best s/step", "waited ms/step", "step vs pre-made", "waiting share"],
        rows, title=f"Training step (median of {rounds} turns each)",
    )
    share = statistics.median(waits["pipeline, 0 workers"]) / statistics.median(steps["pipeline, 0 workers"])
    print("\nTargets")
    print(common.target_line("loading share of a step, 0 workers (time waiting for the batch)", 100 * share, 5.0, "%", higher_is_better=False))
    print("  (whole-step differences of a few % are timing noise on a shared 2-core machine)")


if __name__ == "__main__":
    main()
