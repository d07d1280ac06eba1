"""Swappable chunk readers for prepared files: decode from the file, or slice a PCM cache.

Both return mono float32 ``(samples,)`` arrays at the model's sample rate for
``(file_index, start, duration)`` and agree to the cache format's precision.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from audiotask.core.audio import Audio
from audiotask.core.frames import seconds_to_samples

CACHE_DTYPES = {"int16": np.int16, "float16": np.float16}
INT16_SCALE = 32767.0


class FileReader:
    """Reads chunks straight from the audio files (decoders kept open per worker)."""

    def __init__(self, paths: Sequence[str], sample_rate: int):
        self.paths = paths
        self.audio = Audio(sample_rate=sample_rate)
        self.sample_rate = sample_rate

    def crop(self, file_index: int, start: float, duration: float) -> np.ndarray:
        from pyannote.core import Segment

        waveform, _ = self.audio.crop(str(self.paths[file_index]), Segment(start, start + duration), fixed=duration)
        return waveform[0].numpy()


def _cache_name(path: str, sample_rate: int, dtype: str) -> str:
    stat = os.stat(path)
    key = json.dumps([os.path.abspath(path), stat.st_size, stat.st_mtime_ns, sample_rate, dtype])
    return hashlib.sha1(key.encode()).hexdigest()


def decode_to_cache(path: str, target: Path, sample_rate: int, dtype: str) -> None:
    """Decode ``path`` once, mono at ``sample_rate``, into raw PCM ``target`` (atomically)."""
    waveform, _ = Audio(sample_rate=sample_rate)(path)
    samples = waveform[0].numpy()
    if dtype == "int16":
        # per-file peak scaling: float audio louder than full scale is not clipped
        scale = max(1.0, float(np.abs(samples).max(initial=0.0)))
        data = np.round(samples / scale * INT16_SCALE).astype(np.int16)
    else:
        scale, data = 1.0, samples.astype(np.float16)
    # the scale first, then the samples: a present .npy marks a complete entry
    target.with_suffix(".scale").write_text(repr(scale))
    partial = target.parent / f"{target.name}.{os.getpid()}.partial"
    with open(partial, "wb") as handle:
        np.save(handle, data, allow_pickle=False)
    os.replace(partial, target)


class CachedReader:
    """Reads chunks from a decoded-audio cache: one memory-mapped PCM file per audio file.

    Parameters
    ----------
    paths : audio file paths, indexed like the prepared metadata
    sample_rate : int
    folder : cache folder (shared by workers and runs; files are keyed by path, size, mtime)
    dtype : "int16" (default; peak-scaled, 16-bit precision) or "float16"
    """

    def __init__(self, paths: Sequence[str], sample_rate: int, folder: str | Path, dtype: str = "int16"):
        if dtype not in CACHE_DTYPES:
            raise ValueError(f"audio cache dtype must be one of {sorted(CACHE_DTYPES)}, got {dtype!r}.")
        self.folder = Path(folder)
        self.sample_rate, self.dtype = sample_rate, dtype
        self.names = [_cache_name(str(p), sample_rate, dtype) for p in paths]
        self.paths = [str(p) for p in paths]
        self._maps: dict[int, tuple[np.ndarray, float]] = {}

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_maps"] = {}  # memory maps are reopened in each worker
        return state

    def prepare(self) -> None:
        """Decode every file not yet in the cache (each distinct file once)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        done = set()
        for path, name in zip(self.paths, self.names):
            target = self.folder / f"{name}.npy"
            if name in done or target.is_file():
                continue
            decode_to_cache(path, target, self.sample_rate, self.dtype)
            done.add(name)

    def _map(self, file_index: int) -> tuple[np.ndarray, float]:
        if file_index not in self._maps:
            name = self.names[file_index]
            data = np.load(self.folder / f"{name}.npy", mmap_mode="r")
            scale = float((self.folder / f"{name}.scale").read_text())
            factor = scale / INT16_SCALE if self.dtype == "int16" else 1.0
            self._maps[file_index] = (data, factor)
        return self._maps[file_index]

    def crop(self, file_index: int, start: float, duration: float) -> np.ndarray:
        data, factor = self._map(file_index)
        first = seconds_to_samples(start, self.sample_rate)
        num_samples = seconds_to_samples(duration, self.sample_rate)
        out = np.zeros(num_samples, dtype=np.float32)
        lo, hi = max(first, 0), min(first + num_samples, len(data))
        if hi > lo:
            np.multiply(data[lo:hi], factor, out=out[lo - first : hi - first], casting="unsafe")
        return out
