"""Training batches assembled in place: one buffer per batch, whose rows are the samples.

Stacking samples costs a copy of every waveform, and a dataloader worker then copies the
batch once more into shared memory to hand it to the main process: two copies of ~10 MB
per batch of 32 five-second chunks, as much as decoding them. Instead, a task writes each
chunk straight into its row of a batch buffer (allocated in shared memory inside a worker)
and yields the rows as samples; :func:`stacked_rows` recognises a full, ordered set of rows
of one buffer and returns the buffer itself. Anything else is stacked as before.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np
import torch


def new_batch_buffer(shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    """Uninitialised tensor of ``shape``; in shared memory inside a dataloader worker.

    A worker's batch then reaches the main process as a file descriptor, not a copy.
    """
    shape = tuple(int(size) for size in shape)
    if torch.utils.data.get_worker_info() is None:
        # numpy's allocation reuses freed heap memory; torch.empty of ~10 MB maps fresh pages
        # every time, and faulting them in costs more than decoding the batch
        return torch.from_numpy(np.empty(shape, dtype=torch.empty(0, dtype=dtype).numpy().dtype))
    storage = torch.UntypedStorage._new_shared(math.prod(shape) * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def stacked_rows(tensors: Sequence[torch.Tensor]) -> Optional[torch.Tensor]:
    """``torch.stack(tensors)`` without a copy when the tensors are, in order, all the rows
    of one contiguous buffer (as :func:`new_batch_buffer` rows are yielded); else None."""
    first = tensors[0]
    if not isinstance(first, torch.Tensor) or not first.is_contiguous():
        return None
    storage, size = first.untyped_storage(), first.numel()
    if storage.nbytes() != len(tensors) * size * first.element_size():
        return None
    address = storage.data_ptr()
    for index, tensor in enumerate(tensors):
        if not (
            isinstance(tensor, torch.Tensor)
            and tensor.untyped_storage().data_ptr() == address
            and tensor.storage_offset() == index * size
            and tensor.dtype == first.dtype
            and tensor.shape == first.shape
            and tensor.is_contiguous()
        ):
            return None
    return first.new_empty(0).set_(storage, 0, (len(tensors), *first.shape))


def collate_rows(samples: Sequence[dict]) -> Optional[dict[str, torch.Tensor]]:
    """The batch of ``samples`` (dicts of tensors) when every key is a full set of rows of
    one buffer, without a copy; else None (the caller stacks)."""
    batch = {}
    for key in samples[0]:
        if any(key not in sample for sample in samples):
            return None
        stacked = stacked_rows([sample[key] for sample in samples])
        if stacked is None:
            return None
        batch[key] = stacked
    return batch
