"""A tiny model (a few thousand parameters) for tests: fast, and still able to learn."""

from __future__ import annotations

import torch
import torch.nn as nn

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution


class Debug(Model):
    """Strided convolution on the waveform, a small LSTM, a linear head.

    Output frames hop by ``frame_hop`` samples; CHUNK output averages the frames. A
    REPRESENTATION (CHUNK only) is that average too: a (batch, dimension) embedding.
    """

    def __init__(self, sample_rate: int = 16000, num_channels: int = 1, frame_hop: int = 256, hidden_size: int = 16, task=None):
        super().__init__(sample_rate=sample_rate, num_channels=num_channels, task=task)
        self.frame_hop = int(frame_hop)
        self.encoder = nn.Conv1d(num_channels, 8, kernel_size=self.frame_hop, stride=self.frame_hop)
        self.lstm = nn.LSTM(8, hidden_size, batch_first=True)
        self.hidden_size = hidden_size

    def build(self) -> None:
        specifications = self.specifications
        if specifications.problem is Problem.REPRESENTATION and specifications.resolution is not Resolution.CHUNK:
            raise ValueError(f"{type(self).__name__}: embeddings (REPRESENTATION) are one per chunk: CHUNK resolution only.")
        self.head = nn.Linear(self.hidden_size, self.specifications.num_outputs)

    #: the strided convolution reads its own frame only
    encoder_context = 0

    def encode(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, frames, 8): the strided convolution, compressed."""
        self.check_input(waveforms)
        encoded = torch.relu(self.encoder(waveforms)).transpose(1, 2)
        return torch.log1p(encoded.abs() * 100)

    def decode(self, features: torch.Tensor) -> torch.Tensor:
        """(batch, frames, 8) -> logits (batch, frames, classes) or (batch, classes)."""
        output, _ = self.lstm(features)
        logits = self.head(output)
        if self.specifications.resolution is Resolution.CHUNK:
            return logits.mean(dim=1)
        return logits

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """(batch, channels, samples) -> logits (batch, frames, classes) or (batch, classes)."""
        return self.decode(self.encode(waveforms))
