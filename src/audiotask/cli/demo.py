"""Run the whole workflow on the built-in synthetic data set, on CPU in a few minutes.

Builds ten-second soundscapes of the ten DCASE classes (data/; decoded audio in cache/),
trains a frame-level CRNN (model/, checkpoints/, metrics.csv), applies it to the test split
(scores/, detections.tsv), evaluates it (results.json, results.txt) and plots each test
file's scores over its reference events (plots/). About 4 minutes on two CPU cores.
Stopped by Ctrl-C or SIGTERM, it says so in one line and exits with status 130 or 143.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from audiotask.cli.common import Interrupted, quiet_warnings, signal_name, stopped_by_signal

HELP = "train, apply and evaluate a sound event detector on built-in synthetic data"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", type=Path, default=Path("audiotask-demo"), metavar="DIR",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of training (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="a tiny version (few files, few steps) in under a minute")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    from audiotask.demo.pipeline import run_demo

    quiet_warnings()
    try:
        run_demo(args.output, seed=args.seed, quick=args.quick, progress=args.progress, verbose=True)
    except BaseException as stop:  # Ctrl-C, SIGTERM: never a finished demo (exit 0)
        if not stopped_by_signal(stop):
            raise
        raise Interrupted(f"stopped by {signal_name()}: the demo under {args.output} is incomplete "
                          "(run it again: it starts over)") from stop
    return 0
