"""Tiny deterministic clip corpora: labelled clips for classification and tagging tests.

Each class is a synthetic sound: a pattern (pure tone, harmonic stack, band of noise,
amplitude-modulated tone) at a frequency of its own, with a random onset, length and level.

- ``difficulty="easy"`` (the default, what tests use): every clip of a class is the same
  sound over low white noise, so that a small CRNN tells the classes apart within a few
  hundred steps.
- ``difficulty="hard"`` (:data:`HARD`, for benchmarks): each clip varies its class's sound
  (frequency jittered, pattern parameters drawn) so that neighbouring classes overlap, adds
  quieter sounds of other classes, and buries it all in background noise of random colour
  and level: a small model gets most clips right, not all (see :class:`ClipVariation`).

The same arguments always write the same files.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np
import soundfile

#: the sound patterns, cycled over the classes
PATTERNS = ("tone", "harmonic", "noise", "am")
#: lowest and highest base frequency of the classes (Hz), spread on a log scale
LOWEST, HIGHEST = 250.0, 3000.0
#: background noise (standard deviation) of an easy set unless told otherwise
EASY_NOISE = 0.02


@dataclass(frozen=True)
class ClipVariation:
    """How the clips of a varied ("hard") set differ from one another.

    Every range is ``(low, high)``, drawn uniformly once per clip (per sound for the sounds'
    own ranges). The clip's label is its class sound's, the loudest of its sounds (the
    background noise aside).

    Parameters
    ----------
    frequency_jitter : float
        Standard deviation (semitones) of each sound's shift from its class's frequency
        (neighbouring classes are about 4.8 semitones apart with 10 classes).
    pattern_spread : float
        How far each sound's pattern parameters stray from the easy set's, 0 to 1: harmonic
        roll-off ``1/h`` to ``1/h**0.5 ... 1/h**3`` (nearly a tone), noise band ±30 % to
        ±5 ... 60 %, amplitude modulation at 8 Hz and full depth to 2.8 ... 16 Hz and depth
        0.2 ... 1 (nearly a tone).
    level : (dB, dB)
        Peak level of the class sound, re full scale (a clip that would peak past 0.99 is
        scaled down as a whole).
    length : (float, float)
        Length of each sound, as a share of the clip (its onset: anywhere it fits).
    distractors : (int, int)
        How many sounds of other classes (distinct ones) a clip holds, at least and at most.
    distractor_gain : (dB, dB)
        Their peak level relative to the class sound's (negative: quieter).
    snr : (dB, dB)
        RMS of the class sound (over its length) relative to that of the background noise.
    noise_slope : (float, float)
        Colour of the background noise: its power falls as ``frequency ** -slope``
        (0 white, 1 pink, 2 brown).
    """

    frequency_jitter: float
    pattern_spread: float
    level: tuple[float, float]
    length: tuple[float, float]
    distractors: tuple[int, int]
    distractor_gain: tuple[float, float]
    snr: tuple[float, float]
    noise_slope: tuple[float, float]

    def __post_init__(self):
        for name, value in asdict(self).items():
            if isinstance(value, tuple) and not value[0] <= value[1]:
                raise ValueError(f"ClipVariation: {name} must be (low, high) with low <= high, got {value}.")
        if not 0.0 <= self.pattern_spread <= 1.0:
            raise ValueError(f"ClipVariation: pattern_spread must be within 0 and 1, got {self.pattern_spread}.")
        if not (0.0 < self.length[0] and self.length[1] <= 1.0):
            raise ValueError(f"ClipVariation: length must be shares of the clip within (0, 1], got {self.length}.")
        if self.frequency_jitter < 0 or self.distractors[0] < 0:
            raise ValueError("ClipVariation: frequency_jitter and distractors must not be negative.")

    def describe(self) -> str:
        """One line of the settings, e.g. ``"frequency_jitter=2.0, pattern_spread=1.0, level=(-30, -6), ..."``."""
        return ", ".join(f"{name}={value}" for name, value in asdict(self).items())


#: the benchmark's set: neighbouring classes overlap, distractors 6 to 16 dB down, noise at -3
#: to +12 dB SNR; a small CRNN gets about two clips in three right after 300 steps, three in
#: four after 1000 (``benchmarks/clip_classification.py``)
HARD = ClipVariation(frequency_jitter=2.0, pattern_spread=1.0, level=(-30.0, -6.0), length=(0.1, 0.8),
                     distractors=(1, 2), distractor_gain=(-16.0, -6.0), snr=(-3.0, 12.0), noise_slope=(0.0, 2.0))
#: the named difficulties of :func:`make_clip_dataset` (easy: each class's own sound, no variation)
DIFFICULTIES: dict[str, Optional[ClipVariation]] = {"easy": None, "hard": HARD}


def clip_variation(difficulty: Union[str, ClipVariation]) -> Optional[ClipVariation]:
    """The variation of ``difficulty``: a name of :data:`DIFFICULTIES` (None for "easy") or itself."""
    if isinstance(difficulty, ClipVariation):
        return difficulty
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {sorted(DIFFICULTIES)} or a ClipVariation, got {difficulty!r}.")
    return DIFFICULTIES[difficulty]


def class_names(count: int) -> list[str]:
    """``count`` class names, each its pattern and frequency, e.g. ``"tone250"``, ``"harmonic329"``."""
    return [f"{PATTERNS[k % len(PATTERNS)]}{frequency:.0f}" for k, frequency in enumerate(class_frequencies(count))]


def class_frequencies(count: int) -> np.ndarray:
    """(count,) base frequency of each class (Hz)."""
    if count < 1:
        raise ValueError(f"class_frequencies: count must be at least 1, got {count}.")
    return np.geomspace(LOWEST, HIGHEST, count) if count > 1 else np.array([LOWEST])


def pattern_sound(
    pattern: str, frequency: float, length: int, sample_rate: int, rng: np.random.Generator, *,
    harmonics: int = 4, rolloff: float = 1.0, bandwidth: float = 1.3, am_rate: float = 8.0, am_depth: float = 1.0,
) -> np.ndarray:
    """(length,) float32 sound of ``pattern`` (one of :data:`PATTERNS`) at ``frequency`` (Hz),
    faded in and out over 10 ms; the defaults give the easy set's sounds (peak about 1).

    ``harmonics`` and ``rolloff``: a harmonic stack's partials and their amplitudes
    ``1 / h ** rolloff``; ``bandwidth``: a noise band spans ``frequency / bandwidth`` to
    ``frequency * bandwidth``; ``am_rate`` (Hz) and ``am_depth`` (0 to 1): amplitude modulation.
    """
    t = np.arange(length) / sample_rate
    if pattern == "tone":
        sound = np.sin(2 * np.pi * frequency * t)
    elif pattern == "harmonic":
        sound = sum(np.sin(2 * np.pi * frequency * h * t) / h**rolloff for h in range(1, harmonics + 1)) / 2.0
    elif pattern == "noise":
        spectrum = np.fft.rfft(rng.standard_normal(length))
        bins = np.fft.rfftfreq(length, 1 / sample_rate)
        spectrum[(bins < frequency / bandwidth) | (bins > frequency * bandwidth)] = 0.0  # a band around the frequency
        sound = np.fft.irfft(spectrum, n=length)
        sound /= max(np.abs(sound).max(), 1e-9)
    elif pattern == "am":
        sound = np.sin(2 * np.pi * frequency * t) * (1 - am_depth / 2 + am_depth / 2 * np.sin(2 * np.pi * am_rate * t))
    else:
        raise ValueError(f"pattern_sound: pattern must be one of {PATTERNS}, got {pattern!r}.")
    fade = np.minimum(1.0, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.01 * sample_rate))
    return (sound * fade).astype(np.float32)


def class_sound(index: int, count: int, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """(length,) float32 sound of class ``index`` of ``count`` in an easy set, peak about 1, faded in and out."""
    frequency = float(class_frequencies(count)[index])
    return pattern_sound(PATTERNS[index % len(PATTERNS)], frequency, length, sample_rate, rng)


def varied_sound(
    index: int, count: int, length: int, sample_rate: int, rng: np.random.Generator, variation: ClipVariation,
) -> np.ndarray:
    """(length,) float32 sound of class ``index`` of ``count`` with its own draw of frequency and
    pattern parameters (``variation``), peak 1."""
    pattern = PATTERNS[index % len(PATTERNS)]
    frequency = float(class_frequencies(count)[index]) * 2 ** (rng.normal(0.0, variation.frequency_jitter) / 12)
    spread = variation.pattern_spread
    options = {}
    if pattern == "harmonic":
        # partials past Nyquist would fold back as unrelated tones
        options = dict(harmonics=int(np.clip((0.5 * sample_rate - 1) // frequency, 1, 4)),
                       rolloff=1.0 + spread * rng.uniform(-0.5, 2.0))
    elif pattern == "noise":
        options = dict(bandwidth=1.3 + spread * rng.uniform(-0.25, 0.3))
    elif pattern == "am":
        options = dict(am_rate=8.0 * 2 ** (spread * rng.uniform(-1.5, 1.0)),
                       am_depth=1.0 - spread * rng.uniform(0.0, 0.8))
    sound = pattern_sound(pattern, frequency, length, sample_rate, rng, **options)
    return sound / max(float(np.abs(sound).max()), 1e-9)


def coloured_background(samples: int, slope: float, rng: np.random.Generator) -> np.ndarray:
    """(samples,) noise of RMS 1 whose power falls as ``frequency ** -slope`` (0 white, 1 pink, 2 brown)."""
    spectrum = np.fft.rfft(rng.standard_normal(samples))
    frequencies = np.fft.rfftfreq(samples)
    spectrum[0] = 0.0
    spectrum[1:] *= frequencies[1:] ** (-slope / 2)
    noise = np.fft.irfft(spectrum, n=samples)
    return noise / max(float(np.sqrt(np.mean(noise**2))), 1e-12)


def render_clip(
    classes: Sequence[int], count: int, *, duration: float, sample_rate: int, rng: np.random.Generator,
    noise: float = EASY_NOISE,
) -> np.ndarray:
    """(samples,) float32 clip of an easy set: background noise plus one sound of each of
    ``classes``, each at a random onset, with a random length (30 % to 90 % of the clip) and
    level (-12 to -3 dB)."""
    samples = int(round(duration * sample_rate))
    clip = noise * rng.standard_normal(samples)
    for index in classes:
        length = max(1, int(samples * rng.uniform(0.3, 0.9)))
        onset = int(rng.integers(0, samples - length + 1))
        level = 10 ** (rng.uniform(-12.0, -3.0) / 20)
        clip[onset : onset + length] += level * class_sound(index, count, length, sample_rate, rng)
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def place_sound(
    index: int, count: int, level: float, samples: int, sample_rate: int, rng: np.random.Generator,
    variation: ClipVariation,
) -> tuple[np.ndarray, float]:
    """``(track, rms)``: (samples,) a varied sound of class ``index`` at peak ``level``, of random
    length and onset, silence elsewhere; and the sound's RMS over its own length."""
    length = max(1, int(samples * rng.uniform(*variation.length)))
    onset = int(rng.integers(0, samples - length + 1))
    sound = level * varied_sound(index, count, length, sample_rate, rng, variation)
    track = np.zeros(samples)
    track[onset : onset + length] = sound
    return track, float(np.sqrt(np.mean(sound.astype(np.float64) ** 2)))


def render_varied_clip(
    index: int, count: int, *, duration: float, sample_rate: int, rng: np.random.Generator, variation: ClipVariation,
) -> np.ndarray:
    """(samples,) float32 clip of class ``index`` of ``count`` in a varied set: its class sound,
    quieter sounds of other classes and coloured background noise, drawn as ``variation`` says."""
    samples = int(round(duration * sample_rate))
    level = 10 ** (rng.uniform(*variation.level) / 20)
    clip, rms = place_sound(index, count, level, samples, sample_rate, rng, variation)
    others = [k for k in range(count) if k != index]
    how_many = min(len(others), int(rng.integers(variation.distractors[0], variation.distractors[1] + 1)))
    for other in rng.choice(others, size=how_many, replace=False) if how_many else []:
        gain = 10 ** (rng.uniform(*variation.distractor_gain) / 20)
        clip += place_sound(int(other), count, level * gain, samples, sample_rate, rng, variation)[0]
    snr = 10 ** (rng.uniform(*variation.snr) / 20)
    clip += rms / snr * coloured_background(samples, rng.uniform(*variation.noise_slope), rng)
    peak = float(np.abs(clip).max())
    if peak > 0.99:  # scaled down rather than clipped: clipping would add partials of its own
        clip *= 0.99 / peak
    return clip.astype(np.float32)


def make_clip_dataset(
    root: str | Path,
    *,
    classes: int = 10,
    clips_per_class: int = 8,
    folds: int = 4,
    duration: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    noise: Optional[float] = None,
    difficulty: Union[str, ClipVariation] = "easy",
) -> tuple[Path, Path]:
    """Write a labelled clip set; return ``(audio folder, CSV path)``.

    ``root/audio/<fold>-<label>-<k>.wav`` clips of ``duration`` seconds, one class each, and
    ``root/labels.csv`` with the header ``filename,label,fold``. Each class's clips are dealt
    over the folds in turn (fold ``1 + k % folds``), so that every fold holds every class
    when ``clips_per_class >= folds``.

    ``difficulty``: "easy" (each class's own sound over white noise), "hard" (:data:`HARD`)
    or a :class:`ClipVariation`. ``noise``: an easy set's background noise, its standard
    deviation (the sounds peak at 0.25 to 0.7; default 0.02): raise it for a harder set. A
    varied set draws its background level from its ``snr`` range instead, so ``noise`` is
    an error there.
    """
    variation = clip_variation(difficulty)
    if variation is not None and noise is not None:
        raise ValueError("make_clip_dataset: noise sets the background of an easy set; a varied set "
                         f"(difficulty {difficulty!r}) draws it from its snr range.")
    root = Path(root)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    names = class_names(classes)
    rng = np.random.default_rng(seed)
    timing = dict(duration=duration, sample_rate=sample_rate, rng=rng)
    rows = []
    for index, label in enumerate(names):
        for k in range(clips_per_class):
            fold = 1 + k % max(1, folds)
            filename = f"{fold}-{label}-{k:03d}.wav"
            if variation is None:
                clip = render_clip([index], classes, noise=EASY_NOISE if noise is None else noise, **timing)
            else:
                clip = render_varied_clip(index, classes, variation=variation, **timing)
            soundfile.write(audio / filename, clip, sample_rate, subtype="PCM_16")
            rows.append((filename, label, str(fold)))
    csv_path = root / "labels.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("filename", "label", "fold"))
        writer.writerows(rows)
    return audio, csv_path


def make_tagging_dataset(
    root: str | Path,
    *,
    classes: int = 5,
    clips: int = 24,
    folds: Optional[int] = None,
    duration: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    labels_format: Literal["tsv", "csv"] = "tsv",
    noise: float = EASY_NOISE,
) -> tuple[Path, Path]:
    """Write a tagged clip set (1 to 3 classes per clip); return ``(audio folder, labels path)``.

    ``root/audio/clip<k>.wav`` and their tags: a DCASE weak-label TSV ``root/tags.tsv``
    (``filename<TAB>label1,label2``), or with ``labels_format="csv"`` a clip CSV
    ``root/tags.csv`` (``filename,labels[,fold]``; clip ``k`` in fold ``1 + k % folds``).
    ``noise``: standard deviation of the background noise.
    """
    if labels_format not in ("tsv", "csv"):
        raise ValueError(f"make_tagging_dataset: labels_format must be 'tsv' or 'csv', got {labels_format!r}.")
    if folds is not None and labels_format != "csv":
        raise ValueError("make_tagging_dataset: folds need labels_format='csv' (a weak TSV has no fold column).")
    root = Path(root)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    names = class_names(classes)
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(clips):
        present = sorted(rng.choice(classes, size=int(rng.integers(1, min(3, classes) + 1)), replace=False).tolist())
        clip = render_clip(present, classes, duration=duration, sample_rate=sample_rate, rng=rng, noise=noise)
        filename = f"clip{k:03d}.wav"
        soundfile.write(audio / filename, clip, sample_rate, subtype="PCM_16")
        rows.append((filename, ",".join(names[i] for i in present), str(1 + k % folds) if folds else None))
    if labels_format == "tsv":
        path = root / "tags.tsv"
        path.write_text("filename\tevent_labels\n" + "".join(f"{f}\t{tags}\n" for f, tags, _ in rows), encoding="utf-8")
        return audio, path
    path = root / "tags.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(("filename", "labels", "fold") if folds else ("filename", "labels"))
        writer.writerows(row if folds else row[:2] for row in rows)
    return audio, path
