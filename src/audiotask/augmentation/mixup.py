"""Mixup of training examples, as in the DCASE task 4 baseline.

Mixing two clips and their labels (Zhang et al., "mixup", ICLR 2018) regularises a sound
event detector towards overlapping events, which real recordings are full of. The draws
(:func:`draw_mixup`) are apart from the arithmetic (:func:`mix_rows`), so that the same
mixture can be applied to several tensors (a teacher's and a student's inputs, say).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from .draws import draw_device


def _check_rows(rows: Tensor | None, batch: int) -> Tensor:
    if rows is None:
        return torch.ones(batch, dtype=torch.bool)
    if rows.dtype != torch.bool or rows.shape != (batch,):
        raise ValueError(f"mixup: rows must be a bool (batch={batch},) mask, got {rows.dtype} {tuple(rows.shape)}.")
    return rows


def draw_mixup(rows: Tensor, *, alpha: float = 0.2, generator: torch.Generator | None = None) -> tuple[float, Tensor]:
    """Mixing weight and partner of every row, for :func:`mix_rows`.

    Parameters
    ----------
    rows : Tensor
        ``(batch,)`` bool: the rows that take part; each is paired with a selected row through
        a random permutation of them (a row may draw itself, as in the baseline).
    alpha : float
        ``lambda ~ Beta(alpha, alpha)``, one per batch (the baseline's ``mixup``).
    generator : torch.Generator, optional
        Source of every random draw: first lambda, then the permutation.

    Returns
    -------
    (float, Tensor)
        ``lambda`` and the ``(batch,)`` int64 index of each row's partner (itself for rows
        outside ``rows``).
    """
    if alpha <= 0:
        raise ValueError(f"mixup: alpha must be > 0, got {alpha}.")
    # torch's Beta distribution takes no generator: a numpy one seeded from ours keeps every
    # draw a function of the generator's state
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=draw_device(generator)).item())
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    selected = torch.nonzero(rows.cpu()).flatten()
    order = torch.randperm(len(selected), generator=generator, device=draw_device(generator)).cpu()
    partners = torch.arange(len(rows))
    partners[selected] = selected[order]
    return lam, partners


def mix_rows(
    features: Tensor,
    targets: Sequence[Tensor],
    rows: Tensor,
    partners: Tensor,
    lam: float,
    *,
    soft: bool = True,
) -> tuple[Tensor, list[Tensor]]:
    """``lam * x[i] + (1 - lam) * x[partners[i]]`` on the selected rows; the others unchanged.

    ``soft``: targets are mixed with the same weights (the baseline's ``"soft"``); else each
    target is the maximum of both (``"hard"``: an event in either clip is present). Targets
    come back as floating tensors whatever the draw, so their dtype does not depend on it.
    """
    rows, partners = rows.to(features.device), partners.to(features.device)
    mask = rows.reshape((-1,) + (1,) * (features.ndim - 1))
    mixed_features = torch.where(mask, lam * features + (1.0 - lam) * features[partners], features)
    mixed_targets = []
    for target in targets:
        target = target if target.is_floating_point() else target.to(features.dtype)
        partner = target[partners.to(target.device)]
        mixed = lam * target + (1.0 - lam) * partner if soft else torch.maximum(target, partner)
        mask = rows.to(target.device).reshape((-1,) + (1,) * (target.ndim - 1))
        mixed_targets.append(torch.where(mask, mixed, target))
    return mixed_features, mixed_targets


def mixup(
    features: Tensor,
    targets: Sequence[Tensor],
    *,
    rows: Tensor | None = None,
    alpha: float = 0.2,
    soft: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Mix selected examples pairwise, features and targets with one weight per batch.

    Parameters
    ----------
    features : Tensor
        ``(batch, frames, n_mels)`` features (any ``(batch, a, b)`` tensor, e.g. waveforms).
    targets : sequence of Tensor
        Each ``(batch, classes)`` (weak labels) or ``(batch, frames, classes)`` (strong).
    rows : Tensor, optional
        ``(batch,)`` bool mask of the rows to mix among themselves (e.g. only the strongly
        labelled ones, so that weak and strong labels never mix); ``None``: every row.
        Rows outside it come back unchanged; with fewer than 2 selected, nothing changes.
    alpha : float
        ``lambda ~ Beta(alpha, alpha)``; the baseline's 0.2 keeps most mixtures close to one clip.
    soft : bool
        Soft targets (``lambda``-weighted) or hard ones (maximum of both); see :func:`mix_rows`.
    generator : torch.Generator, optional
        Source of every random draw.

    Returns
    -------
    (Tensor, list of Tensor)
        Mixed features, same shape, and mixed targets, same shapes, floating.
    """
    if features.ndim != 3:
        raise ValueError(f"mixup: features must be (batch, frames, n_mels), got shape {tuple(features.shape)}.")
    batch = features.shape[0]
    for target in targets:
        if target.ndim not in (2, 3) or target.shape[0] != batch:
            raise ValueError(
                f"mixup: targets must be (batch={batch}, classes) or (batch, frames, classes), "
                f"got shape {tuple(target.shape)}."
            )
    rows = _check_rows(rows, batch)
    if int(rows.sum()) < 2:
        return features, [target if target.is_floating_point() else target.to(features.dtype) for target in targets]
    lam, partners = draw_mixup(rows, alpha=alpha, generator=generator)
    return mix_rows(features, targets, rows, partners, lam, soft=soft)
