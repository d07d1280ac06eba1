"""Data augmentation for sound event detection training, as in the DCASE task 4 baseline.

Stateless, vectorised torch functions: every random one takes a keyword ``generator`` and
draws from it only, so that a seeded generator replays the same augmentation.
:class:`BackgroundMixer` is the one class: it holds the decoded background recordings.
"""

from .mixup import draw_mixup, mix_rows, mixup
from .spectral import filter_augment, filter_gains, frequency_mask, roll_frames, time_mask, time_shift
from .waveform import SILENT_EXAMPLE_NOISE_RMS, BackgroundMixer, mix_at_snr, random_gain

__all__ = [
    "SILENT_EXAMPLE_NOISE_RMS",
    "BackgroundMixer",
    "draw_mixup",
    "filter_augment",
    "filter_gains",
    "frequency_mask",
    "mix_at_snr",
    "mix_rows",
    "mixup",
    "random_gain",
    "roll_frames",
    "time_mask",
    "time_shift",
]
