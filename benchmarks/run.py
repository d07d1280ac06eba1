"""Run the benchmarks (each in its own process) and print their figures.

    .venv/bin/python benchmarks/run.py [--quick] [data] [prepare] [train] [cli_training] [inference]
        [clip_classification]
        [snr_estimation] [speaker_embedding]

No name runs them all. ``--quick`` runs smaller versions (about 2 minutes in all).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ("data", "prepare", "train", "cli_training", "inference", "clip_classification",
              "snr_estimation", "speaker_embedding")


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    names = [arg for arg in argv if not arg.startswith("-")]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose among {list(BENCHMARKS)}", file=sys.stderr)
        return 2
    import numpy
    import torch

    print(
        f"audiotask benchmarks{' (quick)' if quick else ''}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {numpy.__version__}, torch {torch.__version__}"
    )
    failed = []
    for name in names or BENCHMARKS:
        started = time.perf_counter()
        print(flush=True)
        result = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *(["--quick"] if quick else [])])
        print(f"  [{name}: {time.perf_counter() - started:.0f} s]", flush=True)
        if result.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
