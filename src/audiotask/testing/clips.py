"""Tiny deterministic clip corpora: labelled clips for classification and tagging tests.

Each class is a distinct synthetic sound, so that a small CRNN can tell them apart within
a few hundred steps: a pattern (pure tone, harmonic stack, band of noise, amplitude-
modulated tone) at a frequency of its own, with a random onset, length and level over
background noise (low by default). The same arguments always write the same files.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np
import soundfile

#: the sound patterns, cycled over the classes
PATTERNS = ("tone", "harmonic", "noise", "am")
#: lowest and highest base frequency of the classes (Hz), spread on a log scale
LOWEST, HIGHEST = 250.0, 3000.0


def class_names(count: int) -> list[str]:
    """``count`` class names, each its pattern and frequency, e.g. ``"tone250"``, ``"harmonic329"``."""
    return [f"{PATTERNS[k % len(PATTERNS)]}{frequency:.0f}" for k, frequency in enumerate(class_frequencies(count))]


def class_frequencies(count: int) -> np.ndarray:
    """(count,) base frequency of each class (Hz)."""
    if count < 1:
        raise ValueError(f"class_frequencies: count must be at least 1, got {count}.")
    return np.geomspace(LOWEST, HIGHEST, count) if count > 1 else np.array([LOWEST])


def class_sound(index: int, count: int, length: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """(length,) float32 sound of class ``index`` of ``count``, peak about 1, faded in and out."""
    frequency = float(class_frequencies(count)[index])
    t = np.arange(length) / sample_rate
    pattern = PATTERNS[index % len(PATTERNS)]
    if pattern == "tone":
        sound = np.sin(2 * np.pi * frequency * t)
    elif pattern == "harmonic":
        sound = sum(np.sin(2 * np.pi * frequency * h * t) / h for h in (1, 2, 3, 4)) / 2.0
    elif pattern == "noise":
        spectrum = np.fft.rfft(rng.standard_normal(length))
        bins = np.fft.rfftfreq(length, 1 / sample_rate)
        spectrum[(bins < frequency / 1.3) | (bins > frequency * 1.3)] = 0.0  # a band around the frequency
        sound = np.fft.irfft(spectrum, n=length)
        sound /= max(np.abs(sound).max(), 1e-9)
    else:
        sound = np.sin(2 * np.pi * frequency * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 8.0 * t))
    fade = np.minimum(1.0, np.minimum(np.arange(length), np.arange(length)[::-1]) / (0.01 * sample_rate))
    return (sound * fade).astype(np.float32)


def render_clip(
    classes: Sequence[int], count: int, *, duration: float, sample_rate: int, rng: np.random.Generator,
    noise: float = 0.02,
) -> np.ndarray:
    """(samples,) float32 clip: background noise plus one sound of each of ``classes``, each at
    a random onset, with a random length (30 % to 90 % of the clip) and level (-12 to -3 dB)."""
    samples = int(round(duration * sample_rate))
    clip = noise * rng.standard_normal(samples)
    for index in classes:
        length = max(1, int(samples * rng.uniform(0.3, 0.9)))
        onset = int(rng.integers(0, samples - length + 1))
        level = 10 ** (rng.uniform(-12.0, -3.0) / 20)
        clip[onset : onset + length] += level * class_sound(index, count, length, sample_rate, rng)
    return np.clip(clip, -1.0, 1.0).astype(np.float32)


def make_clip_dataset(
    root: str | Path,
    *,
    classes: int = 10,
    clips_per_class: int = 8,
    folds: int = 4,
    duration: float = 2.0,
    sample_rate: int = 16000,
    seed: int = 0,
    noise: float = 0.02,
) -> tuple[Path, Path]:
    """Write a labelled clip set; return ``(audio folder, CSV path)``.

    ``root/audio/<fold>-<label>-<k>.wav`` clips of ``duration`` seconds, one class each, and
    ``root/labels.csv`` with the header ``filename,label,fold``. Each class's clips are dealt
    over the folds in turn (fold ``1 + k % folds``), so that every fold holds every class
    when ``clips_per_class >= folds``. ``noise``: standard deviation of the background noise
    (the sounds peak at 0.25 to 0.7): raise it for a harder set.
    """
    root = Path(root)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    names = class_names(classes)
    rng = np.random.default_rng(seed)
    rows = []
    for index, label in enumerate(names):
        for k in range(clips_per_class):
            fold = 1 + k % max(1, folds)
            filename = f"{fold}-{label}-{k:03d}.wav"
            clip = render_clip([index], classes, duration=duration, sample_rate=sample_rate, rng=rng, noise=noise)
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
    noise: float = 0.02,
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
