"""Swappable chunk readers for prepared files: decode from the file, or slice a PCM cache.

Both return mono float32 ``(samples,)`` arrays at the model's sample rate for
``(file_index, start, duration)`` and agree to the cache format's precision.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import soundfile
import torch
from tqdm.auto import tqdm

from audiotask.core.audio import Audio, AudioError, refuse_nonfinite
from audiotask.core.frames import seconds_to_samples
from audiotask.engine.locks import file_lock, remove_leftovers
from audiotask.io import replaced_atomically

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
    """Decode ``path`` once, mono at ``sample_rate``, into the cache entry ``target`` (a
    ``.npy``, with its ``.scale``).

    ``AudioError`` naming the file when it has NaN or infinite samples: the cache would
    turn them into silence nobody recorded (and a model trained on them into NaN).
    """
    waveform, _ = Audio(sample_rate=sample_rate)(path)
    samples = waveform[0].numpy()
    refuse_nonfinite(samples, str(path), f" (decoded at {sample_rate} Hz).")
    if dtype == "int16":
        # per-file peak scaling: float audio louder than full scale is not clipped
        scale = max(1.0, float(np.abs(samples).max(initial=0.0)))
        # full scale is 32768 as in 16-bit PCM; +1.0 itself becomes 32767 (1/32768 off)
        data = np.clip(np.round(samples / scale * INT16_SCALE), -32768, 32767).astype(np.int16)
    else:
        scale, data = 1.0, samples.astype(np.float16)
    # each file renamed into place whole, the scale first: a present .npy marks a complete
    # entry, and two processes writing the same entry (the same bytes) never expose half of one
    with replaced_atomically(target.with_suffix(".scale")) as partial:
        partial.write_bytes(repr(scale).encode())
    with replaced_atomically(target) as partial, open(partial, "wb") as handle:
        np.save(handle, data, allow_pickle=False)


def decoding_context() -> multiprocessing.context.BaseContext:
    """How decoding processes start: fork where it is safe (POSIX systems but macOS, whose
    system libraries are not fork-safe, before CUDA is initialised: its runtime is not),
    spawn otherwise (a fresh interpreter: a second or two to import the package)."""
    if sys.platform != "darwin" and "fork" in multiprocessing.get_all_start_methods() and not torch.cuda.is_initialized():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def default_decoding_workers() -> int:
    """``$AUDIOTASK_DECODE_WORKERS``, else one per CPU core this process may use (each holds
    one whole decoded file: lower it where long files meet little memory)."""
    if os.environ.get("AUDIOTASK_DECODE_WORKERS"):
        return max(1, int(os.environ["AUDIOTASK_DECODE_WORKERS"]))
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _one_thread() -> None:
    """Decoding processes are one thread each: they are as many as the cores, and the OpenMP
    pool a forked child inherits from its parent hangs at its first parallel region."""
    torch.set_num_threads(1)


def decode_files(jobs: Sequence[tuple[str, Path]], sample_rate: int, dtype: str, workers: int, description: str) -> None:
    """``decode_to_cache`` of every ``(path, target)`` of ``jobs``, in ``workers`` processes
    (1: in this one), with a progress bar. The first error stops the others and is raised."""
    with tqdm(total=len(jobs), desc=description, unit="file", disable=None) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for path, target in jobs:
                decode_to_cache(path, target, sample_rate, dtype)
                bar.update()
            return
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=decoding_context(), initializer=_one_thread) as pool:
            futures = [pool.submit(decode_to_cache, path, target, sample_rate, dtype) for path, target in jobs]
            try:
                for future in as_completed(futures):
                    future.result()
                    bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise


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

    def prepare(self, workers: Optional[int] = None) -> None:
        """Decode every file not yet in the cache, each distinct file once, in ``workers``
        processes (default :func:`default_decoding_workers`; 1 decodes in this process).

        Holds the cache folder's lock while decoding: another process preparing the same
        cache waits, then decodes only what is still missing (nothing, for the same files).
        Temporary files of crashed writers are removed first.
        """
        remove_leftovers(self.folder)
        if not self._missing():
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        doing = f"decoding audio into {self.folder}"
        with file_lock(self.folder / ".lock", doing):
            jobs = [(path, self.folder / f"{name}.npy") for name, path in self._missing().items()]
            if jobs:
                decode_files(jobs, self.sample_rate, self.dtype, workers or default_decoding_workers(), doing)

    def _missing(self) -> dict[str, str]:
        """``{cache name: audio path}`` of the files not decoded yet (one path per name)."""
        missing = {}
        for path, name in zip(self.paths, self.names):
            if name not in missing and not (self.folder / f"{name}.npy").is_file():
                missing[name] = path
        return missing

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
