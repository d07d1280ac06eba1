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


#: resemblyzer's pretrained.pt: {"step", "model_state", "optimizer_state"}, the state's names and shapes
RESEMBLYZER_LAYOUT = {
    "similarity_weight": (1,), "similarity_bias": (1,),
    **{f"lstm.{kind}_l{layer}": (1024, 40 if kind == "weight_ih" and layer == 0 else 256) if kind.startswith("weight")
       else (1024,) for layer in range(3) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
    "linear.weight": (256, 256), "linear.bias": (256,),
}


def random_resemblyzer_checkpoint(seed: int = 0) -> dict:
    """A checkpoint of resemblyzer's layout with small random weights."""
    generator = torch.Generator().manual_seed(seed)
    state = {name: 0.1 * torch.randn(shape, generator=generator) for name, shape in RESEMBLYZER_LAYOUT.items()}
    return {"step": 1, "model_state": state, "optimizer_state": {"state": {}, "param_groups": []}}
