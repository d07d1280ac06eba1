"""Checkpoints of published layouts with random weights: the real key names and shapes, so
that conversions are tested without downloading anything."""

from __future__ import annotations

import torch

#: the names and shapes of silero_vad/tinygrad_model.py's layout (silero_vad_16k.safetensors)
SILERO_VAD_LAYOUT = {
    "stft_conv.weight": (258, 1, 256),
    "conv1.weight": (128, 129, 3), "conv1.bias": (128,), "conv2.weight": (64, 128, 3), "conv2.bias": (64,),
    "conv3.weight": (64, 64, 3), "conv3.bias": (64,), "conv4.weight": (128, 64, 3), "conv4.bias": (128,),
    "lstm_cell.weight_ih": (512, 128), "lstm_cell.weight_hh": (512, 128),
    "lstm_cell.bias_ih": (512,), "lstm_cell.bias_hh": (512,),
    "final_conv.weight": (1, 128, 1), "final_conv.bias": (1,),
}


def random_silero_vad_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict of :data:`SILERO_VAD_LAYOUT` with small random weights."""
    generator = torch.Generator().manual_seed(seed)
    return {name: 0.1 * torch.randn(shape, generator=generator) for name, shape in SILERO_VAD_LAYOUT.items()}
