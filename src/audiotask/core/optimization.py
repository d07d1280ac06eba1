"""The optimiser and its learning-rate schedule, one for every model.

Adam at ``Model.learning_rate``, optionally shaped by a schedule over the run's optimiser
steps: ``"constant"``, or ``"cosine"`` (a linear warm-up over ``warmup_steps``, then a
cosine decay to ``final_fraction`` of the rate at the run's last step, as DCASE's baseline
and most of its top systems shape theirs). The schedule is a pure function of the step:
a resumed run continues it exactly.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

#: the schedules ``Model.lr_schedule`` (``audiotask train --lr-schedule``) may name
SCHEDULES = ("constant", "cosine")


def schedule_factor(step: int, *, schedule: str, total_steps: Optional[int], warmup_steps: int = 0,
                    final_fraction: float = 0.0) -> float:
    """Multiplier of the learning rate at optimiser step ``step`` (0-based).

    ``total_steps`` is the run's budget; without one (a run bounded by epochs of unknown
    length) the cosine schedule keeps the rate constant after its warm-up.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"learning-rate schedule must be one of {SCHEDULES}, got {schedule!r}.")
    if schedule == "constant":
        return 1.0
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if not total_steps or total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress))


def parameter_groups(model) -> list[dict]:
    """Adam's parameter groups: the head at ``model.learning_rate``, the encoder at
    ``model.encoder_lr_scale`` times it (left out, and not trained, at 0). Parameters that
    are frozen already (a pretrained feature encoder's) are left out."""
    scale = float(getattr(model, "encoder_lr_scale", 1.0))  # a module that is no Model trains whole
    if scale < 0:
        raise ValueError(f"encoder_lr_scale must be >= 0, got {scale}")
    if scale == 1.0:
        return [{"params": trainable(model.parameters())}]
    head, encoder = model.head_and_encoder_parameters()
    if scale == 0.0:
        for parameter in encoder:
            parameter.requires_grad_(False)
        return [{"params": trainable(head)}]
    return [{"params": trainable(head)}, {"params": trainable(encoder), "lr": model.learning_rate * scale}]


def trainable(parameters) -> list:
    return [parameter for parameter in parameters if parameter.requires_grad]


def configure_optimizers(model) -> dict:
    """Lightning's ``configure_optimizers`` for ``model``: Adam at ``model.learning_rate``
    (the encoder at ``model.encoder_lr_scale`` of it), stepped by ``model.lr_schedule`` (see
    :func:`schedule_factor`)."""
    optimizer = torch.optim.Adam(parameter_groups(model), lr=model.learning_rate)
    if model.lr_schedule == "constant":
        return optimizer
    total = run_steps(model)
    warmup, final = int(model.warmup_steps), float(model.final_lr_fraction)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: schedule_factor(step, schedule=model.lr_schedule, total_steps=total, warmup_steps=warmup,
                                     final_fraction=final),
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def run_steps(model) -> Optional[int]:
    """The optimiser steps the run will take: ``max_steps``, else Lightning's estimate (None
    when neither is known)."""
    trainer = getattr(model, "_trainer", None)
    if trainer is None:
        return None
    if trainer.max_steps and trainer.max_steps > 0:
        return int(trainer.max_steps)
    try:
        estimated = trainer.estimated_stepping_batches
    except Exception:  # noqa: BLE001 - an endless loader: no total to decay over
        return None
    return int(estimated) if math.isfinite(estimated) else None
