"""Inference real-time factor, PyTorch against the ONNX export (onnxruntime), on one file.

    .venv/bin/python benchmarks/onnx_inference.py [--quick] [--file WAV] [--repeats N]

A voice-activity-detection-shaped CRNN (the default architecture, one "speech" class, 5-s
chunks, untrained: speed does not depend on the weights) is exported to ONNX, then both run
the same sliding-window :class:`Inference` (default step, batch 32) on one 30-s file of
debug-speech, at 1 and 2 threads, interleaved in one process; each figure is the minimum of
--repeats runs. The real-time factor is seconds of computation per second of audio (lower is
faster); reading the file is included, as in ``audiotask apply``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEBUG_SPEECH, table  # noqa: E402

from audiotask.core.specifications import Problem, Resolution, Specifications  # noqa: E402
from audiotask.inference.inference import Inference  # noqa: E402
from audiotask.inference.onnx import OnnxModel, export_onnx  # noqa: E402
from audiotask.models import CRNN  # noqa: E402


def vad_model() -> CRNN:
    torch.manual_seed(0)
    model = CRNN()
    model.attach_specifications(Specifications(Problem.BINARY_CLASSIFICATION, Resolution.FRAME, 5.0, classes=["speech"]))
    return model.eval()


def best_time(inference: Inference, path: str, repeats: int) -> tuple[float, np.ndarray]:
    """Fastest of ``repeats`` runs over ``path``, and the scores."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = inference(path)
        times.append(time.perf_counter() - start)
    return min(times), scores.data


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEBUG_SPEECH / "dev00.wav")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run per figure")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    import soundfile

    duration = soundfile.info(str(args.file)).duration
    model = vad_model()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        export_onnx(model, folder)
        for threads in (1, 2):
            torch.set_num_threads(threads)
            pytorch = Inference(model, batch_size=32)
            onnx = Inference(OnnxModel(folder, num_threads=threads), batch_size=32)
            best_time(pytorch, str(args.file), 1)  # warm-up: first-call allocations, lazy imports
            best_time(onnx, str(args.file), 1)
            torch_seconds, torch_scores = best_time(pytorch, str(args.file), repeats)
            onnx_seconds, onnx_scores = best_time(onnx, str(args.file), repeats)
            difference = float(np.abs(torch_scores - onnx_scores).max())
            rows.append([threads, f"{torch_seconds / duration:.4f}", f"{onnx_seconds / duration:.4f}",
                         f"{torch_seconds / onnx_seconds:.2f}x", f"{difference:.1e}"])
    table(["threads", "RTF PyTorch", "RTF ONNX", "ONNX speed-up", "max |diff|"], rows,
          title=f"Inference real-time factor on {args.file.name} ({duration:.0f} s), VAD CRNN, 5-s chunks, "
                f"step {pytorch.step:g} s, min of {repeats}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
