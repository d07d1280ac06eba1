"""Inference speed, memory and accuracy: a voice activity CRNN over debug-speech's 14 files.

    .venv/bin/python benchmarks/inference.py [--quick] [--against COMMIT] [--steps 0.5,1,2.5]

A VAD CRNN is trained once on debug-speech (a fixed number of steps, seed 0) and saved
under the benchmark folder, and exported to ONNX; every measurement then runs in a process
of its own, so that its peak memory is its own, and reports:

- the real-time factor (seconds of inference per second of audio: decoding, sliding
  windows, aggregation) on one file (dev00.wav, 30 s) and over the 14 files, at 1 and 2
  threads, the best of ``--repeat`` passes, for each engine: PyTorch (each file encoded once,
  the default), PyTorch chunk by chunk (``shared_encoder=False``: every window through the
  whole model), the ONNX export run by onnxruntime, and streaming (blocks of 0.5 s pushed
  one by one into ``Inference.stream()``);
- the peak resident memory of the process once inference is done (before the metric's
  imports);
- the detection error rate on the development and test files at threshold 0.5 (no collar,
  inside the UEM), as pyannote.audio's figure is quoted.

``--steps`` gives the hops (seconds) between windows to compare (the step-vs-accuracy
table); ``--against COMMIT`` also runs the same measurements with the code of COMMIT
(checked out in a git worktree; its default engine only), on the same model and files, in
the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DEBUG_SPEECH, REPOSITORY, bench_dir, debug_speech_protocol, quick_mode, table  # noqa: E402

#: the CLI's CRNN for vad (class defaults), trained on 5-s chunks
DURATION = 5.0
TRAIN_STEPS, QUICK_TRAIN_STEPS = 600, 60
ONE_FILE = "dev00"
ENGINES = ("pytorch", "chunks", "onnx", "stream")
ENGINE_NAMES = {"pytorch": "PyTorch", "chunks": "PyTorch, chunk by chunk", "onnx": "ONNX (onnxruntime)",
                "stream": "streaming, 0.5-s blocks"}
STREAM_BLOCK = 0.5


def trained_model(steps: int) -> Path:
    """A VAD CRNN trained for ``steps`` steps on debug-speech (seed 0), saved once and reused."""
    folder = bench_dir() / "inference" / f"vad-{steps}"
    if (folder / "model" / "audiotask.json").is_file():
        return folder / "model"
    import lightning.pytorch as pl

    from audiotask.models import CRNN
    from audiotask.tasks import VoiceActivityDetection
    from audiotask.training import fit

    pl.seed_everything(0, verbose=False)
    task = VoiceActivityDetection(debug_speech_protocol(), duration=DURATION, batch_size=32, num_workers=0,
                                  cache=bench_dir() / "inference" / "cache")
    result = fit(CRNN(task=task), folder, max_steps=steps, progress=False)
    return Path(result.model)


def exported(model: Path) -> Path:
    """The ONNX export of ``model``, written once beside it."""
    folder = model.parent / "onnx-export"
    if not (folder / "audiotask.json").is_file():
        from audiotask.inference.inference import load_for_inference
        from audiotask.inference.onnx_export import export_onnx

        export_onnx(load_for_inference(model), folder)
    return folder


# ---- one measurement, in its own process ------------------------------------------------
def benchmark_files() -> list[Path]:
    return [path for path in sorted(DEBUG_SPEECH.glob("*.wav")) if path.stem not in ("empty", "sample")]


def best_pass(score, files: list[Path], repeat: int) -> tuple[float, dict]:
    """Fastest of ``repeat`` passes of ``score`` over ``files``: (seconds, {uri: scores})."""
    best, scores = float("inf"), {}
    for _ in range(repeat):
        started = time.perf_counter()
        scores = {path.stem: score(path) for path in files}
        best = min(best, time.perf_counter() - started)
    return best, scores


def measure(model: Path, engine: str, threads: int, step: float | None, repeat: int) -> dict:
    """Real-time factors (one file, all files), peak memory and detection error rate of
    ``model`` run by ``engine`` (imported from whatever ``audiotask`` is first on the path:
    this tree's, or an older commit's, which gets the default engine only)."""
    import resource

    import soundfile
    import torch

    from audiotask.inference.inference import Inference

    torch.set_num_threads(threads)
    files = benchmark_files()
    one_file = [path for path in files if path.stem == ONE_FILE]
    audio_seconds = {path: soundfile.info(str(path)).duration for path in files}
    options = {"shared_encoder": False} if engine == "chunks" else {}
    inference = Inference(model, step=step, **options)
    if engine == "stream":
        from audiotask.inference.streaming import stream_file

        def score(path):
            return stream_file(inference, path, STREAM_BLOCK)
    else:
        def score(path):
            return inference(str(path))
    score(files[0])  # warm-up: first calls allocate and pick kernels
    file_seconds, _ = best_pass(score, one_file, repeat)
    seconds, scores = best_pass(score, files, repeat)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"rtf": seconds / sum(audio_seconds.values()), "rtf_file": file_seconds / audio_seconds[one_file[0]],
            "step": inference.step, "peak_mb": peak_mb, "der": detection_error_rate(scores)}


def detection_error_rate(scores: dict) -> float:
    """DER of ``{uri: frame scores}`` at threshold 0.5 on debug-speech's development and test files."""
    from pyannote.core import Annotation
    from pyannote.database.util import load_rttm, load_uem
    from pyannote.metrics.detection import DetectionErrorRate

    metric = DetectionErrorRate()
    for subset in ("development", "test"):
        references = load_rttm(str(DEBUG_SPEECH / f"debug.{subset}.rttm"))
        uems = load_uem(str(DEBUG_SPEECH / f"debug.{subset}.uem"))
        for uri, reference in references.items():
            hypothesis = Annotation(uri=uri)
            window, data = scores[uri].sliding_window, scores[uri].data[:, 0]
            for index in (data > 0.5).nonzero()[0]:
                hypothesis[window[int(index)]] = "speech"
            metric(reference, hypothesis.support(), uem=uems[uri])
    return abs(metric)


def run_measure(model: Path, engine: str, threads: int, step: float | None, repeat: int,
                source: Path | None = None) -> dict:
    """:func:`measure` in a new process (``source``: the ``src`` folder of the code to run)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    if source is not None:
        env["PYTHONPATH"] = str(source)
    command = [sys.executable, __file__, "--measure", str(model), "--engine", engine, "--threads", str(threads),
               "--repeat", str(repeat)]
    if step is not None:
        command += ["--step", str(step)]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"measurement failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def portable_copy(model: Path) -> Path:
    """``model`` as older code can load it too: the architecture named by module (as manifests
    were before the architecture registry) and without the weights only training uses (the
    clip head, which older CRNNs lack). The same weights serve every version measured."""
    from safetensors.torch import load_file, save_file

    folder = model.parent / "portable-model"
    if not (folder / "audiotask.json").is_file():
        folder.mkdir(exist_ok=True)
        manifest = json.loads((model / "audiotask.json").read_text())
        manifest["architecture"] = "audiotask.models.crnn:CRNN"
        state = {name: tensor for name, tensor in load_file(model / "model.safetensors").items()
                 if not name.startswith("clip_head.")}
        save_file(state, folder / "model.safetensors")
        (folder / "audiotask.json").write_text(json.dumps(manifest, indent=2))
    return folder


def worktree(commit: str) -> Path:
    """The ``src`` folder of ``commit``, checked out once in a git worktree beside the benchmark data."""
    folder = bench_dir() / "inference" / f"tree-{commit}"
    if not folder.is_dir():
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(folder), commit], check=True,
                       capture_output=True)
    return folder / "src"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=ENGINES, default="pytorch", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--step", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the files; the fastest counts")
    parser.add_argument("--steps", default="", help="comma-separated hops (s) for the step-vs-accuracy table")
    parser.add_argument("--against", metavar="COMMIT", help="also measure the code of COMMIT, in the same run")
    parser.add_argument("--quick", action="store_true", help="a short training, one pass, 2 threads only")
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.engine, args.threads, args.step, args.repeat)))
        return 0
    if debug_speech_protocol() is None:
        return 0
    quick = args.quick or quick_mode(argv)
    repeat = 1 if quick else args.repeat
    model = portable_copy(trained_model(QUICK_TRAIN_STEPS if quick else TRAIN_STEPS))
    onnx = exported(model)
    rows = []
    for threads in ((2,) if quick else (1, 2)):
        baseline = None
        if args.against:
            baseline = run_measure(model, "pytorch", threads, None, repeat, worktree(args.against))
            rows.append(row(f"{args.against} (PyTorch)", threads, baseline, None))
        for engine in ENGINES:
            result = run_measure(onnx if engine == "onnx" else model, engine, threads, None, repeat)
            rows.append(row(f"this tree, {ENGINE_NAMES[engine]}", threads, result, baseline))
    table(["code, engine", "threads", "RTF, 1 file", "RTF, 14 files", "speed-up", "peak MB", "DER (%)"], rows,
          title=f"VAD CRNN ({model}), debug-speech, default step, best of {repeat}")
    steps = [float(value) for value in args.steps.split(",") if value.strip()]
    if steps:
        rows = []
        for step in steps:
            result = run_measure(model, "pytorch", 2, step, repeat)
            rows.append([f"{result['step']:.3f}", f"{result['rtf']:.4f}", f"{100 * result['der']:.2f}"])
        table(["step (s)", "real-time factor, 2 threads", "DER (%)"], rows, title="step against accuracy (this tree)")
    return 0


def row(name: str, threads: int, result: dict, baseline: dict | None) -> list:
    speed_up = f"{baseline['rtf'] / result['rtf']:.1f}x" if baseline else ""
    return [name, threads, f"{result['rtf_file']:.4f}", f"{result['rtf']:.4f}", speed_up, f"{result['peak_mb']:.0f}",
            f"{100 * result['der']:.2f}"]


if __name__ == "__main__":
    sys.exit(main())
