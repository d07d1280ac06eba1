"""A frozen pretrained encoder's frame embeddings, as features of another model.

The DCASE 2023-2024 baseline feeds a frozen BEATs encoder's frame embeddings to its CRNN
beside the log-mel (+0.14 PSDS1 on DESED). Here any audiotask model that computes frame
embeddings can be that encoder: it declares

- ``frame_embeddings(waveforms)``: (batch, 1, samples) -> (batch, steps, dimension);
- ``embedding_dimension``: the dimension;
- ``embedding_hop``: samples per step.

:class:`PretrainedFeatures` holds it inside the model that uses it, so that the model's
folder carries the encoder's weights (one self-contained ``model.safetensors``) and its
manifest names the encoder's registered architecture and arguments (no code is read from
a file). The encoder is never trained: no gradient, always in eval mode, left out of the
optimiser.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

#: what an encoder must have to give its frame embeddings
ENCODER_INTERFACE = ("frame_embeddings", "embedding_dimension", "embedding_hop")


def describe_encoder(encoder) -> dict[str, Any]:
    """The manifest's description of ``encoder`` (a Model): its architecture's registered name
    and its constructor arguments, from which :class:`PretrainedFeatures` rebuilds it."""
    from audiotask.core.architectures import architecture_name

    return {"architecture": architecture_name(type(encoder)), "arguments": dict(encoder.hparams)}


def check_encoder(encoder, *, name: str) -> None:
    missing = [attribute for attribute in ENCODER_INTERFACE if not hasattr(encoder, attribute)]
    if missing:
        raise ValueError(f"{name} gives no frame embeddings (it has no {', '.join(missing)}): "
                         f"pretrained features need an encoder such as BEATs, PANNs or SileroVAD.")


class PretrainedFeatures(nn.Module):
    """A frozen encoder's frame embeddings at another model's frame rate.

    Parameters
    ----------
    description : mapping
        ``{"architecture": registered name, "arguments": constructor arguments}`` (see
        :func:`describe_encoder`); the encoder is built from it with random weights, which
        loading the model's state (or :meth:`load_encoder`) replaces.
    sample_rate : int
        The model's sample rate, which must be the encoder's (no resampling inside).
    """

    def __init__(self, description: Mapping[str, Any], sample_rate: int):
        super().__init__()
        from audiotask.core.model import model_class

        architecture = str(description["architecture"])
        self.encoder = model_class(architecture)(**dict(description.get("arguments", {})))
        check_encoder(self.encoder, name=architecture)
        if int(self.encoder.sample_rate) != int(sample_rate):
            raise ValueError(f"pretrained features: {architecture} runs at {self.encoder.sample_rate} Hz, the model at "
                             f"{sample_rate} Hz: give the model sample_rate={self.encoder.sample_rate}.")
        self.dimension = int(self.encoder.embedding_dimension)
        self.freeze()

    def freeze(self) -> None:
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        self.encoder.eval()

    def load_encoder(self, encoder) -> None:
        """Take the weights of ``encoder``, a loaded model of the described architecture (its
        head, which frame embeddings do not use, is left out)."""
        state, expected = encoder.state_dict(), self.encoder.state_dict()
        missing = sorted(set(expected) - set(state))
        if missing:
            raise ValueError(f"pretrained features: the encoder has no {missing[0]!r} ({len(missing)} weights missing)")
        self.encoder.load_state_dict({name: state[name] for name in expected})
        self.freeze()

    def train(self, mode: bool = True):
        # frozen: batch normalisation and dropout inside the encoder stay as at inference
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, waveforms: torch.Tensor, num_frames: int) -> torch.Tensor:
        """(batch, channels, samples) -> (batch, num_frames, dimension): the embeddings of the
        mono mix, each frame of the model's grid taking the encoder step it falls in."""
        with torch.no_grad():
            embeddings = self.encoder.frame_embeddings(waveforms.mean(dim=1, keepdim=True))
        if embeddings.shape[1] == 0:
            return embeddings.new_zeros(embeddings.shape[0], num_frames, self.dimension)
        # nearest: a frame gets the step whose span holds it, as the baseline's repetition does
        return F.interpolate(embeddings.transpose(1, 2), size=num_frames, mode="nearest").transpose(1, 2)
