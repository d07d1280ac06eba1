"""Swappable chunk readers for prepared files: decode from the file, or slice a PCM cache.

Both return mono float32 ``(samples,)`` arrays at the model's sample rate for
``(file_index, start, duration)`` and agree to the cache format's precision.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import soundfile
import torch

from audiotask.core.audio import Audio, AudioError
from audiotask.core.frames import seconds_to_samples
from audiotask.engine.metadata import writer_tag

CACHE_DTYPES = {"int16": np.int16, "float16": np.float16}
#: full scale of int16 PCM, as libsndfile reads it (x / 32768): 16-bit sources round-trip exactly
INT16_SCALE = 32768.0
#: layout of the decoded-audio files, part of their names: a cache of another layout is never read
CACHE_FORMAT = 2
#: libsndfile's float normalisation of 16-bit PCM
PCM16_SCALE = np.float32(2.0**-15)


def _output(out: Optional[np.ndarray], num_samples: int, reader: str) -> np.ndarray:
    """``out`` checked to be ``(num_samples,)`` float32, or a new such array."""
    if out is None:
        return np.empty(num_samples, dtype=np.float32)
    if out.shape != (num_samples,) or out.dtype != np.float32:
        raise ValueError(f"{reader}.crop: out must be ({num_samples},) float32, got {out.shape} {out.dtype}.")
    return out


def _pad(out: np.ndarray, first: int, length: int) -> tuple[int, int]:
    """Zero the samples of ``out`` (starting at sample ``first`` of a ``length``-sample
    source) that fall outside the source; return the ``[lo, hi)`` source range to copy."""
    lo, hi = max(first, 0), min(first + len(out), length)
    out[: max(lo - first, 0)] = 0.0
    out[max(hi - first, lo - first) :] = 0.0
    return lo, hi


class FileReader:
    """Reads chunks straight from the audio files (decoders kept open per worker)."""

    def __init__(self, paths: Sequence[str], sample_rate: int):
        self.paths = paths
        self.audio = Audio(sample_rate=sample_rate)
        self.sample_rate = sample_rate
        self._scratch = np.empty(0, dtype=np.int16)  # 16-bit PCM, before scaling

    def crop(self, file_index: int, start: float, duration: float, out: Optional[np.ndarray] = None) -> np.ndarray:
        """(samples,) float32 chunk, zero-padded past either end of the file.

        Written into ``out`` (a (samples,) float32 array) when given. Mono files at the
        model's rate are decoded straight into it; others go through ``Audio.crop``
        (downmix, resampling).
        """
        path = Path(self.paths[file_index])
        handle = self.audio.decoder(path)
        num_samples = seconds_to_samples(duration, self.sample_rate)
        out = _output(out, num_samples, "FileReader")
        if handle.channels != 1 or handle.samplerate != self.sample_rate:
            from pyannote.core import Segment

            waveform, _ = self.audio.crop(path, Segment(start, start + duration), fixed=duration)
            out[:] = waveform[0].numpy()
            return out
        first = seconds_to_samples(start, self.sample_rate)
        lo, hi = _pad(out, first, handle.frames)
        if hi > lo:
            try:
                handle.seek(lo)
                if handle.subtype == "PCM_16":
                    self._read_pcm16(handle, out[lo - first : hi - first])
                else:
                    handle.read(hi - lo, dtype="float32", out=out[lo - first : hi - first])
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"Cannot decode audio file {path}: {error}") from None
        return out

    def _read_pcm16(self, handle: soundfile.SoundFile, out: np.ndarray) -> None:
        """Read 16-bit PCM as int16 and scale it with numpy: bit-identical to libsndfile's
        float output (x * 2**-15, exact) and about 4x faster than its conversion loop."""
        if len(self._scratch) < len(out):
            self._scratch = np.empty(len(out), dtype=np.int16)
        samples = handle.read(len(out), dtype="int16", out=self._scratch[: len(out)])
        np.copyto(out, samples, casting="unsafe")
        np.multiply(out, PCM16_SCALE, out=out)


def _cache_name(path: str, sample_rate: int, dtype: str) -> str:
    stat = os.stat(path)
    key = json.dumps([os.path.abspath(path), stat.st_size, stat.st_mtime_ns, sample_rate, dtype, CACHE_FORMAT])
    return hashlib.sha1(key.encode()).hexdigest()


def decode_to_cache(path: str, target: Path, sample_rate: int, dtype: str) -> None:
    """Decode ``path`` once, mono at ``sample_rate``, into raw PCM ``target`` (atomically)."""
    waveform, _ = Audio(sample_rate=sample_rate)(path)
    samples = waveform[0].numpy()
    if dtype == "int16":
        # per-file peak scaling: float audio louder than full scale is not clipped
        scale = max(1.0, float(np.abs(samples).max(initial=0.0)))
        # full scale is 32768 as in 16-bit PCM; +1.0 itself becomes 32767 (1/32768 off)
        data = np.clip(np.round(samples / scale * INT16_SCALE), -32768, 32767).astype(np.int16)
    else:
        scale, data = 1.0, samples.astype(np.float16)
    # the scale first, then the samples: a present .npy marks a complete entry
    target.with_suffix(".scale").write_text(repr(scale))
    partial = target.parent / f"{target.name}.{writer_tag()}.partial"
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
        self._maps: dict[str, tuple[np.ndarray, np.float32]] = {}

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

    def _map(self, file_index: int) -> tuple[np.ndarray, np.float32]:
        name = self.names[file_index]
        if name not in self._maps:  # one map per decoded file, however many uris point at it
            # copy-on-write map (never written): a writable array that torch takes without a
            # warning; a plain ndarray view, as slicing an np.memmap costs Python calls per slice
            data = np.asarray(np.load(self.folder / f"{name}.npy", mmap_mode="c"))
            scale = float((self.folder / f"{name}.scale").read_text())
            # a float32 factor keeps the product in float32 (a Python float would make it float64)
            factor = np.float32(scale / INT16_SCALE if self.dtype == "int16" else 1.0)
            self._maps[name] = (data, factor)
        return self._maps[name]

    def crop(self, file_index: int, start: float, duration: float, out: Optional[np.ndarray] = None) -> np.ndarray:
        """(samples,) float32 chunk, zero-padded past either end of the file.

        Written into ``out`` (a (samples,) float32 array) when given, so that a batch is
        assembled without a copy per chunk.
        """
        data, factor = self._map(file_index)
        first = seconds_to_samples(start, self.sample_rate)
        num_samples = seconds_to_samples(duration, self.sample_rate)
        out = _output(out, num_samples, "CachedReader")
        lo, hi = _pad(out, first, len(data))
        if hi > lo:
            target = out[lo - first : hi - first]
            if self.dtype == "int16":
                # cast then scale in place: both are single vectorised float32 passes
                np.copyto(target, data[lo:hi], casting="unsafe")
                np.multiply(target, factor, out=target)
            else:
                # torch converts float16 with SIMD, numpy element by element (about 9x slower)
                torch.from_numpy(target).copy_(torch.from_numpy(data[lo:hi]))
        return out
