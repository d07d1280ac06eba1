"""Kaldi's log mel filterbank (``compute-fbank-feats``), batched, in torch.

The front end of the networks trained on Kaldi-style features, WeSpeaker's ResNets and
BEATs among them: their published code calls ``torchaudio.compliance.kaldi.fbank``, a
transcription of Kaldi's C++ that we do not depend on (torchaudio is heavy and in
maintenance). This module computes the same thing from Kaldi's definitions, for a batch
of waveforms at once, with Kaldi's defaults unless told otherwise:

- frames of 25 ms every 10 ms, only those that fit whole (``snip_edges``: no padding);
- each frame less its mean (``remove_dc_offset``), pre-emphasised by 0.97 (its first
  sample by itself), multiplied by the Povey window (a symmetric Hann window to the power
  0.85) or a Hamming window, zero-padded to the next power of two;
- the power spectrum through triangular filters that are triangles on Kaldi's mel scale
  (``1127 ln(1 + f / 700)``, from ``low_freq`` 20 Hz to Nyquist), the Nyquist bin left out;
- the natural logarithm of the energies, floored at float32's epsilon.

No dithering: the published models are run without it at inference.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

#: float32's machine epsilon: Kaldi's floor on filterbank energies before the logarithm
ENERGY_FLOOR = float(np.finfo(np.float32).eps)


def kaldi_mel(frequencies: np.ndarray) -> np.ndarray:
    """Kaldi's mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(frequencies, dtype=np.float64) / 700.0)


def kaldi_mel_banks(num_bins: int, padded_window: int, sample_rate: float, low_freq: float = 20.0,
                    high_freq: float = 0.0) -> np.ndarray:
    """(num_bins, padded_window // 2 + 1) filters: triangles in the mel domain between
    ``low_freq`` and ``high_freq`` (<= 0: that far below Nyquist), over the FFT bins below
    Nyquist (Kaldi's MelBanks; the Nyquist bin's weight is 0)."""
    nyquist = 0.5 * sample_rate
    if high_freq <= 0.0:
        high_freq += nyquist
    if not 0.0 <= low_freq < high_freq <= nyquist:
        raise ValueError(f"mel banks: need 0 <= low_freq < high_freq <= {nyquist} Hz, got {low_freq}, {high_freq}.")
    mel_low, mel_high = kaldi_mel(low_freq), kaldi_mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    left = mel_low + delta * np.arange(num_bins)[:, None]
    centre, right = left + delta, left + 2.0 * delta
    mel = kaldi_mel(sample_rate / padded_window * np.arange(padded_window // 2))[None, :]
    rising, falling = (mel - left) / (centre - left), (right - mel) / (right - centre)
    banks = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(banks, ((0, 0), (0, 1)))


def povey_window(length: int) -> torch.Tensor:
    """Kaldi's default window: a symmetric Hann window to the power 0.85."""
    return torch.hann_window(length, periodic=False, dtype=torch.float64).pow(0.85).float()


def hamming_window(length: int) -> torch.Tensor:
    """Kaldi's ``--window-type=hamming``: symmetric, ``0.54 - 0.46 cos(2 pi n / (N - 1))``."""
    return torch.hamming_window(length, periodic=False, alpha=0.54, beta=0.46, dtype=torch.float64).float()


#: Kaldi's window types that the published models use
WINDOWS = {"povey": povey_window, "hamming": hamming_window}


def frame_count(num_samples: int, frame_length: int, frame_shift: int) -> int:
    """Frames Kaldi makes of ``num_samples`` with ``snip_edges``: those that fit whole."""
    return 0 if num_samples < frame_length else 1 + (num_samples - frame_length) // frame_shift


class KaldiFbank(nn.Module):
    """(batch, samples) -> (batch, frames, num_mel_bins) Kaldi log mel filterbank.

    Parameters
    ----------
    num_mel_bins : int
    sample_rate : int
    frame_length_ms, frame_shift_ms : float
    low_freq, high_freq : float
        Band of the filters in Hz (``high_freq <= 0``: that far below Nyquist).
    preemphasis : float
    window : "povey" or "hamming"
        Kaldi's ``--window-type`` (BEATs: povey, the default; WeSpeaker trains with hamming).
    """

    def __init__(self, num_mel_bins: int = 80, sample_rate: int = 16000, frame_length_ms: float = 25.0,
                 frame_shift_ms: float = 10.0, low_freq: float = 20.0, high_freq: float = 0.0,
                 preemphasis: float = 0.97, window: str = "povey"):
        super().__init__()
        self.frame_length = int(sample_rate * frame_length_ms * 0.001)
        self.frame_shift = int(sample_rate * frame_shift_ms * 0.001)
        self.padded_window = 1 << math.ceil(math.log2(self.frame_length))
        self.preemphasis = float(preemphasis)
        banks = kaldi_mel_banks(num_mel_bins, self.padded_window, sample_rate, low_freq, high_freq)
        self.register_buffer("banks", torch.from_numpy(banks.T.astype(np.float32)), persistent=False)
        if window not in WINDOWS:
            raise ValueError(f"KaldiFbank: window must be one of {sorted(WINDOWS)}, got {window!r}.")
        self.register_buffer("window", WINDOWS[window](self.frame_length), persistent=False)

    def num_frames(self, num_samples: int) -> int:
        return frame_count(num_samples, self.frame_length, self.frame_shift)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        if waveforms.shape[-1] < self.frame_length:
            return waveforms.new_zeros(*waveforms.shape[:-1], 0, self.banks.shape[1])
        frames = waveforms.unfold(-1, self.frame_length, self.frame_shift)  # (batch, frames, frame_length)
        frames = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([frames[..., :1], frames[..., :-1]], dim=-1)
        frames = (frames - self.preemphasis * previous) * self.window
        spectrum = torch.fft.rfft(frames, n=self.padded_window)
        energies = torch.matmul(spectrum.abs().pow(2), self.banks)
        return energies.clamp_min(ENERGY_FLOOR).log()
