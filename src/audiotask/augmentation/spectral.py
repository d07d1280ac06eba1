"""Augmentations of log-mel features: FilterAugment, frequency masking and time shifting.

Features are ``(batch, frames, n_mels)`` natural-log mel energies, as computed by
:func:`audiotask.models.features.log_mel_spectrogram`. Every random function draws from
its ``generator`` keyword only, so that a seeded generator replays the same augmentation
(``None`` draws from torch's global CPU generator).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from .draws import integers, uniform

#: natural-log units of one decibel of *power*: the features are logs of mel power
#: (``|STFT|**2``), so a gain of ``g`` dB multiplies them by ``10 ** (g / 10)``
NEPERS_PER_POWER_DB = math.log(10.0) / 10.0


def _check_features(features: Tensor, name: str) -> None:
    if features.ndim != 3:
        raise ValueError(
            f"{name}: features must be (batch, frames, n_mels), got a {features.ndim}-D tensor of shape "
            f"{tuple(features.shape)}."
        )


def _check_range(value: tuple[float, float], name: str) -> tuple[float, float]:
    low, high = (float(bound) for bound in value)
    if not low <= high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value}.")
    return low, high


def filter_gains(
    batch: int,
    n_mels: int,
    *,
    db_range: tuple[float, float] = (-6.0, 6.0),
    n_bands: tuple[int, int] = (3, 6),
    min_bandwidth: int = 6,
    filter_type: Literal["linear", "step"] = "linear",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random FilterAugment gain curves, ``(batch, n_mels)`` in dB; see :func:`filter_augment`
    for the parameters."""
    low_db, high_db = _check_range(db_range, "filter_augment: db_range")
    fewest, most = (int(bound) for bound in n_bands)
    if not 1 <= fewest < most:
        raise ValueError(f"filter_augment: n_bands must be (low, high) with 1 <= low < high, got {n_bands}.")
    if min_bandwidth < 1:
        raise ValueError(f"filter_augment: min_bandwidth must be >= 1, got {min_bandwidth}.")
    if filter_type not in ("linear", "step"):
        raise ValueError(f"filter_augment: filter_type must be 'linear' or 'step', got {filter_type!r}.")
    if n_mels < most - 1:
        raise ValueError(f"filter_augment: {n_mels} mel bins cannot hold up to {most - 1} bands.")

    # per example: number of bands, then band edges that leave every band >= bandwidth bins
    # wide (the baseline's draw, with its bandwidth shrunk until the bands fit)
    bands = integers(fewest, most, (batch,), generator=generator)
    bandwidth = torch.clamp(n_mels // bands, max=min_bandwidth)
    interior = torch.arange(1, most - 1, device=bands.device)  # interior edge slots 1 .. most - 2
    valid = interior[None, :] < bands[:, None]
    offsets = integers(0, (n_mels - bands * bandwidth + 1)[:, None], (batch, most - 2), generator=generator)
    offsets = torch.where(valid, offsets, n_mels).sort(dim=1).values  # the unused slots sort last
    edges = torch.where(valid, offsets + interior[None, :] * bandwidth[:, None], n_mels)
    edges = torch.cat([torch.zeros_like(edges[:, :1]), edges, torch.full_like(edges[:, :1], n_mels)], dim=1)

    # band of each mel bin: how many edges (past edge 0) lie at or below it
    bins = torch.arange(n_mels, device=bands.device)
    band = (edges[:, None, 1:] <= bins[None, :, None]).sum(dim=2)  # (batch, n_mels)
    if filter_type == "step":
        gains = uniform((batch, most - 1), low_db, high_db, generator=generator)
        return gains.gather(1, band)
    # linear: a gain at every edge, interpolated inside each band, as the baseline's linspace
    gains = uniform((batch, most), low_db, high_db, generator=generator)
    start, stop = edges.gather(1, band), edges.gather(1, band + 1)
    position = (bins[None, :] - start) / torch.clamp(stop - start - 1, min=1)
    left, right = gains.gather(1, band), gains.gather(1, band + 1)
    return left + (right - left) * position


def filter_augment(features: Tensor, **options) -> Tensor:
    """FilterAugment: a random frequency response per example, added to log-mel features.

    Models trained on one set of recording conditions generalise better when the spectral
    balance of each example is randomly tilted (Nam et al., "FilterAugment", ICASSP 2022;
    the DCASE 2022+ task 4 baseline's ``filt_aug``). The mel axis is cut into random bands
    (per example), and each gets a random gain in dB.

    Parameters
    ----------
    features : Tensor
        ``(batch, frames, n_mels)`` natural-log mel power.
    **options
        The keywords of :func:`filter_gains` (besides ``batch`` and ``n_mels``):
    db_range : (float, float)
        Gains are uniform in this range, in dB of power; they are added as
        ``gain_db * ln(10) / 10``. The baseline filters mel *amplitudes* (``10 ** (g/20)``);
        on our power features the same dB mean the same change of level.
    n_bands : (int, int)
        Number of bands, uniform in ``[low, high)`` as the baseline's ``torch.randint``:
        the default ``(3, 6)`` gives 3, 4 or 5 bands.
    min_bandwidth : int
        Smallest band, in mel bins; shrunk when the bands would not fit otherwise.
    filter_type : "linear" or "step"
        "step": one gain per band. "linear": one gain per band edge, linearly interpolated
        across each band (the baseline's default).
    generator : torch.Generator, optional
        Source of every random draw.

    Returns
    -------
    Tensor
        ``(batch, frames, n_mels)``: ``features + gain[:, None, :]``, the same gain curve on
        every frame of an example.
    """
    _check_features(features, "filter_augment")
    batch, _, n_mels = features.shape
    gains_db = filter_gains(batch, n_mels, **options)
    return features + (gains_db * NEPERS_PER_POWER_DB).to(features)[:, None, :]


def frequency_mask(
    features: Tensor, *, max_width: int = 8, num_masks: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """SpecAugment frequency masking: hide random mel bands so no single band is relied on.

    Each mask has a width uniform in ``[0, max_width]`` mel bins and a start uniform over the
    positions where it fits (Park et al., 2019). Masked bins are set to the example's mean
    log-mel value rather than 0: in the log domain 0 is a loud, arbitrary level, while the
    mean is what a normalised model reads as "nothing special".

    Parameters
    ----------
    features : Tensor
        ``(batch, frames, n_mels)`` log-mel features.
    max_width : int
        Widest mask, in mel bins (``0 <= max_width <= n_mels``).
    num_masks : int
        Masks per example; they may overlap.
    generator : torch.Generator, optional
        Source of every random draw.

    Returns
    -------
    Tensor
        ``(batch, frames, n_mels)``, masked bins equal to the per-example mean of ``features``.
    """
    _check_features(features, "frequency_mask")
    batch, _, n_mels = features.shape
    if not 0 <= max_width <= n_mels:
        raise ValueError(f"frequency_mask: max_width must be in [0, n_mels={n_mels}], got {max_width}.")
    if num_masks < 0:
        raise ValueError(f"frequency_mask: num_masks must be >= 0, got {num_masks}.")
    widths = integers(0, max_width + 1, (batch, num_masks), generator=generator)
    starts = integers(0, n_mels - widths + 1, (batch, num_masks), generator=generator)
    bins = torch.arange(n_mels, device=widths.device)
    inside = (bins >= starts[..., None]) & (bins < (starts + widths)[..., None])  # (batch, masks, n_mels)
    masked = inside.any(dim=1).to(features.device)
    mean = features.mean(dim=(1, 2), keepdim=True)
    return torch.where(masked[:, None, :], mean, features)


def time_mask(
    features: Tensor, *, max_width: int, num_masks: int = 1, generator: torch.Generator | None = None
) -> Tensor:
    """SpecAugment time masking: hide random stretches of frames so that no single moment
    (an onset, a transient) is relied on; the targets are kept, as in SpecAugment.

    Each mask has a width uniform in ``[0, max_width]`` frames and a start uniform over the
    positions where it fits; masked frames take the example's mean log-mel value (see
    :func:`frequency_mask`).

    Parameters
    ----------
    features : Tensor
        ``(batch, frames, n_mels)`` log-mel features.
    max_width : int
        Widest mask, in spectrogram frames (``0 <= max_width <= frames``).
    num_masks : int
        Masks per example; they may overlap.
    generator : torch.Generator, optional
        Source of every random draw.
    """
    _check_features(features, "time_mask")
    batch, frames, _ = features.shape
    if not 0 <= max_width <= frames:
        raise ValueError(f"time_mask: max_width must be in [0, frames={frames}], got {max_width}.")
    if num_masks < 0:
        raise ValueError(f"time_mask: num_masks must be >= 0, got {num_masks}.")
    widths = integers(0, max_width + 1, (batch, num_masks), generator=generator)
    starts = integers(0, frames - widths + 1, (batch, num_masks), generator=generator)
    positions = torch.arange(frames, device=widths.device)
    inside = (positions >= starts[..., None]) & (positions < (starts + widths)[..., None])  # (batch, masks, frames)
    masked = inside.any(dim=1).to(features.device)
    mean = features.mean(dim=(1, 2), keepdim=True)
    return torch.where(masked[:, :, None], mean, features)


def roll_frames(features: Tensor, shifts: Tensor) -> Tensor:
    """Roll each example of ``(batch, frames, ...)`` by its own ``shifts[b]`` frames (``torch.roll``'s sign)."""
    frames = features.shape[1]
    index = (torch.arange(frames, device=features.device)[None, :] - shifts.to(features.device)[:, None]) % frames
    index = index.reshape(index.shape + (1,) * (features.ndim - 2)).expand(features.shape)
    return features.gather(1, index)


def time_shift(
    features: Tensor,
    frame_targets: Tensor | None = None,
    *,
    max_shift: float = 0.1,
    pooling: int,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Roll each example in time, and its frame targets with it, so that labels stay exact.

    Events are not tied to a position in the chunk; a random circular shift teaches that
    (the DCASE baseline's ``frame_shift``). The baseline draws a Gaussian shift in feature
    frames and rounds it for the labels, which can misplace a label by a frame; here the
    shift is ``k * pooling`` feature frames and ``k`` output frames, ``k`` uniform in
    ``[-K, K]`` with ``K = floor(max_shift * frames / pooling)``, so both move together.

    Only the first ``output_frames * pooling`` feature frames are rolled: those are what
    the model's pooling turns into output frames; the ``frames % pooling`` after them are
    dropped by the pooling, and are left in place so the wrap-around stays aligned.

    Parameters
    ----------
    features : Tensor
        ``(batch, frames, n_mels)`` features.
    frame_targets : Tensor, optional
        ``(batch, output_frames, classes)`` targets, ``output_frames == frames // pooling``.
    max_shift : float
        Largest shift, as a fraction of the frames (in ``[0, 1]``).
    pooling : int
        Feature frames per output frame (the model's total time pooling).
    generator : torch.Generator, optional
        Source of every random draw.

    Returns
    -------
    (Tensor, Tensor or None)
        Shifted features and targets (``None`` when none were given).
    """
    _check_features(features, "time_shift")
    batch, frames, _ = features.shape
    if pooling < 1:
        raise ValueError(f"time_shift: pooling must be >= 1, got {pooling}.")
    if not 0.0 <= max_shift <= 1.0:
        raise ValueError(f"time_shift: max_shift is a fraction of the frames, in [0, 1]; got {max_shift}.")
    output_frames = frames // pooling
    if frame_targets is not None:
        if frame_targets.ndim != 3 or frame_targets.shape[0] != batch or frame_targets.shape[1] != output_frames:
            raise ValueError(
                f"time_shift: frame_targets must be (batch={batch}, frames // pooling={output_frames}, classes), "
                f"got {tuple(frame_targets.shape)}."
            )
    largest = min(int(max_shift * frames / pooling), output_frames)
    steps = integers(-largest, largest + 1, (batch,), generator=generator)
    used = output_frames * pooling
    shifted = torch.cat([roll_frames(features[:, :used], steps * pooling), features[:, used:]], dim=1)
    if frame_targets is None:
        return shifted, None
    return shifted, roll_frames(frame_targets, steps)
