"""A tiny deterministic multi-speaker protocol for tests: synthetic voices, RTTM, UEM.

Each synthetic speaker has its own voice: a pitch (f0) and a vocal tract (three formants,
scaled by its length). A turn is a run of syllables: a glottal-pulse-like train at the
speaker's f0 (with intonation and jitter), tilted, filtered by the speaker's formants
(each syllable a slightly different vowel), under a syllable envelope. Two voices differ on a
log-mel spectrogram, as two speakers' do, so a small model can learn to tell them apart.

Files are conversations of two speakers of one subset taking turns, with pauses and some
overlap. Training, development and test speakers are distinct.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile
from scipy import signal

from audiotask.testing.dummies import write_database_yml

SUBSETS = ("train", "development", "test")


@dataclass(frozen=True)
class Voice:
    """A synthetic speaker: ``f0`` (Hz) and three ``formants`` (Hz) with their bandwidths."""

    name: str
    f0: float
    formants: tuple[float, float, float]
    bandwidths: tuple[float, float, float] = (80.0, 100.0, 140.0)


def make_voices(count: int, seed: int = 0) -> list[Voice]:
    """``count`` distinct voices: pitches spread over 90-260 Hz (in a shuffled order, so that
    neighbours in a subset are not neighbours in pitch), vocal tracts scaled by 0.8-1.25."""
    rng = np.random.default_rng(seed)
    pitches = np.geomspace(90.0, 260.0, count)[rng.permutation(count)]
    scales = np.linspace(0.8, 1.25, count)[rng.permutation(count)]
    neutral = np.array([500.0, 1500.0, 2500.0])  # a uniform tube's formants
    voices = []
    for index, (f0, scale) in enumerate(zip(pitches, scales)):
        formants = neutral / scale * rng.uniform(0.9, 1.1, 3)
        voices.append(Voice(f"spk{index:02d}", float(f0), tuple(float(f) for f in np.sort(formants))))
    return voices


def resonator(samples: np.ndarray, frequency: float, bandwidth: float, sample_rate: int) -> np.ndarray:
    """Two-pole resonance at ``frequency`` Hz of ``bandwidth`` Hz (a formant), unit gain at DC."""
    radius = np.exp(-np.pi * bandwidth / sample_rate)
    a = [1.0, -2.0 * radius * np.cos(2 * np.pi * frequency / sample_rate), radius**2]
    return signal.lfilter([sum(a)], a, samples)


def syllable(voice: Voice, duration: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One syllable of ``voice``: (samples,) float64, silent at both ends."""
    count = max(1, int(round(duration * sample_rate)))
    t = np.arange(count) / sample_rate
    # intonation (a slow glide) and jitter around the speaker's pitch
    f0 = voice.f0 * rng.uniform(0.9, 1.1) * (1.0 + 0.08 * np.sin(2 * np.pi * rng.uniform(1, 3) * t))
    f0 *= 1.0 + 0.01 * rng.standard_normal(count)
    phase = np.cumsum(f0 / sample_rate)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal cycle
    source = signal.lfilter([1.0], [1.0, -0.9], pulses) + 0.02 * rng.standard_normal(count)  # tilt, breath
    vowel = rng.uniform(0.92, 1.08, 3)  # each syllable a slightly different vowel
    sound = source
    for formant, bandwidth, shift in zip(voice.formants, voice.bandwidths, vowel):
        sound = resonator(sound, formant * shift, bandwidth, sample_rate)
    return sound * np.hanning(count)


def turn(voice: Voice, duration: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """``duration`` seconds of ``voice``: syllables of 0.12-0.3 s with short gaps."""
    total = int(round(duration * sample_rate))
    samples = np.zeros(total)
    position = 0
    while position < total:
        length = min(int(rng.uniform(0.12, 0.3) * sample_rate), total - position)
        samples[position : position + length] = syllable(voice, length / sample_rate, sample_rate, rng)
        position += length + int(rng.uniform(0.0, 0.06) * sample_rate)
    return samples / max(1e-9, np.sqrt(np.mean(samples**2)))


def conversation(
    voices: Sequence[Voice], duration: float, rng: np.random.Generator
) -> list[tuple[float, float, Voice]]:
    """Turns ``(start, end, voice)`` of two voices alternating over ``duration`` seconds:
    turns of 0.8-4 s, after a pause of up to 0.4 s or overlapping the previous turn's last
    0.2-0.6 s (one turn in four)."""
    turns, time, speaker = [], float(rng.uniform(0.1, 0.5)), int(rng.integers(2))
    while True:
        length = float(rng.uniform(0.8, 4.0))
        end = min(time + length, duration - 0.1)
        if end - time < 0.3:
            return turns
        turns.append((round(time, 3), round(end, 3), voices[speaker]))
        if end >= duration - 0.1:  # the conversation ends with this turn
            return turns
        speaker = 1 - speaker
        time = end - rng.uniform(0.2, 0.6) if rng.random() < 0.25 else end + rng.uniform(0.05, 0.4)


def write_rttm(path: Path, rows: list[tuple[str, float, float, str]]) -> None:
    """RTTM ``SPEAKER`` lines of ``(uri, start, end, speaker)`` rows."""
    path.write_text("".join(f"SPEAKER {uri} 1 {start:.3f} {end - start:.3f} <NA> <NA> {speaker} <NA> <NA>\n"
                            for uri, start, end, speaker in rows))


def make_speaker_protocol(
    root: str | Path,
    *,
    name: str = "Speakers",
    speakers: Sequence[int] = (4, 2, 2),
    files: Sequence[int] = (4, 2, 2),
    duration: float = 12.0,
    sample_rate: int = 16000,
    seed: int = 0,
) -> Path:
    """Write a tiny multi-speaker protocol and return its ``database.yml``.

    Protocol ``{name}.SpeakerDiarization.Speakers``: train, development and test subsets of
    ``files`` conversations of ``duration`` seconds each, between two of the subset's own
    ``speakers`` (distinct across subsets; the files of a subset cycle through its pairs).
    RTTM annotations, UEM covering each whole file.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    voices = make_voices(int(sum(speakers)), seed=seed)
    first = np.concatenate([[0], np.cumsum(speakers)]).astype(int)
    entries: dict = {"scope": "database"}  # a speaker keeps their name from file to file
    for index, (subset, count) in enumerate(zip(SUBSETS, files)):
        own = voices[first[index] : first[index + 1]]
        if len(own) < 2:
            raise ValueError(f"make_speaker_protocol: a {subset} conversation needs 2 speakers, got {len(own)}.")
        pairs = [(a, b) for a in range(len(own)) for b in range(a + 1, len(own))]
        rows, uris = [], []
        for number in range(count):
            uri = f"{subset}{number:02d}"
            a, b = pairs[number % len(pairs)]
            samples = np.zeros(int(round(duration * sample_rate)))
            for start, end, voice in conversation([own[a], own[b]], duration, rng):
                begin = int(round(start * sample_rate))
                speech = 0.1 * turn(voice, end - start, sample_rate, rng)
                samples[begin : begin + len(speech)] += speech[: len(samples) - begin]
                rows.append((uri, start, end, voice.name))
            samples += 0.003 * rng.standard_normal(len(samples))  # a quiet room, never digital silence
            soundfile.write(root / f"{uri}.wav", samples.astype(np.float32), sample_rate, subtype="PCM_16")
            uris.append(uri)
        write_rttm(root / f"{subset}.rttm", rows)
        (root / f"{subset}.uem").write_text("".join(f"{uri} 1 0.000 {duration:.3f}\n" for uri in uris))
        (root / f"{subset}.lst").write_text("".join(f"{uri}\n" for uri in uris))
        entries[subset] = {"uri": f"{subset}.lst", "annotation": f"{subset}.rttm", "annotated": f"{subset}.uem"}
    write_database_yml(root / "database.yml", name, "Speakers", entries, audio="{uri}.wav")
    return root / "database.yml"
