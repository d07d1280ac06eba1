"""Whole batches as dataset items: the sampler hands over a batch's chunks, the task builds
the batch in one go, and the DataLoader (``batch_size=None``) hands it on as it is.

Building sample by sample and stacking costs a copy of every waveform, plus a Python call
per chunk; a batch built at once writes each chunk straight into its row of one buffer and
computes its targets in a few vectorised calls.
"""

from __future__ import annotations

import math
import multiprocessing
from typing import Optional, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from audiotask.utils.random import distributed_rank, distributed_world_size, inherit_rank



def new_batch_buffer(shape: Sequence[int], dtype=np.float32) -> np.ndarray:
    """Uninitialised array of ``shape`` for a batch to be written into.

    numpy's allocation reuses freed heap memory; ``torch.empty`` of ~10 MB maps fresh pages
    every time, and faulting them in costs more than decoding the batch.
    """
    return np.empty(tuple(int(size) for size in shape), dtype=dtype)


class TrainBatches(IterableDataset):
    """Endless training batches from ``task.train_batches()``.

    An epoch is one pass over the data whatever the number of ranks: of the task's
    ``train__len__() // batch_size`` batches, each of N ranks trains 1/N (rounded up),
    drawn from its own stream (the samplers are keyed by rank).

    The loader says which epoch it starts with :meth:`set_epoch`, before iterating. The
    epoch lives in memory shared with the dataloader workers: a persistent worker, started
    (forked or spawned) once for the whole run, begins every epoch's stream anew and must
    learn that epoch; a copy made when it started would stay at the first.
    """

    def __init__(self, task):
        self.task = task
        #: (epoch, rank) of the training process, when pickled for a dataloader worker
        self.parent: Optional[tuple[int, int]] = None
        #: the epoch set by the loader (-1: none, the trainer's is used)
        self._epoch = multiprocessing.RawValue("q", -1)

    def set_epoch(self, epoch: int) -> None:
        """Make the streams begun from now on, here and in the workers, those of ``epoch``."""
        self._epoch.value = int(epoch)

    def __getstate__(self):
        # a worker started by spawn or forkserver has no trainer (Lightning does not pickle
        # it) and no process group: it gets the epoch and rank it draws for from here
        model = self.task.model
        return {**self.__dict__, "parent": (0 if model is None else int(model.current_epoch), distributed_rank())}

    def __iter__(self):
        # read when the stream begins, i.e. at each epoch's start in a persistent worker
        epoch = None if self._epoch.value < 0 else int(self._epoch.value)
        if self.parent is None:  # the training process, or a worker forked from it
            return self.task.train_batches(epoch=epoch)
        parent_epoch, rank = self.parent
        inherit_rank(rank)
        return self.task.train_batches(epoch=parent_epoch if epoch is None else epoch)

    def __len__(self) -> int:
        batches = self.task.train__len__() // self.task.batch_size
        return max(1, math.ceil(batches / distributed_world_size()))


class ValidationBatches(Dataset):
    """Fixed validation batches: item ``i`` is rows ``[i * batch_size, (i + 1) * batch_size)``
    of ``chunks`` ((chunks, 2) [file, start] of the development subset), built at once."""

    def __init__(self, task, chunks: np.ndarray):
        self.task, self.chunks = task, np.asarray(chunks).reshape(-1, 2)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        first = index * self.task.batch_size
        rows = self.chunks[first : first + self.task.batch_size]
        if not len(rows):
            raise IndexError(index)
        batch = self.task.make_batch("development", rows[:, 0].astype(np.int64), rows[:, 1], self.task.duration)
        batch = self.task.extend_validation_batch(batch, np.arange(first, first + len(rows)))
        if getattr(self.task, "validation_indices", False):
            # which chunks these are: under DDP each rank validates a share of the batches
            batch["index"] = torch.arange(first, first + len(rows))
        return batch

    def __len__(self) -> int:
        return math.ceil(len(self.chunks) / self.task.batch_size)
