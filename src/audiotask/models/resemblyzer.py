"""Resemblyzer's GE2E speaker encoder, as an audiotask model (``audiotask import resemblyzer``).

The network of the resemblyzer package (``resemblyzer/voice_encoder.py``): each chunk
brought up to -30 dBFS (never down: ``preprocess_wav``'s ``normalize_volume``), a 40-band mel
power spectrogram (25-ms windows every 10 ms, librosa's Slaney filterbank; no logarithm),
cut into partial utterances of 160 frames (1.6 s) at 1.3 per second, each through a
three-layer LSTM of 256 units whose last hidden state goes through a linear layer, a ReLU
and an L2 normalisation; a chunk's embedding is the normalised mean of its partials', as
``VoiceEncoder.embed_utterance`` computes it. The mel spectrogram is computed here with
torch (the package uses librosa), the filterbank from its published formula.
``preprocess_wav``'s other step, shortening long silences with webrtcvad, is not done: a
chunk is embedded as it is.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s
PARTIALS_PER_SECOND = 1.3
MIN_COVERAGE = 0.75
TARGET_DBFS = -30.0
HIDDEN_SIZE = 256
NUM_LAYERS = 3


def hz_to_mel(frequencies: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, ``htk=False``): linear below 1 kHz, logarithmic above."""
    frequencies = np.asarray(frequencies, dtype=np.float64)
    mels = frequencies / (200.0 / 3)
    log_region = frequencies >= 1000.0
    mels[log_region] = 15.0 + np.log(frequencies[log_region] / 1000.0) / (np.log(6.4) / 27.0)
    return mels


def mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    frequencies = mels * (200.0 / 3)
    log_region = mels >= 15.0
    frequencies[log_region] = 1000.0 * np.exp((np.log(6.4) / 27.0) * (mels[log_region] - 15.0))
    return frequencies


def slaney_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters, area-normalised ("slaney"), from 0 Hz to
    Nyquist: librosa.filters.mel's defaults."""
    fft_frequencies = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array([0.0]))[0], hz_to_mel(np.array([sample_rate / 2.0]))[0],
                                  n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_frequencies[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


def partial_starts(num_samples: int) -> tuple[list[int], int]:
    """``(first mel frame of each partial, samples the waveform is zero-padded to)`` for a
    waveform of ``num_samples``, as ``VoiceEncoder.compute_partial_slices`` (rate 1.3,
    coverage 0.75) and ``embed_utterance`` cut it."""
    num_frames = int(np.ceil((num_samples + 1) / HOP))
    frame_step = int(np.round((SAMPLE_RATE / PARTIALS_PER_SECOND) / HOP))
    steps = max(1, num_frames - PARTIAL_FRAMES + frame_step + 1)
    starts = list(range(0, steps, frame_step))
    last = starts[-1] * HOP
    coverage = (num_samples - last) / (PARTIAL_FRAMES * HOP)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts = starts[:-1]
    return starts, max(num_samples, (starts[-1] + PARTIAL_FRAMES) * HOP)


class Resemblyzer(Model):
    """GE2E speaker encoder (resemblyzer): one 256-dimensional, L2-normalised embedding per chunk."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, num_channels: int = 1, task=None):
        if int(sample_rate) != SAMPLE_RATE or int(num_channels) != 1:
            raise ValueError(f"Resemblyzer: 16 kHz mono only (the network's weights), got {sample_rate} Hz, "
                             f"{num_channels} channel(s).")
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        self.register_buffer("filterbank", torch.from_numpy(slaney_filterbank(SAMPLE_RATE, N_FFT, N_MELS)).float(),
                             persistent=False)
        self.lstm = nn.LSTM(N_MELS, HIDDEN_SIZE, NUM_LAYERS, batch_first=True)

    def build(self) -> None:
        specifications = self.specifications
        if specifications.problem is not Problem.REPRESENTATION or specifications.resolution is not Resolution.CHUNK:
            raise ValueError("Resemblyzer: a speaker encoder, one embedding per chunk (REPRESENTATION, CHUNK).")
        self.linear = nn.Linear(HIDDEN_SIZE, specifications.num_outputs)

    @staticmethod
    def normalize_volume(waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, samples), each row raised to -30 dBFS RMS when quieter (a silent row as it is)."""
        rms = waveforms.pow(2).mean(dim=1, keepdim=True).sqrt()
        change = TARGET_DBFS - 20.0 * torch.log10(rms.clamp_min(1e-30))
        gain = torch.where((change > 0) & (rms > 0), 10.0 ** (change / 20.0), torch.ones_like(rms))
        return waveforms * gain

    def mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, samples) -> (batch, frames, 40) mel power spectrogram (librosa's, centred,
        zero-padded)."""
        spectrum = torch.stft(waveforms, N_FFT, hop_length=HOP, window=self.window, center=True, pad_mode="constant",
                              return_complex=True)
        return torch.matmul(self.filterbank, spectrum.abs() ** 2).transpose(1, 2)

    def embed_partials(self, mels: torch.Tensor) -> torch.Tensor:
        """(partials, 160, 40) -> (partials, dimension), L2-normalised."""
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / torch.linalg.vector_norm(raw, dim=1, keepdim=True).clamp_min(1e-12)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, dimension): each chunk's utterance embedding."""
        self.check_input(waveforms)
        starts, padded = partial_starts(waveforms.shape[-1])
        samples = F.pad(self.normalize_volume(waveforms[:, 0]), (0, padded - waveforms.shape[-1]))
        mel = self.mel(samples)
        partials = torch.stack([mel[:, start:start + PARTIAL_FRAMES] for start in starts], dim=1)
        batch = partials.shape[0]
        embeddings = self.embed_partials(partials.reshape(-1, PARTIAL_FRAMES, N_MELS)).reshape(batch, len(starts), -1)
        mean = embeddings.mean(dim=1)
        return mean / torch.linalg.vector_norm(mean, dim=1, keepdim=True).clamp_min(1e-12)

