"""Fixed validation chunks: consecutive ``duration``-long chunks laid over regions.

A task validates on the same chunks at every validation: those that tile each region of the
development files from its start (the annotated regions by default; a speaker embedding
task's single-speaker stretches). Chunks are the rows ``[file, start]`` that the validation
batches read (see ``engine.batches.ValidationBatches``).
"""

from __future__ import annotations

from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from audiotask.core.frames import whole_steps


def consecutive_chunks(files: np.ndarray, starts: np.ndarray, ends: np.ndarray, duration: float, *,
                       at_least_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """``((chunks, 2) [file, start], (chunks,) region of each)``: the whole ``duration``-long
    chunks from the start of each region ``[starts[i], ends[i])`` of file ``files[i]``.

    With ``at_least_one``, a region shorter than ``duration`` still gives one chunk (it then
    runs past the region's end, which the batch builder zeroes); otherwise it gives none.
    """
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    counts = whole_steps(ends - starts, duration).reshape(-1)
    if at_least_one:
        counts = np.maximum(counts, 1)
    region = np.repeat(np.arange(len(counts)), counts)
    # index of each chunk within its region: 0, 1, ... restarting at every region
    rank = np.arange(len(region)) - np.repeat(np.cumsum(counts) - counts, counts)
    chunks = np.stack([np.asarray(files, dtype=np.float64)[region], starts[region] + rank * duration], axis=1)
    return chunks.reshape(-1, 2), region


def summed_over_ranks(rows: Mapping[int, object], count: int, row_shape: Sequence[int], *,
                      reduce: Optional[Callable] = None, device=None):
    """``((count, *row_shape) table, (count,) seen)``: each validation chunk's row (``rows``:
    chunk index -> array or tensor, this process's share), summed over the processes training
    together by ``reduce`` (a strategy's ``reduce(tensor, reduce_op="sum")``; None: one process),
    with how many of them scored it. ``table[seen > 0] / seen[seen > 0]`` is every chunk's row,
    as one process scoring the whole development set has it (a chunk of two shares, padding a
    distributed split, counts once)."""
    import torch

    table = torch.zeros(count, *row_shape, device=device)
    seen = torch.zeros(count, device=device)
    for index, row in rows.items():
        table[index] = torch.as_tensor(row, device=device).float()
        seen[index] = 1.0
    if reduce is not None:
        table, seen = reduce(table, reduce_op="sum"), reduce(seen, reduce_op="sum")
    return table, seen
