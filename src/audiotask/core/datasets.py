"""torch datasets that hand sample production over to the task's hooks."""

from __future__ import annotations

import inspect

import torch
from torch.utils.data import Dataset, IterableDataset


class TrainDataset(IterableDataset):
    """Endless training samples from ``task.train__iter__``; an epoch is ``task.train__len__``."""

    def __init__(self, task):
        self.task = task

    def __iter__(self):
        return self.task.train__iter__()

    def __len__(self) -> int:
        return self.task.train__len__()


class ValDataset(Dataset):
    """Fixed validation samples from ``task.val__getitem__`` / ``task.val__len__``."""

    def __init__(self, task):
        self.task = task

    def __getitem__(self, index: int):
        return self.task.val__getitem__(index)

    def __len__(self) -> int:
        return self.task.val__len__()


def as_tensor(value) -> torch.Tensor:
    """A waveform may come as a tensor, an array, or the ``(waveform, sample_rate)`` pair of ``Audio.crop``."""
    if isinstance(value, tuple) and len(value) == 2 and not isinstance(value[1], torch.Tensor):
        value = value[0]
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(value)


def collate_samples(samples: list[dict]) -> dict[str, torch.Tensor]:
    """Stack a list of ``{"X", "y", ...}`` samples into a batch, key by key."""
    keys = samples[0].keys()
    return {key: torch.stack([as_tensor(sample[key]) for sample in samples]) for key in keys}


def accepts_keyword(function, name: str) -> bool:
    """Whether ``function`` (or its ``forward``, for modules) takes a ``name`` argument."""
    target = getattr(function, "forward", function)
    try:
        return name in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def apply_augmentation(augmentation, waveforms: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Apply a callable on (batch, channels, samples) waveforms.

    Accepts the torch-audiomentations calling convention (``samples=``, ``sample_rate=``,
    returning a tensor or an object with ``.samples``) and plain ``f(waveforms)`` callables.
    """
    if accepts_keyword(augmentation, "samples"):
        augmented = augmentation(samples=waveforms, sample_rate=sample_rate)
    else:
        augmented = augmentation(waveforms)
    augmented = getattr(augmented, "samples", augmented)
    if not isinstance(augmented, torch.Tensor) or augmented.shape != waveforms.shape:
        raise ValueError(
            f"augmentation must return waveforms of shape {tuple(waveforms.shape)}, got "
            f"{getattr(augmented, 'shape', type(augmented))}."
        )
    return augmented
