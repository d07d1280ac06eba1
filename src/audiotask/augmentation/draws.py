"""Seeded random draws for augmentation: every draw comes from the generator given (or torch's
global one), on the generator's device, so that a seeded generator replays an augmentation."""

from __future__ import annotations

import torch
from torch import Tensor


def draw_device(generator: torch.Generator | None) -> torch.device:
    # a generator only draws on its own device; the draws are moved to the data afterwards
    return generator.device if generator is not None else torch.device("cpu")


def uniform(shape: tuple[int, ...], low: float, high: float, *, generator: torch.Generator | None) -> Tensor:
    """Float64 draws uniform in ``[low, high)``, on the generator's device."""
    draws = torch.rand(shape, generator=generator, device=draw_device(generator), dtype=torch.float64)
    return low + (high - low) * draws


def integers(low: Tensor | int, high: Tensor | int, shape: tuple[int, ...], *, generator: torch.Generator | None) -> Tensor:
    """Int64 draws uniform in ``[low, high)``, where the bounds may differ per element.

    ``torch.randint`` takes one scalar range; per-example ranges need ``floor(u * size)``.
    """
    size = torch.as_tensor(high) - torch.as_tensor(low)
    draws = torch.floor(uniform(shape, 0.0, 1.0, generator=generator) * size.to(draw_device(generator)))
    # u < 1 in float64, but guard the float edge so a draw never reaches ``high``
    return torch.minimum(draws.long(), size.to(draws.device) - 1) + torch.as_tensor(low).to(draws.device)


def step_generator(step: int) -> torch.Generator:
    """The augmentation's random source at optimiser step ``step``: a function of the run's
    seed and the step only, so that a resumed run draws what an uninterrupted one would."""
    from audiotask.utils.random import global_seed

    return torch.Generator().manual_seed(global_seed() * 1_000_003 + step)
