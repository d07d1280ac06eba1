"""Synthetic sounds of the ten DCASE classes, each distinct and recognisable on a log-mel
spectrogram, with random pitch, tempo and level; and coloured background noise.

Every generator is a pure function of (number of samples, sample rate, rng).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import fft as sp_fft
from scipy import signal

from audiotask.core.frames import seconds_to_samples

CLASSES: tuple[str, ...] = (
    "Speech",
    "Dog",
    "Cat",
    "Alarm_bell_ringing",
    "Dishes",
    "Frying",
    "Blender",
    "Running_water",
    "Vacuum_cleaner",
    "Electric_shaver_toothbrush",
)

#: (shortest, longest) event duration per class, in seconds; DESED's split into short
#: foreground classes and long stationary ones.
DURATION_RANGES: dict[str, tuple[float, float]] = {
    **{label: (0.3, 2.0) for label in CLASSES[:5]},
    **{label: (2.0, 8.0) for label in CLASSES[5:]},
}

_FADE = 0.005  # fade-in/out of every event, in seconds: no click, and labels stay within 1 ms


# ---------------------------------------------------------------------------------------------
# building blocks: (samples,) float64 signals, frequencies in Hz, times in seconds
# ---------------------------------------------------------------------------------------------


def _smooth(rng: np.random.Generator, n: int, sr: int, rate: float) -> np.ndarray:
    """Random curve in [-1, 1] of ``n`` samples through ``rate`` random knots per second."""
    knots = rng.uniform(-1.0, 1.0, int(math.ceil(n / sr * rate)) + 2)
    return np.interp(np.arange(n) * (rate / sr), np.arange(len(knots)), knots)


def _cycles(frequency: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Running phase, in cycles, of an oscillator following ``frequency`` (Hz) over ``n`` samples."""
    return np.cumsum(np.broadcast_to(np.asarray(frequency, dtype=np.float64) / sr, (n,)))


def _polyblep(t: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """Band-limiting correction at the discontinuities of a naive oscillator (PolyBLEP)."""
    before, after = t / dt, (t - 1.0) / dt
    return np.where(t < dt, 2 * before - before**2 - 1, 0.0) + np.where(t > 1 - dt, after**2 + 2 * after + 1, 0.0)


def _sawtooth(cycles: np.ndarray, frequency: np.ndarray | float, sr: int) -> np.ndarray:
    """Alias-reduced sawtooth (all harmonics, 1/k) from a running phase in cycles."""
    t, dt = cycles % 1.0, np.broadcast_to(np.asarray(frequency) / sr, cycles.shape)
    return 2 * t - 1 - _polyblep(t, dt)


def _square(cycles: np.ndarray, frequency: np.ndarray | float, sr: int) -> np.ndarray:
    """Alias-reduced square wave (odd harmonics, 1/k) from a running phase in cycles."""
    t, dt = cycles % 1.0, np.broadcast_to(np.asarray(frequency) / sr, cycles.shape)
    return np.where(t < 0.5, 1.0, -1.0) + _polyblep(t, dt) - _polyblep((t + 0.5) % 1.0, dt)


def _band_gain(freqs: np.ndarray, low: float | None, high: float | None, order: int = 2) -> np.ndarray:
    """Butterworth-like magnitude of a band-pass (``None``: no edge) at ``freqs`` Hz."""
    gain = np.ones_like(freqs)
    if low is not None:
        gain /= np.sqrt(1 + (low / np.maximum(freqs, 1e-3)) ** (2 * order))
    if high is not None:
        gain /= np.sqrt(1 + (freqs / high) ** (2 * order))
    return gain


def _resonance_gain(freqs: np.ndarray, centres, bandwidths, gains) -> np.ndarray:
    """Sum of Lorentzian resonances (formants) at ``freqs`` Hz; centres broadcast against freqs."""
    return sum(g / (1 + ((freqs - c) / (0.5 * b)) ** 2) for c, b, g in zip(centres, bandwidths, gains))


def _filtered(x: np.ndarray, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Zero-phase FFT filter: multiply the spectrum of ``x`` by ``gain(freqs_hz)``.

    Zero-padded to a fast FFT length (event lengths are often near-prime numbers of samples,
    which an FFT handles 10-100 times slower); the padding also tames circular wrap-around.
    """
    size = sp_fft.next_fast_len(len(x), real=True)
    spectrum = sp_fft.rfft(x, size) * gain(sp_fft.rfftfreq(size, 1 / sr))
    return sp_fft.irfft(spectrum, size)[: len(x)]


def _shaped_noise(rng: np.random.Generator, n: int, sr: int, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Gaussian noise of amplitude spectrum ``gain(freqs_hz)``, unit RMS, ``(n,)``.

    Drawn directly in the frequency domain (white Gaussian spectrum times ``gain``): the same
    statistics as filtering white noise, for one FFT instead of two.
    """
    size = sp_fft.next_fast_len(n, real=True)
    bins = size // 2 + 1
    white = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    x = sp_fft.irfft(white * gain(sp_fft.rfftfreq(size, 1 / sr)), size)[:n]
    return x / (np.sqrt(np.mean(x**2)) + 1e-12)


def _noise(rng: np.random.Generator, n: int, sr: int, low: float | None = None, high: float | None = None):
    """Gaussian noise band-passed to [low, high] Hz (``None``: no edge), unit RMS."""
    return _shaped_noise(rng, n, sr, lambda f: _band_gain(f, low, high))


def _formant_filter(x: np.ndarray, sr: int, tracks: np.ndarray, bandwidths, gains) -> np.ndarray:
    """Filter ``x`` through resonances whose centres (formants, samples) move in time (STFT)."""
    nperseg = 1 << int(round(math.log2(0.032 * sr)))  # ~32 ms: formant moves are slower
    freqs, times, spectrum = signal.stft(x, fs=sr, nperseg=nperseg)
    centres = tracks[:, np.clip(np.round(times * sr).astype(int), 0, len(x) - 1)]  # (formants, frames)
    gain = _resonance_gain(freqs[:, None], centres[:, None, :], bandwidths, gains)
    return signal.istft(spectrum * gain, fs=sr, nperseg=nperseg)[1][: len(x)]


def _scatter(n: int, positions: np.ndarray, amplitudes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Copies of ``kernel`` starting at sample ``positions``, scaled by ``amplitudes``, cut at ``n``."""
    impulses = np.zeros(n)
    np.add.at(impulses, positions, amplitudes)
    return signal.oaconvolve(impulses, kernel)[:n]


def _envelope(n: int, sr: int, attack: float, release: float) -> np.ndarray:
    """Linear attack and release (seconds) that stay above zero at both ends."""
    t = (np.arange(n) + 0.5) / sr
    return np.minimum(1.0, np.minimum(t / attack, (n / sr - t) / release))


def _cap(frequency: float, sr: int) -> float:
    """``frequency`` (Hz) kept below 0.45 * sample rate, so designs work at 8 kHz too."""
    return min(frequency, 0.45 * sr)


# ---------------------------------------------------------------------------------------------
# one design per class: (samples, sample_rate, rng) -> (samples,) float64, any scale
# ---------------------------------------------------------------------------------------------

#: (F1, F2, F3) in Hz of a, i, u, e, o and schwa (Peterson & Barney, adult male)
_VOWELS = np.array(
    [[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410], [500, 1500, 2500]],
    dtype=np.float64,
)


def _speech(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Voiced source with intonation, through vowel formants that move syllable by syllable."""
    t = np.arange(n) / sr
    f0 = rng.uniform(100, 250) * (1 + 0.12 * _smooth(rng, n, sr, 3.0)) * (1 - 0.1 * t / (n / sr))
    source = _sawtooth(_cycles(f0, n, sr), f0, sr) + 0.05 * rng.standard_normal(n)
    rate = rng.uniform(4, 6)  # syllables per second
    lengths = rng.uniform(0.6, 1.4, int(n / sr * rate / 0.6) + 2) / rate  # enough to cover n
    bounds = np.concatenate([[0.0], np.cumsum(lengths)])
    index = np.searchsorted(bounds, t, side="right") - 1
    u = (t - bounds[index]) / lengths[index]  # position within the syllable, in [0, 1)
    # a bigger speaker (lower voice) has lower formants
    vowels = _VOWELS[rng.integers(len(_VOWELS), size=len(lengths))] * rng.uniform(0.9, 1.2)
    centres = bounds[:-1] + 0.5 * lengths
    tracks = np.minimum(np.stack([np.interp(t, centres, vowels[:, k]) for k in range(3)]), 0.45 * sr)
    voiced = _formant_filter(source, sr, tracks, (90, 110, 170), (1.0, 0.6, 0.3))
    voiced /= np.sqrt(np.mean(voiced**2)) + 1e-12
    # some syllables open with a fricative ("s", "sh", "f"): high-passed noise, voicing ducked
    fricative = (rng.random(len(lengths)) < 0.35)[index] * np.clip(np.minimum(u, 0.25 - u) / 0.04, 0.0, 1.0)
    hiss = _noise(rng, n, sr, min(3500.0, 0.35 * sr), None)
    envelope = 0.1 + 0.9 * np.sin(np.pi * u) ** 0.7  # floor: edges of the event never silent
    return voiced * envelope * (1 - 0.8 * fricative) + 0.5 * hiss * fricative


def _dog(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Barks: 1-5 noisy bursts of falling pitch through dog formants, first and last at the edges."""
    count = int(np.clip(n / sr / rng.uniform(0.3, 0.5), 1, 5))
    parts = np.empty(2 * count - 1)
    parts[0::2], parts[1::2] = rng.uniform(0.1, 0.3, count), rng.uniform(0.05, 0.3, count - 1)
    edges = np.round(np.concatenate([[0.0], np.cumsum(parts)]) / parts.sum() * n).astype(int)
    segment = np.searchsorted(edges, np.arange(n), side="right") - 1  # even: bark, odd: gap
    start, length = edges[segment], np.maximum(edges[np.minimum(segment + 1, len(edges) - 1)] - edges[segment], 1)
    u = (np.arange(n) - start) / length
    pitch = rng.uniform(0.9, 1.1, len(parts))[segment]
    f0 = rng.uniform(250, 500) * pitch * (1.15 - 0.4 * u)
    source = 0.6 * _sawtooth(_cycles(f0, n, sr), f0, sr) + 0.4 * rng.standard_normal(n)
    envelope = np.minimum(1.0, u * length / (0.01 * sr)) * np.exp(-3 * u) * (segment % 2 == 0)
    formants = [_cap(rng.uniform(*band), sr) for band in ((450, 800), (1000, 1800), (2200, 3000))]
    return _filtered(source * envelope, sr, lambda f: _resonance_gain(f, formants, (150, 200, 300), (1.0, 0.7, 0.3)))


def _cat(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Meow: harmonic glide rising then falling (400-900 Hz) with vibrato, formants opening and closing."""
    t, u = np.arange(n) / sr, (np.arange(n) + 0.5) / n
    peak = rng.uniform(0.3, 0.6)
    contour = np.where(u < peak, np.sin(0.5 * np.pi * u / peak), np.cos(0.5 * np.pi * (u - peak) / (1 - peak)))
    low, high = rng.uniform(400, 550), rng.uniform(650, 900)
    vibrato = 1 + rng.uniform(0.01, 0.03) * np.sin(2 * np.pi * rng.uniform(5, 8) * t)
    f0 = (low + (high - low) * contour) * vibrato
    k = np.arange(1, 9)[:, None]
    harmonics = ((k * f0 < 0.45 * sr) / k * np.sin(2 * np.pi * k * _cycles(f0, n, sr))).sum(axis=0)
    tracks = np.minimum(np.stack([700 + 600 * contour, 1400 + 1000 * contour]), 0.45 * sr)
    voiced = _formant_filter(harmonics, sr, tracks, (200, 300), (1.0, 0.6))
    return voiced * _envelope(n, sr, 0.06, 0.15)


def _alarm(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Alarm: two alternating tones, an electric bell struck 12-25 times a second, or beeps."""
    t = np.arange(n) / sr
    variant = rng.integers(3)
    if variant == 0:
        f1 = rng.uniform(600, 1400)
        f = np.where((t // rng.uniform(0.1, 0.4)) % 2 == 0, f1, f1 * rng.uniform(1.2, 1.5))
        cycles = _cycles(f, n, sr)
        return np.sin(2 * np.pi * cycles) + 0.3 * (3 * f < 0.45 * sr) * np.sin(6 * np.pi * cycles)
    if variant == 1:
        # inharmonic partials of a free bar / bell dome: what makes it a bell, not a tone
        partials = rng.uniform(700, 1500) * np.array([1.0, 2.76, 5.40, 8.93])[:, None]
        tone = ((partials < 0.45 * sr) / np.arange(1, 5)[:, None] * np.sin(2 * np.pi * partials * t)).sum(axis=0)
        rate = rng.uniform(12, 25)
        since_strike = (t * rate % 1.0) / rate
        return tone * (0.4 + 0.6 * np.exp(-since_strike / rng.uniform(0.02, 0.06)))
    # beeps: ``count`` pulses of ``on`` seconds separated by ``off``: starts and ends on a beep
    ratio, period = rng.uniform(0.5, 1.5), rng.uniform(0.15, 0.5)
    count = max(1, int(round(n / sr / period)))
    on = n / sr / (count + (count - 1) * ratio)
    within = (t + 0.5 / sr) % (on * (1 + ratio))
    gate = np.clip(np.minimum(within, on - within) / 0.002, 0.0, 1.0)
    return np.sin(2 * np.pi * _cap(rng.uniform(1500, 3500), sr) * t) * gate


def _clink(sr: int, rng: np.random.Generator) -> np.ndarray:
    """Impulse response of one piece of crockery: a click and 4 damped high inharmonic partials."""
    freqs = rng.uniform(min(2000.0, 0.25 * sr), _cap(6000.0, sr), 4)[:, None]
    decays = rng.uniform(0.02, 0.15, 4)[:, None]
    t = np.arange(seconds_to_samples(6 * decays.max(), sr)) / sr  # long enough to end inaudibly
    ring = (rng.uniform(0.3, 1.0, 4)[:, None] * np.exp(-t / decays) * np.sin(2 * np.pi * freqs * t)).sum(axis=0)
    return ring + 0.5 * np.diff(rng.standard_normal(len(t)) * np.exp(-t / 0.001), prepend=0.0)


def _dishes(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Random impacts (2-6 per second) on three objects, one impact at each edge of the event."""
    d = n / sr
    count = max(2, int(rng.poisson(rng.uniform(2, 6) * d)))
    times = np.concatenate([[0.0], rng.uniform(0, d, count - 2), [max(0.0, d - rng.uniform(0.02, 0.1))]])
    positions = np.minimum(np.round(times * sr).astype(int), n - 1)
    objects = rng.integers(3, size=count)
    amplitudes = rng.uniform(0.3, 1.0, count)
    return sum(_scatter(n, positions[objects == k], amplitudes[objects == k], _clink(sr, rng)) for k in range(3))


def _frying(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Sizzle: dense random crackles (40-150 per second, heavy-tailed) over high-passed hiss."""
    hiss = _noise(rng, n, sr, min(2500.0, 0.3 * sr), None)
    count = int(rng.poisson(rng.uniform(40, 150) * n / sr))
    amplitudes = np.minimum(rng.pareto(3.0, count) + 1, 6.0) * rng.choice([-1.0, 1.0], count)  # capped: crest
    t = np.arange(seconds_to_samples(0.004, sr)) / sr
    click = np.diff(rng.standard_normal(len(t)) * np.exp(-t / 0.0008), prepend=0.0)
    crackle = _scatter(n, rng.integers(0, n, count), amplitudes, click)
    crackle /= np.sqrt(np.mean(crackle**2)) + 1e-12
    return (0.3 * hiss + rng.uniform(0.6, 1.2) * crackle) * (1 + 0.3 * _smooth(rng, n, sr, 0.5))


def _blender(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Motor buzz (80-200 Hz, all harmonics) slowed by load, plus blade noise at the rotation rate."""
    load = 1 - 0.06 * np.abs(_smooth(rng, n, sr, rng.uniform(1, 3)))  # chunks hitting the blades
    f0 = rng.uniform(80, 200) * load
    cycles = _cycles(f0, n, sr)
    cutoff = rng.uniform(1500, 3000)
    buzz = _filtered(_sawtooth(cycles, f0, sr), sr, lambda f: _band_gain(f, 60.0, cutoff, order=1))
    buzz /= np.sqrt(np.mean(buzz**2)) + 1e-12
    noise = _noise(rng, n, sr, rng.uniform(300, 600), _cap(rng.uniform(2500, 5000), sr))
    rough = 1 + 0.5 * np.sin(2 * np.pi * cycles)
    return (buzz + rng.uniform(0.7, 1.2) * noise * rough) * (1 + 0.25 * _smooth(rng, n, sr, 4.0))


def _running_water(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited flow noise (500-4000 Hz) with slow fluctuation, and bubbles: rising chirps."""
    flow = _noise(rng, n, sr, rng.uniform(400, 700), _cap(rng.uniform(3000, 5000), sr))
    flow *= 1 + 0.4 * _smooth(rng, n, sr, rng.uniform(2, 6))
    count = int(rng.poisson(rng.uniform(15, 50) * n / sr))
    bubbles = np.zeros(n)
    kinds = rng.integers(4, size=count)
    positions = rng.integers(0, n, count)
    for kind in range(4):  # four bubble sizes
        decay = rng.uniform(0.005, 0.02)
        t = np.arange(seconds_to_samples(5 * decay, sr)) / sr
        f = _cap(rng.uniform(500, 2500), sr) * (1 + rng.uniform(0.5, 2.0) * t / (5 * decay))
        chirp = np.exp(-t / decay) * np.sin(2 * np.pi * np.cumsum(np.minimum(f, 0.45 * sr)) / sr)
        bubbles += _scatter(n, positions[kinds == kind], rng.uniform(0.2, 1.0, (kinds == kind).sum()), chirp)
    bubbles /= np.sqrt(np.mean(bubbles**2)) + 1e-12
    return flow + rng.uniform(0.5, 1.0) * bubbles


def _vacuum_cleaner(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Low-passed broadband motor roar with a strong, steady whine at 1-3 kHz."""
    roar = _noise(rng, n, sr, 50.0, rng.uniform(800, 2000)) + rng.uniform(0.1, 0.3) * _noise(rng, n, sr)
    whine = _cap(rng.uniform(1000, 3000), sr) * (1 + 0.003 * _smooth(rng, n, sr, 1.0))
    cycles = _cycles(whine, n, sr)
    tone = np.sin(2 * np.pi * cycles) + 0.3 * (2 * whine < 0.45 * sr) * np.sin(4 * np.pi * cycles)
    return roar + rng.uniform(0.5, 1.0) * np.sqrt(2) * tone


def _electric_shaver(n: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Square-wave buzz (60-150 Hz, odd harmonics) ringing the housing, modulated by strokes."""
    f0 = rng.uniform(60, 150) * (1 + 0.01 * _smooth(rng, n, sr, 2.0))
    buzz = _square(_cycles(f0, n, sr), f0, sr)
    centre, width = _cap(rng.uniform(1500, 4000), sr), rng.uniform(300, 800)
    housing = _filtered(buzz, sr, lambda f: 0.3 + _resonance_gain(f, (centre,), (width,), (3.0,)))
    t = np.arange(n) / sr
    strokes = 1 - rng.uniform(0.2, 0.5) * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 6) * t + rng.uniform(0, 6.3)))
    return housing * strokes + 0.05 * rng.standard_normal(n)


_DESIGNS: dict[str, Callable[[int, int, np.random.Generator], np.ndarray]] = dict(
    zip(
        CLASSES,
        (_speech, _dog, _cat, _alarm, _dishes, _frying, _blender, _running_water, _vacuum_cleaner, _electric_shaver),
    )
)


def synthesize_event(label: str, duration: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic sound event of class ``label``, peak-normalised, with 5 ms fades.

    Parameters
    ----------
    label : str
        One of ``CLASSES``.
    duration : float
        Length in seconds; the event has ``round(duration * sample_rate)`` samples and is
        audible from its first to its last sample (no leading or trailing silence).
    sample_rate : int
        In Hz. Every frequency of a design is kept below 0.45 * sample_rate.
    rng : np.random.Generator
        Source of all randomness (pitch, tempo, timbre).

    Returns
    -------
    np.ndarray
        ``(samples,)`` float32, peak 1.
    """
    if label not in _DESIGNS:
        raise ValueError(f"Unknown sound event class {label!r}; known classes: {', '.join(CLASSES)}")
    n = seconds_to_samples(duration, sample_rate)
    if n < 1:
        raise ValueError(f"An event must last at least one sample, got {duration} s at {sample_rate} Hz")
    x = np.array(_DESIGNS[label](n, sample_rate, rng), dtype=np.float64)
    fade = min(seconds_to_samples(_FADE, sample_rate), n // 2)
    # half-sample offset: the first and last samples are faded but not exactly zero
    ramp = np.sin(0.5 * np.pi * (np.arange(fade) + 0.5) / fade) ** 2
    x[:fade] *= ramp
    x[n - fade :] *= ramp[::-1]
    return (x / (np.max(np.abs(x)) + 1e-12)).astype(np.float32)



def background(num_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS background: noise of random colour (pink to brown), slow swell, maybe mains hum."""
    alpha = rng.uniform(0.5, 2.0)  # power spectrum ~ 1 / f ** alpha
    colour = _shaped_noise(
        rng, num_samples, sample_rate, lambda f: np.maximum(f, 20.0) ** (-alpha / 2) * _band_gain(f, 20.0, None)
    )
    noise = colour * (1 + 0.2 * _smooth(rng, num_samples, sample_rate, 0.3))
    if rng.random() < 0.3:
        t = np.arange(num_samples) / sample_rate
        mains = rng.choice([50.0, 60.0])
        hum = sum(np.sin(2 * np.pi * k * mains * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 5))
        noise = noise + 10 ** (-rng.uniform(10, 25) / 20) * hum
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)
