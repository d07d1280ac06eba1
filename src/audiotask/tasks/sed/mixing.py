"""Dynamic mixing: new soundscapes on the fly from isolated event clips, with exact strong labels.

A user with folders of isolated recordings (``events/Dog/*.wav``, ``events/Speech/*.flac``)
and, optionally, of background recordings trains a sound event detector without an
offline Scaper pass: every batch is mixed afresh, and its labels are the sample spans
actually written, not annotations that may drift from the audio.

Like the samplers (``engine.samplers``), a batch is a pure function of
(seed, rank, worker, epoch, index): drawing batch ``index`` again gives the same audio and
labels whatever was drawn before, which is what makes training resumable.

- :class:`DynamicMixing`: the user's options, validated.
- :class:`SoundscapeMixer`: decodes the clips once, then mixes batches.
- :func:`trim_bounds` (and ``core.audio.decode_mono``): the loading steps, usable alone.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from audiotask.core.audio import AudioError, decode_mono
from audiotask.core.frames import Frames, seconds_to_samples
from audiotask.engine.targets import frame_targets_batch
from audiotask.protocols.uris import audio_files_below, has_audio_extension

Event = tuple[float, float, int]  # (onset s, offset s, class index)

# appended to every generator key: a mixer and a sampler of one worker share
# (seed, rank, worker, epoch, index), and must not draw the same numbers
_MIX_STREAM = 0x4D495845
# frames of the energy trim: short enough that a boundary frame is refined sample by sample cheaply
_TRIM_FRAME_SECONDS = 0.01
# without backgrounds: a noise floor, so that no stretch is digital silence (log features
# of exact zeros are -inf or a clamp value the model would learn as a cue)
_NOISE_FLOOR_DBFS = -60.0
# without backgrounds, an event's SNR is relative to this level (RMS, dB of full scale), so
# snr_range still sets how loud events are relative to each other and to the noise floor
_REFERENCE_DBFS = -30.0
_PEAK = 0.99
# onset re-draws before an event that breaks max_overlap or min_gap is dropped
_PLACEMENT_TRIES = 20


def _db_to_power(db: float) -> float:
    return 10.0 ** (db / 10.0)


# ---- options ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DynamicMixing:
    """Options of dynamic mixing.

    Parameters
    ----------
    events : str or Path
        Folder with one sub-folder of isolated clips per class (``events/Dog/*.wav``).
    backgrounds : str or Path, optional
        Folder of background recordings. Without it, events are mixed on silence plus white
        noise at -60 dBFS, and SNRs are relative to a -30 dBFS reference.
    snr_range : (float, float)
        Event-to-background power ratio in dB, drawn uniformly per event; measured on the
        event's written span against the background over the same span.
    events_per_clip : (int, int)
        Inclusive range of the number of events drawn per soundscape (an event that cannot
        be placed under ``max_overlap`` / ``min_gap`` is dropped).
    max_overlap : int
        At most this many events sound at once; 1 means no overlap.
    share : float
        Fraction of each training batch the task fills with mixed soundscapes, in (0, 1].
    trim_db : float
        Clips are trimmed at load of their leading and trailing parts more than ``trim_db``
        below their loudest 10 ms frame, so a label starts and ends where the sound does.
    min_gap : float
        Seconds of at least this much between two events of the same class (which never
        overlap): closer, their frame targets would merge into one event.
    """

    events: Union[str, Path]
    backgrounds: Optional[Union[str, Path]] = None
    snr_range: tuple[float, float] = (0.0, 20.0)
    events_per_clip: tuple[int, int] = (1, 3)
    max_overlap: int = 2
    share: float = 0.25
    trim_db: float = 40.0
    min_gap: float = 0.0

    def __post_init__(self):
        for name in ("events", "backgrounds"):
            value = getattr(self, name)
            if value is None and name == "backgrounds":
                continue
            if not isinstance(value, (str, os.PathLike)) or not str(value):
                raise ValueError(f"DynamicMixing: {name} must be a folder path, got {value!r}.")
        low, high = _pair(self.snr_range, "snr_range")
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"DynamicMixing: snr_range must be two finite dB values, low <= high, got {self.snr_range!r}.")
        low, high = _pair(self.events_per_clip, "events_per_clip")
        if not all(_is_int(v) for v in (low, high)) or not 0 <= low <= high or high < 1:
            raise ValueError(
                f"DynamicMixing: events_per_clip must be two integers 0 <= low <= high, high >= 1, got {self.events_per_clip!r}."
            )
        if not _is_int(self.max_overlap) or self.max_overlap < 1:
            raise ValueError(f"DynamicMixing: max_overlap must be an integer >= 1, got {self.max_overlap!r}.")
        if not _is_real(self.share) or not 0 < self.share <= 1:
            raise ValueError(f"DynamicMixing: share must be in (0, 1], got {self.share!r}.")
        if not _is_real(self.trim_db) or not 0 < self.trim_db < math.inf:
            raise ValueError(f"DynamicMixing: trim_db must be a positive finite number of dB, got {self.trim_db!r}.")
        if not _is_real(self.min_gap) or not 0 <= self.min_gap < math.inf:
            raise ValueError(f"DynamicMixing: min_gap must be a finite number of seconds >= 0, got {self.min_gap!r}.")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and not math.isnan(value)


def _pair(value, name: str) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_real(v) for v in value):
        raise ValueError(f"DynamicMixing: {name} must be a pair of numbers, got {value!r}.")
    return value[0], value[1]


# ---- loading ---------------------------------------------------------------------------
def trim_bounds(samples: np.ndarray, sample_rate: int, trim_db: float) -> Optional[tuple[int, int]]:
    """``[start, stop)`` of ``samples`` once the parts more than ``trim_db`` below the loudest frame are cut.

    Frames of 10 ms find the sound robustly (a lone click in the lead-in is not a start);
    the boundary is then refined to the sample: the first and last samples, near the first
    and last loud frames, whose power reaches the threshold. None for a silent clip.
    """
    length = max(1, seconds_to_samples(_TRIM_FRAME_SECONDS, sample_rate))
    power = np.square(samples, dtype=np.float64)
    frames = -(-len(samples) // length)
    sums = np.add.reduceat(power, np.arange(frames) * length)
    counts = np.minimum(length, len(samples) - np.arange(frames) * length)
    frame_power = sums / counts
    peak = frame_power.max(initial=0.0)
    if not peak > 0:
        return None
    threshold = peak * _db_to_power(-trim_db)
    loud_frames = np.flatnonzero(frame_power >= threshold)
    # a frame whose mean reaches the threshold holds a sample that does: `loud` is never empty
    low = max(0, (loud_frames[0] - 1) * length)
    high = min(len(samples), (loud_frames[-1] + 2) * length)
    loud = np.flatnonzero(power[low:high] >= threshold)
    return low + int(loud[0]), low + int(loud[-1]) + 1


def _pack(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(all samples, start of each, length of each): one buffer pickles and forks cheaper than thousands."""
    lengths = np.array([len(a) for a in arrays], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    data = np.concatenate(arrays).astype(np.float32, copy=False) if arrays else np.zeros(0, dtype=np.float32)
    return data, starts, lengths


# ---- mixing ----------------------------------------------------------------------------
@dataclass
class MixDetails:
    """What a batch drew, for tests and inspection (``soundscapes(..., return_details=True)``).

    snr_db : per soundscape, the drawn SNR of each event, in the order of its events.
    background : (count, samples) float32, each soundscape's background (or noise floor)
        as written, after ``scale``: the mixture minus it is the events alone.
    scale : (count,) float64, the one gain applied to each soundscape to keep its peak <= 0.99.
    """

    snr_db: list[list[float]]
    background: np.ndarray
    scale: np.ndarray


class SoundscapeMixer:
    """Mixes soundscapes of isolated event clips over backgrounds, with exact strong labels.

    Every clip is decoded once here (mono, resampled, energy-trimmed) and kept in memory;
    the mixer holds nothing but arrays, so it pickles to dataloader workers.

    Parameters
    ----------
    mixing : DynamicMixing
        The options.
    classes : sequence of str
        Class names, in the order of the task's outputs: ``events/<name>/`` for each.
    sample_rate : int
        Sample rate of the soundscapes, in Hz.
    duration : float
        Duration of each soundscape, in seconds.
    """

    def __init__(self, mixing: DynamicMixing, classes: Sequence[str], *, sample_rate: int, duration: float):
        if not _is_int(sample_rate) or sample_rate < 1:
            raise ValueError(f"SoundscapeMixer: sample_rate must be a positive integer, got {sample_rate!r}.")
        if not _is_real(duration) or not 0 < duration < math.inf:
            raise ValueError(f"SoundscapeMixer: duration must be a positive number of seconds, got {duration!r}.")
        self.mixing = mixing
        self.classes = tuple(str(c) for c in classes)
        self.sample_rate = int(sample_rate)
        self.duration = float(duration)
        self.num_samples = seconds_to_samples(self.duration, self.sample_rate)
        if self.num_samples < 1:
            raise ValueError(f"SoundscapeMixer: {duration} s is not a single sample at {sample_rate} Hz.")
        if not self.classes:
            raise ValueError("SoundscapeMixer: no class to mix.")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"SoundscapeMixer: classes must be distinct, got {list(self.classes)}.")
        self.min_gap_samples = seconds_to_samples(mixing.min_gap, self.sample_rate)
        self._load_events(Path(mixing.events))
        self._load_backgrounds(None if mixing.backgrounds is None else Path(mixing.backgrounds))

    def _load_events(self, root: Path) -> None:
        if not root.is_dir():
            raise ValueError(f"DynamicMixing: events folder {root} does not exist.")
        for entry in sorted(root.iterdir()):
            if entry.is_dir() and entry.name not in self.classes:
                warnings.warn(f"DynamicMixing: {entry} is not the folder of a class {list(self.classes)}; ignored.", stacklevel=3)
            elif entry.is_file() and has_audio_extension(entry.name):
                warnings.warn(f"DynamicMixing: {entry} is not in a class folder; ignored.", stacklevel=3)
        clips, per_class = [], []
        missing = [name for name in self.classes if not (root / name).is_dir()]
        if len(missing) == len(self.classes):
            raise ValueError(f"DynamicMixing: {root} has no folder of a class {list(self.classes)}.")
        if missing:  # the user may have isolated clips of some classes only
            warnings.warn(f"DynamicMixing: no folder in {root} for class(es) {', '.join(missing)}: "
                          "the mixed soundscapes have none of their events.", stacklevel=3)
        for name in self.classes:
            folder = root / name
            if not folder.is_dir():
                per_class.append(0)
                continue
            files = audio_files_below(folder)
            if not files:
                raise ValueError(f"DynamicMixing: class folder {folder} holds no audio clip.")
            for path in files:
                samples = decode_mono(path, self.sample_rate)
                bounds = trim_bounds(samples, self.sample_rate, self.mixing.trim_db)
                if bounds is None:
                    raise AudioError(f"DynamicMixing: event clip {path} is silent.")
                clips.append(samples[bounds[0] : bounds[1]])
            per_class.append(len(files))
        self._clips, self._clip_start, self._clip_length = _pack(clips)
        self._class_count = np.array(per_class, dtype=np.int64)
        self._class_first = np.concatenate([[0], np.cumsum(self._class_count)[:-1]]).astype(np.int64)
        self._mixed_classes = np.flatnonzero(self._class_count)  # the classes with clips

    def _load_backgrounds(self, folder: Optional[Path]) -> None:
        backgrounds = []
        if folder is not None:
            if not folder.is_dir():
                raise ValueError(f"DynamicMixing: backgrounds folder {folder} does not exist.")
            files = audio_files_below(folder)
            if not files:
                raise ValueError(f"DynamicMixing: backgrounds folder {folder} holds no audio file.")
            for path in files:
                samples = decode_mono(path, self.sample_rate)
                if not np.any(samples):
                    raise AudioError(f"DynamicMixing: background {path} is silent: no SNR can be set against it.")
                # tiled once here, so that any crop of num_samples is one slice
                repeats = -(-self.num_samples // len(samples))
                backgrounds.append(np.tile(samples, repeats) if repeats > 1 else samples)
        self._backgrounds, self._background_start, self._background_length = _pack(backgrounds)

    # ---- drawing -------------------------------------------------------------------
    def soundscapes(
        self, count: int, *, seed: int, rank: int, worker: int, epoch: int, index: int, return_details: bool = False
    ):
        """``count`` soundscapes of batch ``index`` of the stream (seed, rank, worker, epoch).

        Returns
        -------
        waveforms : (count, 1, samples) float32 array
            Peak at most 0.99.
        events : list (count) of lists of (onset, offset, class_index)
            Each soundscape's events in seconds, sorted: exactly the sample spans written,
            ``sample / sample_rate``.
        details : MixDetails
            Only with ``return_details``.
        """
        key = [seed, rank, worker, epoch, index]
        if not all(_is_int(k) and k >= 0 for k in key) or not _is_int(count) or count < 0:
            raise ValueError(f"SoundscapeMixer: count and (seed, rank, worker, epoch, index) must be integers >= 0, got {count}, {key}.")
        # one generator per batch: resuming at batch `index` needs nothing drawn before it
        rng = np.random.default_rng(np.random.SeedSequence([int(k) for k in key] + [_MIX_STREAM]))
        waveforms = np.zeros((count, 1, self.num_samples), dtype=np.float32)
        backgrounds = np.zeros((count, self.num_samples), dtype=np.float32) if return_details else None
        scales, events, snrs = np.ones(count), [], []
        for b in range(count):
            mixture, background, placed = self._mix_one(rng)
            peak = float(np.abs(mixture).max(initial=0.0))
            scales[b] = _PEAK / peak if peak > _PEAK else 1.0
            waveforms[b, 0] = mixture * scales[b]
            if return_details:
                backgrounds[b] = background * scales[b]
            placed.sort()
            events.append([(start / self.sample_rate, stop / self.sample_rate, cls) for start, stop, cls, _ in placed])
            snrs.append([snr for *_, snr in placed])
        if return_details:
            return waveforms, events, MixDetails(snr_db=snrs, background=backgrounds, scale=scales)
        return waveforms, events

    def _mix_one(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list]:
        """(mixture, background) float64 ``(samples,)`` and the events ``(start, stop, class, snr)`` in samples."""
        n = self.num_samples
        if len(self._background_length):
            which = rng.integers(len(self._background_length))
            offset = self._background_start[which] + rng.integers(self._background_length[which] - n + 1)
            background = self._backgrounds[offset : offset + n].astype(np.float64)
        else:
            background = rng.standard_normal(n) * math.sqrt(_db_to_power(_NOISE_FLOOR_DBFS))
        mixture = background.copy()
        placed: list = []
        low, high = self.mixing.events_per_clip
        for _ in range(rng.integers(low, high + 1)):
            cls = int(self._mixed_classes[rng.integers(len(self._mixed_classes))])
            clip = self._class_first[cls] + rng.integers(self._class_count[cls])
            snr = float(rng.uniform(*self.mixing.snr_range))
            length = int(self._clip_length[clip])
            crop = 0
            if length > n:  # longer than the soundscape: a random part of it, filling it
                crop, length = int(rng.integers(length - n + 1)), n
            start = self._place(rng, placed, length, cls)
            if start is None:
                continue
            event = self._clips[self._clip_start[clip] + crop :][:length].astype(np.float64)
            event_power = float(np.mean(event**2))
            if not event_power > 0:  # a crop inside a silent stretch of a long clip: nothing to label
                continue
            reference = float(np.mean(background[start : start + length] ** 2)) if len(self._background_length) else 0.0
            if not reference > 0:
                reference = _db_to_power(_REFERENCE_DBFS)
            mixture[start : start + length] += math.sqrt(reference * _db_to_power(snr) / event_power) * event
            placed.append((start, start + length, cls, snr))
        return mixture, background, placed

    def _place(self, rng: np.random.Generator, placed: list, length: int, cls: int) -> Optional[int]:
        """A start sample for an event of ``length`` samples that keeps max_overlap and min_gap, or None."""
        latest = self.num_samples - length
        for _ in range(_PLACEMENT_TRIES if latest > 0 else 1):
            start = int(rng.integers(latest + 1))
            if self._fits(placed, start, start + length, cls):
                return start
        return None

    def _fits(self, placed: list, start: int, stop: int, cls: int) -> bool:
        gap = self.min_gap_samples
        for other_start, other_stop, other_cls, _ in placed:
            if other_cls == cls and not (stop + gap <= other_start or other_stop + gap <= start):
                return False
        # the most events sounding at once inside [start, stop) is reached at start or at an onset
        points = [start] + [s for s, *_ in placed if start < s < stop]
        busiest = max(sum(s <= t < e for s, e, *_ in placed) for t in points)
        return busiest + 1 <= self.mixing.max_overlap

    # ---- targets -------------------------------------------------------------------
    def frame_targets(self, events: Sequence[Sequence[Event]], *, frames: Frames, num_frames: int) -> np.ndarray:
        """(count, num_frames, classes) uint8 targets of the ``events`` of :meth:`soundscapes`.

        A frame is active when its centre lies inside an event: the rule of the task's
        frame targets (``engine.targets.frame_targets_batch``).
        """
        rows = [(b, on, off, cls) for b, soundscape in enumerate(events) for on, off, cls in soundscape]
        chunk, starts, ends, classes = (np.array(column) for column in zip(*rows)) if rows else ([],) * 4
        return frame_targets_batch(
            np.asarray(chunk, dtype=np.int64), np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64),
            np.asarray(classes, dtype=np.int64), frames=frames, num_chunks=len(events), num_frames=num_frames,
            num_classes=len(self.classes),
        )

    def batch_rows(self, count: int, *, key: tuple[int, ...], frames: Frames, num_frames: int) -> dict:
        """``count`` soundscapes as training-batch rows: waveforms "X", frame targets "y", clip
        targets "y_clip" and the masks of the detection recipe (every row strongly labelled).

        ``key``: (seed, rank, worker, epoch, index) of the batch they complete.
        """
        import torch

        seed, rank, worker, epoch, index = key
        waveforms, events = self.soundscapes(count, seed=seed, rank=rank, worker=worker, epoch=epoch, index=index)
        frame = self.frame_targets(events, frames=frames, num_frames=num_frames)
        every_row = torch.ones(len(frame), dtype=torch.uint8)
        return {"X": torch.from_numpy(waveforms), "y": torch.from_numpy(frame),
                "y_clip": torch.from_numpy(frame.max(axis=1)), "mask": every_row, "mask_clip": every_row.clone()}
