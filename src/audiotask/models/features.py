"""Log-mel spectrogram computed with torch: a pure function and a thin module."""

from __future__ import annotations


import numpy as np
import torch
import torch.nn as nn


def hz_to_mel(frequency: np.ndarray) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(frequency, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float = 0.0, f_max: float | None = None) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular filters on the HTK mel scale."""
    f_max = sample_rate / 2 if f_max is None else f_max
    bins = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins[:, None] - lower) / (centre - lower)
    falling = (upper - bins[:, None]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel_spectrogram(
    waveforms: torch.Tensor, filterbank: torch.Tensor, window: torch.Tensor, *, n_fft: int, hop_length: int
) -> torch.Tensor:
    """(batch, samples) -> (batch, samples // hop_length, n_mels) log-mel energies.

    The centred STFT has one frame more than ``samples // hop_length``; the last one is
    dropped so that frame counts are an exact function of the hop (see core.frames).
    """
    spectrum = torch.stft(waveforms, n_fft=n_fft, hop_length=hop_length, window=window, center=True, return_complex=True)
    power = spectrum.abs().pow(2)[..., : waveforms.shape[-1] // hop_length]
    mel = torch.matmul(power.transpose(1, 2), filterbank)
    return torch.log(mel + 1e-6)


class LogMel(nn.Module):
    """Log-mel front end: (batch, 1, samples) -> (batch, frames, n_mels)."""

    def __init__(self, sample_rate: int = 16000, n_fft: int = 1024, hop_length: int = 256, n_mels: int = 64):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("filterbank", torch.from_numpy(mel_filterbank(sample_rate, n_fft, n_mels)), persistent=False)
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return log_mel_spectrogram(
            waveforms.mean(dim=1), self.filterbank, self.window, n_fft=self.n_fft, hop_length=self.hop_length
        )
