"""What the benchmarks share: data sets, generated protocols, timing and memory probes.

Plain helpers, no pass/fail: the benchmark scripts print figures. Generated data lives in
``$AUDIOTASK_BENCH_DIR`` (default: ``<tmp>/audiotask-bench``) and is reused across runs.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
DEBUG_SPEECH = Path(os.environ.get("AUDIOTASK_DEBUG_SPEECH", REPOSITORY.parent / "shared" / "data" / "debug-speech"))
DEBUG_PROTOCOL = "Debug.SpeakerDiarization.Debug"
SAMPLE_RATE = 16000

# a benchmark that loads a database.yml twice is not news
warnings.filterwarnings("ignore", message=".*Replacing existing.*")


def bench_dir() -> Path:
    folder = Path(os.environ.get("AUDIOTASK_BENCH_DIR", Path(tempfile.gettempdir()) / "audiotask-bench"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def quick_mode(argv: Optional[list[str]] = None) -> bool:
    return "--quick" in (sys.argv[1:] if argv is None else argv)


# ---- data sets ------------------------------------------------------------------------
def debug_speech_protocol():
    """``Debug.SpeakerDiarization.Debug`` of the shared debug-speech data, or None (with a message)."""
    yml = DEBUG_SPEECH / "database.yml"
    if not yml.is_file():
        print(f"  [skipped] debug-speech not found at {DEBUG_SPEECH} (set AUDIOTASK_DEBUG_SPEECH)")
        return None
    from audiotask.protocols.loading import load_protocol

    return load_protocol(DEBUG_PROTOCOL, [yml])


def write_noise_wav(path: Path, seconds: float, seed: int) -> None:
    import soundfile

    rng = np.random.default_rng(seed)
    samples = (0.1 * rng.standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)
    soundfile.write(path, samples, SAMPLE_RATE, subtype="PCM_16")


def random_segments(rng: np.random.Generator, durations: np.ndarray, per_file: int, longest: float) -> tuple[np.ndarray, np.ndarray]:
    """(files, per_file) onsets and offsets, rounded to ms, inside each file's duration."""
    lengths = np.round(rng.uniform(0.3, longest, (len(durations), per_file)), 3)
    onsets = np.round(rng.uniform(0.0, 1.0, lengths.shape) * (durations[:, None] - lengths), 3)
    return onsets, onsets + lengths


def write_tsv(path: Path, uris: list[str], onsets: np.ndarray, offsets: np.ndarray, labels: Iterable[str]) -> None:
    """DCASE strong-label TSV (``filename onset offset event_label``), written in bulk."""
    labels = list(labels)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("filename\tonset\toffset\tevent_label\n")
        for index, uri in enumerate(uris):
            handle.write(
                "".join(
                    f"{uri}.wav\t{on:.3f}\t{off:.3f}\t{labels[(index + k) % len(labels)]}\n"
                    for k, (on, off) in enumerate(zip(onsets[index], offsets[index]))
                )
            )


def write_protocol_files(root: Path, name: str, uris: list[str], tsv_rows: Callable[[Path], None]) -> Path:
    """A one-subset (train) pyannote.database protocol ``{name}.SpeakerDiarization.Bench``."""
    from audiotask.testing.dummies import write_database_yml

    tsv_rows(root / "train.tsv")
    (root / "train.lst").write_text("".join(f"{uri}\n" for uri in uris))
    yml = root / "database.yml"
    entries = {"scope": "file", "train": {"uri": "train.lst", "annotation": "train.tsv"}}
    write_database_yml(yml, name, "Bench", entries, audio="{uri}.wav")
    return yml


def large_protocol(num_files: int = 1000, minutes: float = 10.0, num_segments: int = 200_000, num_audio: int = 4):
    """``num_files`` files of ``minutes`` minutes and ``num_segments`` annotation segments.

    The uris share ``num_audio`` real WAV files of noise (an "audio" preprocessor maps
    uri ``i`` to file ``i % num_audio``): the engine sees ``num_files`` distinct files,
    the disk holds a few. Annotations: one DCASE TSV (our cached ``.tsv`` loader).
    """
    name = f"Large{num_files}x{int(minutes)}m{num_segments}"
    root = bench_dir() / name
    seconds = 60.0 * minutes
    audio = [root / f"noise{k}.wav" for k in range(num_audio)]
    if not (root / "database.yml").is_file():
        root.mkdir(parents=True, exist_ok=True)
        for k, path in enumerate(audio):
            write_noise_wav(path, seconds, seed=k)
        uris = [f"long{i:05d}" for i in range(num_files)]
        rng = np.random.default_rng(0)
        onsets, offsets = random_segments(rng, np.full(num_files, seconds), num_segments // num_files, longest=6.0)
        write_protocol_files(root, name, uris, lambda path: write_tsv(path, uris, onsets, offsets, ["spk1", "spk2", "spk3"]))
    from audiotask.protocols.loading import load_protocol

    paths = [str(path) for path in audio]
    return load_protocol(
        f"{name}.SpeakerDiarization.Bench", [root / "database.yml"],
        preprocessors={"audio": lambda file: paths[int(file["uri"][4:]) % num_audio], "duration": lambda file: seconds},
    )


# ---- measuring ------------------------------------------------------------------------
def _status_kib(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _pss_kib(pid: int | str) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def child_pids() -> list[int]:
    """Live child processes of this process (dataloader workers)."""
    pids = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def rss_mib() -> float:
    return _status_kib("self", "VmRSS") / 1024


class MemoryProbe:
    """Peak memory of this process and its children while a block runs.

    ``rss_main``: high-water mark of this process (VmHWM, reset on entry); ``rss_children``:
    sum of the children's high-water marks, read by ``sample_children()`` before they exit
    (shared pages counted in each, so an upper bound); ``pss_total``: peak of the sum of the
    proportional set sizes (shared pages split between processes), sampled every 50 ms.
    """

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.rss_main = self.rss_children = self.pss_total = 0.0
        self._children_hwm: dict[int, int] = {}
        self._stop = threading.Event()

    def __enter__(self):
        gc.collect()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        except OSError:
            pass
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.sample_children()
            self._stop.wait(self.interval)

    def sample_children(self) -> None:
        pids = child_pids()
        for pid in pids:
            self._children_hwm[pid] = max(self._children_hwm.get(pid, 0), _status_kib(pid, "VmHWM"))
        total = _pss_kib("self") + sum(_pss_kib(pid) for pid in pids)
        self.pss_total = max(self.pss_total, total / 1024)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.rss_main = _status_kib("self", "VmHWM") / 1024
        self.rss_children = sum(self._children_hwm.values()) / 1024
        self.pss_total = max(self.pss_total, _pss_kib("self") / 1024)
        return False


def timed(function: Callable, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


# ---- printing -------------------------------------------------------------------------
def table(headers: list[str], rows: list[list], title: Optional[str] = None) -> None:
    """Print an aligned plain-text table (numbers right-aligned)."""
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) if cells else len(h) for i, h in enumerate(headers)]
    if title:
        print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def number(value: float) -> str:
    """Thousands separators for large values, three significant digits for small ones."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def target_line(name: str, value: float, goal: float, unit: str, higher_is_better: bool = True) -> str:
    """``MET``/``MISS`` line of a target, with the margin as a factor."""
    met = value >= goal if higher_is_better else value < goal
    margin = value / goal if higher_is_better else goal / max(value, 1e-12)
    sign = ">=" if higher_is_better else "<"
    return f"  {'MET ' if met else 'MISS'}  {name}: {number(value)} {unit} (target {sign} {number(goal)} {unit}; {margin:.1f}x)"
