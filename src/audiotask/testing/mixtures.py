"""Tiny deterministic data for SNR estimation: "speech" with known active regions, and noises.

No recording needed: the speech-like signal is a harmonic tone (a voice's pitch and its
overtones) shaped by syllable-like envelopes, exactly zero outside its annotated segments,
so that an annotation says where every speech sample is. The noises are coloured (white,
pink, brown): their spectra differ, as real backgrounds' do.

- :func:`speech_like`: one file's signal and its segments.
- :func:`make_speech_protocol`: a pyannote.database protocol (RTTM annotation, UEM) of them.
- :func:`coloured_noise` and :func:`make_noise_folder`: noise files for mixing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from audiotask.core.frames import seconds_to_samples
from audiotask.testing.dummies import write_database_yml

#: spectral slope of each noise colour: power falls as ``frequency ** -slope``
COLOURS = {"white": 0.0, "pink": 1.0, "brown": 2.0}
#: RMS of the generated noises (quiet next to full scale, far from nothing)
NOISE_RMS = 0.1


def _syllables(rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """(num_samples,) amplitude envelope: raised-cosine syllables of 0.08-0.3 s, short gaps between."""
    envelope = np.zeros(num_samples)
    position = 0
    while position < num_samples:
        length = seconds_to_samples(rng.uniform(0.08, 0.3), sample_rate)
        stop = min(num_samples, position + length)
        # a Hann bump per syllable: the energy rises and falls as a vowel's does
        envelope[position:stop] = rng.uniform(0.4, 1.0) * np.hanning(length)[: stop - position]
        position = stop + seconds_to_samples(rng.uniform(0.0, 0.06), sample_rate)
    return envelope


def _voice(rng: np.random.Generator, num_samples: int, sample_rate: int) -> np.ndarray:
    """(num_samples,) harmonic tone: a gliding pitch of 90-250 Hz and its overtones up to 4 kHz."""
    t = np.arange(num_samples) / sample_rate
    pitch = rng.uniform(90.0, 250.0) * (1.0 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * t))
    phase = 2 * np.pi * np.cumsum(pitch) / sample_rate
    harmonics = range(1, int(4000.0 // pitch.max()) + 1)
    return sum(np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k for k in harmonics)


def speech_like(
    duration: float, *, sample_rate: int = 16000, seed: int = 0, segments_per_file: int = 3, amplitude: float = 0.3
) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """A file of speech-like segments and silence.

    Parameters
    ----------
    duration : float
        Seconds of the file.
    sample_rate : int
    seed : int
        Everything drawn comes from it.
    segments_per_file : int
        Speech segments, 0.5 to 2.5 s each (shorter when the file is short), apart.
    amplitude : float
        Peak of the harmonic tone before its envelope.

    Returns
    -------
    samples : (samples,) float32
        Exactly 0 outside the segments.
    segments : list of (onset, offset)
        In seconds, rounded to the millisecond, sorted, disjoint; the samples of
        ``[round(onset * sample_rate), round(offset * sample_rate))`` hold the speech.
    """
    slot = duration / max(1, segments_per_file)  # one segment per slot: they never overlap
    if 0.8 * slot < 0.5:
        raise ValueError(f"speech_like: {segments_per_file} segments of at least 0.5 s do not fit in {duration} s.")
    rng = np.random.default_rng(seed)
    samples = np.zeros(seconds_to_samples(duration, sample_rate), dtype=np.float64)
    segments = []
    for index in range(segments_per_file):
        length = round(float(rng.uniform(0.5, min(2.5, 0.8 * slot))), 3)
        # floored to the millisecond: the segment stays inside its slot, and the file
        onset = float(np.floor(1000 * (index * slot + float(rng.uniform(0.0, slot - length))))) / 1000
        start, stop = seconds_to_samples(onset, sample_rate), seconds_to_samples(onset + length, sample_rate)
        count = stop - start
        samples[start:stop] = amplitude * _voice(rng, count, sample_rate) * _syllables(rng, count, sample_rate)
        segments.append((onset, round(onset + length, 3)))
    return samples.astype(np.float32), segments


def make_speech_protocol(
    root: str | Path,
    *,
    name: str = "Speechy",
    files_per_subset: Sequence[int] = (3, 1, 1),
    duration: float = 10.0,
    sample_rate: int = 16000,
    segments_per_file: int = 3,
    seed: int = 0,
) -> Path:
    """Write a speech-like protocol and return its ``database.yml``.

    Protocol ``{name}.SpeakerDiarization.Speech``: train / development / test subsets (a
    count of 0 leaves a subset out), RTTM annotations (one speaker label per file) and UEM
    annotated regions covering each whole file.
    """
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    subsets: dict = {"scope": "file"}  # speaker labels of one file only
    for index, (subset, count) in enumerate(zip(("train", "development", "test"), files_per_subset)):
        if not count:
            continue
        rttm, uem, uris = [], [], []
        for number in range(count):
            uri = f"{subset}{number:02d}"
            samples, segments = speech_like(duration, sample_rate=sample_rate, seed=seed * 1000 + index * 100 + number,
                                            segments_per_file=segments_per_file)
            soundfile.write(root / "audio" / f"{uri}.wav", samples, sample_rate, subtype="FLOAT")
            rttm.extend(f"SPEAKER {uri} 1 {onset:.3f} {offset - onset:.3f} <NA> <NA> spk{number} <NA> <NA>\n"
                        for onset, offset in segments)
            uem.append(f"{uri} NA 0.000 {duration:.3f}\n")
            uris.append(f"{uri}\n")
        for extension, lines in (("rttm", rttm), ("uem", uem), ("lst", uris)):
            (root / f"{subset}.{extension}").write_text("".join(lines))
        subsets[subset] = {"uri": f"{subset}.lst", "annotation": f"{subset}.rttm", "annotated": f"{subset}.uem"}
    write_database_yml(root / "database.yml", name, "Speech", subsets, audio="audio/{uri}.wav")
    return root / "database.yml"


def coloured_noise(colour: str, duration: float, *, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """(samples,) float32 noise of ``colour`` (a key of :data:`COLOURS`) at RMS :data:`NOISE_RMS`.

    White noise shaped in the frequency domain: each bin's amplitude scaled by
    ``frequency ** (-slope / 2)`` (the DC bin is zeroed).
    """
    if colour not in COLOURS:
        raise ValueError(f"coloured_noise: colour must be one of {sorted(COLOURS)}, got {colour!r}.")
    num_samples = seconds_to_samples(duration, sample_rate)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(num_samples))
    frequencies = np.fft.rfftfreq(num_samples, 1.0 / sample_rate)
    shape = np.zeros_like(frequencies)
    shape[1:] = frequencies[1:] ** (-COLOURS[colour] / 2)
    samples = np.fft.irfft(spectrum * shape, n=num_samples)
    return (NOISE_RMS * samples / np.sqrt(np.mean(samples**2))).astype(np.float32)


def make_noise_folder(
    folder: str | Path,
    *,
    colours: Sequence[str] = tuple(COLOURS),
    files_per_colour: int = 1,
    duration: float = 3.0,
    sample_rate: int = 16000,
    seed: int = 0,
) -> Path:
    """Write ``{colour}{k}.wav`` noise files into ``folder`` and return it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, colour in enumerate(colours):
        for k in range(files_per_colour):
            samples = coloured_noise(colour, duration, sample_rate=sample_rate, seed=seed * 1000 + index * 100 + k)
            soundfile.write(folder / f"{colour}{k}.wav", samples, sample_rate, subtype="FLOAT")
    return folder
