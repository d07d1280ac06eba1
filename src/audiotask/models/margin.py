"""Additive angular margin softmax (ArcFace, "AAM-softmax"): the loss of speaker embeddings.

Embeddings and class weights are L2-normalised, so each logit is the cosine of the angle
between an embedding and a class centre. The margin is added to the angle of the target
class only, then every cosine is scaled: an embedding must be closer to its own centre by
``margin`` radians than to any other to win, which gathers a speaker's chunks tightly.
(Deng et al., "ArcFace: additive angular margin loss for deep face recognition", 2019.)
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def additive_angular_margin_logits(
    cosine: torch.Tensor, targets: torch.Tensor, *, margin: float, scale: float
) -> torch.Tensor:
    """Logits ``scale * cos(theta + margin)`` for the target class, ``scale * cos(theta)`` elsewhere.

    Parameters
    ----------
    cosine : (batch, classes) float
        Cosine of the angle between each embedding and each class centre.
    targets : (batch,) int
        Class of each embedding.
    margin : float
        Angular margin, in radians.
    scale : float
        Multiplies every cosine (a softmax over cosines in [-1, 1] would stay nearly flat).

    Where ``theta + margin`` passes pi, ``cos`` would turn back up and reward a worse angle:
    there the target logit is ``cos(theta) - margin * sin(margin)`` instead, which keeps
    falling (as in ArcFace's reference implementation).
    """
    if cosine.ndim != 2 or targets.shape != cosine.shape[:1]:
        raise ValueError(f"expected cosine (batch, classes) and targets (batch,), got {tuple(cosine.shape)} "
                         f"and {tuple(targets.shape)}.")
    # clamped off +-1, where the derivative of sin(theta) = sqrt(1 - cos^2) is infinite
    cosine = cosine.clamp(-1.0 + 1e-7, 1.0 - 1e-7)
    sine = torch.sqrt(1.0 - cosine * cosine)
    shifted = cosine * math.cos(margin) - sine * math.sin(margin)  # cos(theta + margin)
    shifted = torch.where(cosine > math.cos(math.pi - margin), shifted, cosine - margin * math.sin(margin))
    target = F.one_hot(targets.long(), cosine.shape[1]).bool()
    return scale * torch.where(target, shifted, cosine)


class AdditiveAngularMargin(nn.Module):
    """AAM-softmax loss with its class centres: (batch, dimension) embeddings -> scalar loss.

    Parameters
    ----------
    num_classes : int
        Training speakers.
    dimension : int
        Embedding dimension.
    margin : float
        Angular margin, in radians (0.2 is common for speaker embeddings).
    scale : float
        Logit scale (30 is common).
    """

    def __init__(self, num_classes: int, dimension: int, *, margin: float = 0.2, scale: float = 30.0):
        super().__init__()
        if num_classes < 2 or dimension < 1:
            raise ValueError(f"AdditiveAngularMargin: needs at least 2 classes and 1 dimension, got {num_classes} "
                             f"and {dimension}.")
        if not 0 <= margin < math.pi / 2 or scale <= 0:
            raise ValueError(f"AdditiveAngularMargin: margin must be in [0, pi/2) and scale positive, got "
                             f"margin={margin}, scale={scale}.")
        self.margin, self.scale = float(margin), float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, dimension))
        nn.init.xavier_uniform_(self.weight)

    @property
    def num_classes(self) -> int:
        return self.weight.shape[0]

    @property
    def dimension(self) -> int:
        return self.weight.shape[1]

    def logits(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(batch, classes) margin logits of (batch, dimension) embeddings."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dimension:
            raise ValueError(f"AdditiveAngularMargin: embeddings must be (batch, {self.dimension}), "
                             f"got {tuple(embeddings.shape)}.")
        cosine = F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(self.weight.float(), dim=1))
        return additive_angular_margin_logits(cosine, targets, margin=self.margin, scale=self.scale)

    def forward(self, embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the margin logits of ``embeddings`` (batch, dimension) for
        ``targets`` (batch,) class indices."""
        return F.cross_entropy(self.logits(embeddings, targets), targets.long())
