"""Mean teacher (Tarvainen and Valpola, 2017), as DCASE's sound event detection baseline uses it.

The teacher is a copy of the model whose weights follow the student's as an exponential
moving average; the student learns, besides its supervised loss, to agree with the
teacher's outputs on every file, labelled or not (the consistency loss), with a weight that
ramps up from zero so that the teacher is worth agreeing with by then.

The teacher lives beside the model, not inside it: its weights are no parameters of the
model, the optimiser never sees them and the saved model does not carry them (checkpoints
store them apart, see :meth:`MeanTeacher.state_dict`).
"""

from __future__ import annotations

import copy
import math

import torch


def sigmoid_ramp_up(step: int, length: int) -> float:
    """``exp(-5 (1 - t)^2)`` for ``t = step / length`` clipped to [0, 1] (Laine and Aila's
    ramp-up, DCASE baseline's ``sigmoid_rampup``): from about 0.007 at step 0 to 1 at ``length``."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(max(step, 0), length) / length
    return float(math.exp(-5.0 * phase * phase))


class MeanTeacher:
    """The exponential-moving-average copy of a model, and the weight of its consistency loss.

    Parameters
    ----------
    student : torch.nn.Module
        The model trained; the teacher starts as its copy.
    decay : float
        EMA decay per optimiser step (DCASE baseline: 0.999). Early on, the effective decay is
        ``min(decay, (step + 1) / (step + 10))`` so that the teacher leaves the random
        initialisation quickly.
    weight : float
        Largest weight of the consistency loss (DCASE baseline: 2).
    ramp_up : int
        Optimiser steps over which the weight ramps up (see :func:`sigmoid_ramp_up`).
    """

    def __init__(self, student: torch.nn.Module, *, decay: float = 0.999, weight: float = 2.0, ramp_up: int = 1000):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"MeanTeacher: decay must be in [0, 1), got {decay}.")
        self.decay, self.weight, self.ramp_up = float(decay), float(weight), int(ramp_up)
        self.model = copy.deepcopy(student)
        # the copy is no LightningModule of the run: Lightning must not find a trainer on it
        self.model._task = None
        self.model.requires_grad_(False)
        self.model.eval()

    def consistency_weight(self, step: int) -> float:
        """Weight of the consistency loss at optimiser step ``step``."""
        return self.weight * sigmoid_ramp_up(step, self.ramp_up)

    @torch.no_grad()
    def update(self, student: torch.nn.Module, step: int) -> None:
        """Move the teacher's weights towards the student's after optimiser step ``step``;
        buffers (batch-norm statistics) are averaged alike, integer ones copied."""
        decay = min(self.decay, (step + 1) / (step + 10))
        teacher = dict(self.model.named_parameters())
        teacher.update(self.model.named_buffers())
        for name, value in [*student.named_parameters(), *student.named_buffers()]:
            target = teacher[name]
            if target.dtype.is_floating_point:
                target.mul_(decay).add_(value.detach().to(target.device), alpha=1.0 - decay)
            else:
                target.copy_(value)

    def to(self, device: torch.device) -> "MeanTeacher":
        self.model.to(device)
        return self

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The teacher's weights (a state dict of the model's architecture)."""
        return {name: tensor.detach().cpu() for name, tensor in self.model.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        torch.nn.Module.load_state_dict(self.model, state, strict=True)


def consistency_loss(student: tuple[torch.Tensor, ...], teacher: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Mean squared difference of the student's and the teacher's probabilities, summed over
    their outputs (frame and clip logits, in the same order)."""
    import torch.nn.functional as F

    return sum(F.mse_loss(torch.sigmoid(ours), torch.sigmoid(theirs)) for ours, theirs in zip(student, teacher))
