"""Silero VAD's network, as an audiotask model (its weights imported by ``audiotask import silero-vad``).

The network of the silero-vad package (``silero_vad/tinygrad_model.py`` documents it, and
``silero_vad/data/silero_vad_16k.safetensors`` holds its weights): every 512 samples at
16 kHz (32 ms), the chunk and the 64 samples before it, reflect-padded by 64 on the right,
go through a learnt short-time Fourier transform (a convolution of 258 filters of 256
samples, hop 128; magnitude of 129 bins), four convolutions and an LSTM cell whose state
runs from chunk to chunk; a 1x1 convolution and a sigmoid give the chunk's speech
probability.

Here the chunks of a window are encoded together (:meth:`SileroVAD.encode`: the
convolutions, batched over chunks) and the LSTM cell runs as an ``nn.LSTM`` over them
(:meth:`SileroVAD.decode`), from a zero state at the start of each window, as the package
does after ``reset_states()``. The 1x1 convolution is the head: a task with other classes
rebuilds it and keeps the rest.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution

#: samples per output frame at 16 kHz, and the samples of the previous chunk each chunk sees
CHUNK_SAMPLES = 512
CONTEXT_SAMPLES = 64
#: the learnt STFT: filters of 256 samples, hop 128, 129 frequency bins (real and imaginary parts)
N_FFT = 256
STFT_HOP = 128
FREQUENCY_BINS = N_FFT // 2 + 1
HIDDEN_SIZE = 128


class SileroVAD(Model):
    """Silero VAD (v5/v6 network, 16 kHz): a speech probability every 32 ms.

    Parameters
    ----------
    sample_rate : int
        16000 only: the imported weights are those of the 16 kHz network.
    """

    frame_hop = CHUNK_SAMPLES
    #: a chunk reads the 64 samples before it: the frame before, at a window's start
    encoder_context = 1

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1, task=None):
        if int(sample_rate) != 16000 or int(num_channels) != 1:
            raise ValueError(f"SileroVAD: 16 kHz mono only (the network's weights), got {sample_rate} Hz, "
                             f"{num_channels} channel(s).")
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.stft_conv = nn.Conv1d(1, 2 * FREQUENCY_BINS, kernel_size=N_FFT, stride=STFT_HOP, bias=False)
        self.conv1 = nn.Conv1d(FREQUENCY_BINS, 128, kernel_size=3, padding=1)
        self.conv2 = nn.Conv1d(128, 64, kernel_size=3, stride=2, padding=1)
        self.conv3 = nn.Conv1d(64, 64, kernel_size=3, stride=2, padding=1)
        self.conv4 = nn.Conv1d(64, HIDDEN_SIZE, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(HIDDEN_SIZE, HIDDEN_SIZE, batch_first=True)

    def build(self) -> None:
        specifications = self.specifications
        if specifications.problem is Problem.REPRESENTATION:
            raise ValueError("SileroVAD: a detector (classification or regression per frame or chunk), "
                             "not an embedding.")
        self.final_conv = nn.Conv1d(HIDDEN_SIZE, specifications.num_outputs, kernel_size=1)

    def chunks(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, frames, 576): each 512-sample chunk with the 64
        samples before it (zeros before the first); a last partial chunk is left out."""
        self.check_input(waveforms)
        num_frames = self.num_frames(waveforms.shape[-1])
        samples = waveforms[:, 0, : num_frames * CHUNK_SAMPLES]
        padded = F.pad(samples, (CONTEXT_SAMPLES, 0))
        return padded.unfold(1, CHUNK_SAMPLES + CONTEXT_SAMPLES, CHUNK_SAMPLES)

    def encode(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, frames, 128): the convolutions of every chunk."""
        chunks = self.chunks(waveforms)
        batch, num_frames, length = chunks.shape
        x = F.pad(chunks.reshape(batch * num_frames, 1, length), (0, CONTEXT_SAMPLES), mode="reflect")
        x = self.stft_conv(x)
        x = torch.sqrt(x[:, :FREQUENCY_BINS] ** 2 + x[:, FREQUENCY_BINS:] ** 2)
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = torch.relu(conv(x))
        # four STFT frames, halved twice: one feature vector per chunk
        return x.reshape(batch, num_frames, HIDDEN_SIZE)

    #: frame embeddings for another model's pretrained features (see models/pretrained_features.py)
    embedding_dimension = HIDDEN_SIZE
    embedding_hop = CHUNK_SAMPLES

    def frame_embeddings(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, 1, samples) -> (batch, frames, 128): what the speech probability is read
        from (the LSTM's output after its ReLU), every 32 ms."""
        hidden, _ = self.lstm(self.encode(waveforms))
        return torch.relu(hidden)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 128) -> logits (batch, frames, outputs), or (batch, outputs) at CHUNK."""
        hidden, _ = self.lstm(features)
        logits = self.final_conv(torch.relu(hidden).transpose(1, 2)).transpose(1, 2)
        if self.specifications.resolution is Resolution.CHUNK:
            return logits.mean(dim=1)
        return logits

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(waveforms))
