"""Which chunks to train on: a seeded, resumable sampler of (file, start, duration).

Kept apart from tensor building (readers, target builders) so that it can be tested,
checkpointed and swapped alone. Draws come in fixed-size blocks, each from its own
generator keyed by (seed, rank, worker, epoch, block): resuming at any position costs one
block, and two workers or ranks never share a stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np

BLOCK = 1024


@dataclass(frozen=True)
class Chunk:
    """A training chunk: ``duration`` seconds of file ``file`` from ``start``."""

    file: int
    start: float
    duration: float


def region_weights(regions: np.ndarray, region_file: np.ndarray, groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Probability of drawing each annotated region.

    Proportional to its duration (so files weigh by annotated duration); with ``groups``
    (a group id per file, e.g. its database), every group first gets the same share.
    """
    weights = np.maximum(regions[:, 1] - regions[:, 0], 0.0)
    if groups is not None:
        region_group = np.asarray(groups)[region_file]
        _, group_index = np.unique(region_group, return_inverse=True)
        group_total = np.bincount(group_index, weights=weights)
        weights = weights / group_total[group_index]
    total = weights.sum()
    if not total > 0:
        raise ValueError("ChunkSampler: the annotated regions have a total duration of zero.")
    return weights / total


class ChunkSampler:
    """Endless stream of random training chunks inside annotated regions.

    Parameters
    ----------
    regions : (regions, 2) float array
        Annotated regions ``[start, end)`` in seconds, of all files.
    region_file : (regions,) int array
        File index of each region.
    duration : float
        Chunk duration, in seconds.
    min_duration : float, optional
        With it, each run of ``batch_size`` consecutive chunks shares one duration drawn
        uniformly in ``[min_duration, duration]`` (a batch must have equal lengths).
    batch_size : int
    groups : array, optional
        Group id per file, to balance the groups (see :func:`region_weights`).
    seed, rank, worker, epoch : int
        What makes this stream distinct.
    """

    def __init__(
        self,
        regions: np.ndarray,
        region_file: np.ndarray,
        duration: float,
        *,
        min_duration: Optional[float] = None,
        batch_size: int = 1,
        groups: Optional[Sequence] = None,
        seed: int = 0,
        rank: int = 0,
        worker: int = 0,
        epoch: int = 0,
    ):
        self.regions = np.asarray(regions, dtype=np.float64).reshape(-1, 2)
        self.region_file = np.asarray(region_file, dtype=np.int64)
        self.duration = float(duration)
        self.min_duration = self.duration if min_duration is None else float(min_duration)
        self.batch_size = int(batch_size)
        self.cdf = np.cumsum(region_weights(self.regions, self.region_file, groups))
        self.key = (int(seed), int(rank), int(worker))
        self.epoch = int(epoch)
        self.position = 0
        self._cache_key: Optional[tuple] = None  # the last block drawn, reused by the next batch
        self._cache: tuple = ()

    # ---- resumable state ---------------------------------------------------------
    def state_dict(self) -> dict:
        """Where the stream is: enough to resume on exactly the chunks that would follow."""
        return {"seed": self.key[0], "rank": self.key[1], "worker": self.key[2], "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.key = (int(state["seed"]), int(state["rank"]), int(state["worker"]))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def set_epoch(self, epoch: int) -> None:
        """Start the stream of ``epoch`` from its beginning."""
        self.epoch, self.position = int(epoch), 0

    # ---- drawing -------------------------------------------------------------------
    def _block(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(files, starts, durations) of block ``index``, vectorised."""
        rng = np.random.default_rng(np.random.SeedSequence([*self.key, self.epoch, index]))
        region = np.minimum(np.searchsorted(self.cdf, rng.random(BLOCK) * self.cdf[-1], side="right"), len(self.cdf) - 1)
        durations = self._durations(rng, index)
        region_start, region_end = self.regions[region, 0], self.regions[region, 1]
        # a chunk longer than its region starts at the region's start (and is zero-padded)
        latest = np.maximum(region_start, region_end - durations)
        starts = region_start + rng.random(BLOCK) * (latest - region_start)
        return self.region_file[region], starts, durations

    def _durations(self, rng: np.random.Generator, index: int) -> np.ndarray:
        if self.min_duration >= self.duration:
            return np.full(BLOCK, self.duration)
        # one duration per batch: positions are global, so batches straddle blocks consistently
        positions = index * BLOCK + np.arange(BLOCK)
        batch = positions // self.batch_size
        batch_rng = [np.random.default_rng(np.random.SeedSequence([*self.key, self.epoch, 1 << 30, b])) for b in np.unique(batch)]
        per_batch = np.array([r.uniform(self.min_duration, self.duration) for r in batch_rng])
        return per_batch[batch - batch[0]]

    def take(self, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The next ``count`` chunks as ``(files, starts, durations)`` arrays.

        The same chunks as ``count`` steps of iteration, and the position advances alike;
        a batch costs a few slices instead of one Python object per chunk.
        """
        parts = []
        while count > 0:
            block, offset = divmod(self.position, BLOCK)
            arrays = self._cached_block(block)
            size = min(count, BLOCK - offset)
            parts.append([array[offset : offset + size] for array in arrays])
            self.position += size
            count -= size
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
        files, starts, durations = (np.concatenate(column) for column in zip(*parts))
        return files, starts, durations

    def _cached_block(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # keyed on everything that defines the stream, as load_state_dict/set_epoch change it
        key = (*self.key, self.epoch, index)
        if self._cache_key != key:
            self._cache_key, self._cache = key, self._block(index)
        return self._cache

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            block, offset = divmod(self.position, BLOCK)
            files, starts, durations = self._cached_block(block)
            for i in range(offset, BLOCK):
                self.position += 1
                yield Chunk(int(files[i]), float(starts[i]), float(durations[i]))
