"""Reading audio: whole files or chunks, as mono float32 tensors at a fixed sample rate.

Decoding uses soundfile, resampling soxr. Decoders are kept open per process, so a
dataloader worker opens each file once rather than once per chunk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np
import soundfile
import soxr
import torch

from audiotask.core.frames import seconds_to_samples

AudioFile = Union[str, Path, Mapping[str, Any]]


class AudioError(ValueError):
    """An audio file is missing, unreadable or unusable; the message names the file."""


def audio_path(file: AudioFile) -> Optional[Path]:
    """Path of ``file`` (a path or a protocol file with "audio"), None for an in-memory waveform."""
    if isinstance(file, (str, Path)):
        return Path(file)
    if "waveform" in file:
        return None
    if "audio" in file:
        return Path(file["audio"])
    raise AudioError(f"Audio: file {dict(file)!r} has neither 'audio' nor 'waveform'.")


def audio_name(file: AudioFile) -> str:
    """How messages name ``file``: its path; for an in-memory waveform, the path it was read
    from when it carries one under "audio", else "in-memory waveform"."""
    path = audio_path(file)
    if path is not None:
        return str(path)
    return str(file["audio"]) if "audio" in file else "in-memory waveform"


def to_mono(samples: np.ndarray) -> np.ndarray:
    """``(samples, channels)`` -> ``(samples,)`` by averaging channels."""
    return samples.mean(axis=1) if samples.ndim == 2 else samples


def fit_length(samples: np.ndarray, num_samples: int) -> np.ndarray:
    """Zero-pad or trim the last axis to exactly ``num_samples``."""
    if samples.shape[-1] >= num_samples:
        return samples[..., :num_samples]
    return np.pad(samples, [(0, 0)] * (samples.ndim - 1) + [(0, num_samples - samples.shape[-1])])


def check_samples(waveform: torch.Tensor, name: str) -> torch.Tensor:
    """``waveform`` (any shape, samples last) if it has samples and all are finite.

    ``AudioError`` naming ``name`` otherwise: a NaN or infinite sample spreads into every
    score of the windows over it, so such a file is refused rather than silently scored (or
    silently zeroed, which would score a silence that is not in the file).
    """
    if waveform.shape[-1] == 0:
        raise AudioError(f"empty audio file: {name}")
    refuse_nonfinite(np.asarray(waveform), name)
    return waveform


def refuse_nonfinite(samples: np.ndarray, name: str, note: str = "") -> None:
    """``AudioError`` naming ``name`` when ``samples`` hold NaN or infinite values.

    numpy, not torch: a torch kernel in a process forked from one that ran OpenMP hangs
    (audio is decoded into the cache in such processes).
    """
    bad = int(np.count_nonzero(~np.isfinite(samples)))
    if bad:
        raise AudioError(f"{name}: {bad} of {samples.size} samples are NaN or infinite{note}")


class Audio:
    """Audio reader.

    Parameters
    ----------
    sample_rate : int
        Sample rate of everything it returns; files at another rate are resampled (soxr).
    mono : str
        "downmix" averages channels. Output is always ``(1, samples)``.

    Files may be a path, a protocol file (dict with "audio"), or an in-memory
    ``{"waveform": (channels, samples), "sample_rate": int}``.
    """

    def __init__(self, sample_rate: int = 16000, mono: str = "downmix"):
        if mono != "downmix":
            raise ValueError(f"Audio: only mono='downmix' is supported, got {mono!r}.")
        self.sample_rate = int(sample_rate)
        self.mono = mono
        self._handles: dict[str, soundfile.SoundFile] = {}
        self._pid = os.getpid()

    def __getstate__(self):
        # open decoders do not cross process boundaries; each worker opens its own
        return {"sample_rate": self.sample_rate, "mono": self.mono}

    def __setstate__(self, state):
        self.__init__(**state)

    def decoder(self, path: Path) -> soundfile.SoundFile:
        """The open decoder of ``path`` in this process (opened on first use, then kept).

        ``AudioError`` naming the file when it is missing or cannot be decoded.
        """
        if os.getpid() != self._pid:  # forked worker: never share a parent's file offsets
            self._handles, self._pid = {}, os.getpid()
        key = str(path)
        handle = self._handles.get(key)
        if handle is None or handle.closed:
            if not path.is_file():
                raise AudioError(f"Audio file not found: {path}")
            try:
                handle = soundfile.SoundFile(key)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise AudioError(f"Cannot decode audio file {path}: {error}") from None
            if len(self._handles) > 512:  # bound open file descriptors
                self.close()
            self._handles[key] = handle
        return handle

    def close(self) -> None:
        """Close every open decoder."""
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def info(self, file: AudioFile) -> Tuple[int, int]:
        """``(num_frames, sample_rate)`` of the file as stored (no decoding)."""
        path = audio_path(file)
        if path is None:
            waveform = file["waveform"]
            return int(waveform.shape[-1]), int(file["sample_rate"])
        handle = self.decoder(path)
        return handle.frames, handle.samplerate

    def get_duration(self, file: AudioFile) -> float:
        """Duration of ``file`` in seconds, read from its header."""
        num_frames, sample_rate = self.info(file)
        return num_frames / sample_rate

    def _read(self, file: AudioFile, start: int, stop: int) -> Tuple[np.ndarray, int]:
        """Mono samples ``[start, stop)`` at the file's own rate (clipped to the file)."""
        path = audio_path(file)
        if path is None:
            waveform = file["waveform"]
            waveform = waveform.numpy() if isinstance(waveform, torch.Tensor) else np.asarray(waveform)
            # channels by product, not -1: a 0-sample waveform leaves -1 undetermined
            waveform = waveform.reshape(int(np.prod(waveform.shape[:-1])), waveform.shape[-1]).mean(axis=0)
            return waveform[max(start, 0) : stop].astype(np.float32), int(file["sample_rate"])
        handle = self.decoder(path)
        try:
            handle.seek(min(max(start, 0), handle.frames))
            samples = handle.read(max(0, min(stop, handle.frames) - max(start, 0)), dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError) as error:
            raise AudioError(f"Cannot decode audio file {path}: {error}") from None
        return to_mono(samples), handle.samplerate

    def _resample(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        if sample_rate == self.sample_rate or samples.size == 0:
            return samples
        return soxr.resample(samples, sample_rate, self.sample_rate).astype(np.float32)

    def __call__(self, file: AudioFile) -> Tuple[torch.Tensor, int]:
        """Whole file as ``((1, samples) float32 tensor, sample_rate)``."""
        num_frames, _ = self.info(file)
        samples, sample_rate = self._read(file, 0, num_frames)
        return torch.from_numpy(np.ascontiguousarray(self._resample(samples, sample_rate)))[None], self.sample_rate

    def crop(self, file: AudioFile, segment, fixed: Optional[float] = None) -> Tuple[torch.Tensor, int]:
        """Excerpt ``segment`` (a ``pyannote.core.Segment``) of ``file``.

        Returns ``(waveform, sample_rate)`` with waveform ``(1, samples)``. With ``fixed``
        (seconds), it has exactly ``round(fixed * sample_rate)`` samples, zero-padded past
        either end of the file.
        """
        duration = segment.duration if fixed is None else fixed
        num_samples = seconds_to_samples(duration, self.sample_rate)
        _, file_rate = self.info(file)
        start = seconds_to_samples(segment.start, file_rate)
        stop = start + seconds_to_samples(duration, file_rate)
        samples, file_rate = self._read(file, start, stop)
        samples = self._resample(samples, file_rate)
        left_pad = seconds_to_samples(max(0.0, -segment.start), self.sample_rate)
        samples = fit_length(np.pad(samples, (left_pad, 0)) if left_pad else samples, num_samples)
        return torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))[None], self.sample_rate


def decode_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Whole file ``path`` as ``(samples,)`` float32 at ``sample_rate`` (channels averaged, soxr).

    ``AudioError`` (a ValueError) naming the file when it cannot be decoded, is empty or
    holds NaN or infinite samples.
    """
    if not Path(path).is_file():
        raise AudioError(f"no such audio file: {path}")
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"Cannot decode audio file {path}: {error}") from None
    samples = to_mono(samples)
    if samples.size == 0:
        raise AudioError(f"empty audio file: {path}")
    refuse_nonfinite(samples, str(path))
    if rate != sample_rate:
        samples = soxr.resample(samples, rate, sample_rate)
    return np.ascontiguousarray(samples, dtype=np.float32)
