"""Which chunks to train on: seeded, resumable samplers of (file, start, duration).

Kept apart from tensor building (readers, target builders) so that they can be tested,
checkpointed and swapped alone. Every sampler draws in fixed-size blocks, each block (or
each batch, or each pass over the files) from its own generator keyed by
(seed, rank, worker, epoch, index): resuming at any position costs one block, and two
workers or ranks never share a stream.

- :class:`ChunkSampler`: chunks anywhere inside annotated regions, weighted by duration.
- :class:`ClipSampler`: clip datasets, every file once per pass, cropped or zero-padded.
- :class:`BalancedSampler`: batches of N distinct labels x M chunks (metric learning,
  rare classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, NamedTuple, Optional, Sequence

import numpy as np

BLOCK = 1024


@dataclass(frozen=True)
class Chunk:
    """A training chunk: ``duration`` seconds of file ``file`` from ``start``.

    ``label`` is the label the chunk was drawn for, -1 when the sampler does not draw by label.
    """

    file: int
    start: float
    duration: float
    label: int = -1


class Chunks(NamedTuple):
    """Many chunks as parallel ``(chunks,)`` arrays: what :meth:`Sampler.take` returns."""

    files: np.ndarray  # int64, file index
    starts: np.ndarray  # float64, seconds
    durations: np.ndarray  # float64, seconds
    labels: np.ndarray  # int64, the label drawn for; -1 when not drawing by label


def _unlabelled(files: np.ndarray, starts: np.ndarray, durations: np.ndarray) -> Chunks:
    return Chunks(files.astype(np.int64), starts, durations, np.full(len(files), -1, dtype=np.int64))


def _generator(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _blocks_of_batches(batch_size: int) -> int:
    """A block size near :data:`BLOCK` holding whole batches, so a batch is one slice of one block."""
    return batch_size * max(1, BLOCK // batch_size)


class Sampler:
    """Base of the seeded, resumable, endless chunk streams.

    A subclass implements only :meth:`_block` (its ``block_size`` chunks at a block index);
    this class keeps the stream's key and position, slices and caches the blocks.

    Parameters
    ----------
    batch_size : int
        Chunks per training batch, for samplers whose draws are shaped by batch.
    seed, rank, worker, epoch : int
        What makes this stream distinct.
    """

    block_size: int = BLOCK

    def __init__(self, *, batch_size: int = 1, seed: int = 0, rank: int = 0, worker: int = 0, epoch: int = 0):
        if batch_size < 1:
            raise ValueError(f"{type(self).__name__}: batch_size must be at least 1, got {batch_size}.")
        self.batch_size = int(batch_size)
        self.key = (int(seed), int(rank), int(worker))
        self.epoch = int(epoch)
        self.position = 0  # chunks drawn in this epoch
        self._cache_key: Optional[tuple] = None  # the last block drawn, reused by the next batch
        self._cache: Optional[Chunks] = None

    # ---- resumable state ---------------------------------------------------------
    def state_dict(self) -> dict:
        """Where the stream is: enough to resume on exactly the chunks that would follow."""
        seed, rank, worker = self.key
        return {"kind": type(self).__name__, "seed": seed, "rank": rank, "worker": worker, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        """Continue the stream described by ``state`` (from :meth:`state_dict`)."""
        # states saved before "kind" existed came from ChunkSampler, the only sampler then
        kind = state.get("kind", type(self).__name__)
        if kind != type(self).__name__:
            raise ValueError(f"{type(self).__name__} cannot resume the state of a {kind}.")
        self.key = (int(state["seed"]), int(state["rank"]), int(state["worker"]))
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def set_epoch(self, epoch: int) -> None:
        """Start the stream of ``epoch`` from its beginning."""
        self.epoch, self.position = int(epoch), 0

    # ---- drawing -------------------------------------------------------------------
    def _block(self, index: int) -> Chunks:
        """The ``block_size`` chunks of block ``index``, vectorised."""
        raise NotImplementedError

    def _cached_block(self, index: int) -> Chunks:
        # keyed on everything that defines the stream, as load_state_dict/set_epoch change it
        key = (*self.key, self.epoch, index)
        if self._cache_key != key:
            self._cache_key, self._cache = key, self._block(index)
        return self._cache

    def take(self, count: int) -> Chunks:
        """The next ``count`` chunks as arrays.

        The same chunks as ``count`` steps of iteration, and the position advances alike;
        a batch costs a few slices instead of one Python object per chunk.
        """
        parts = []
        while count > 0:
            block, offset = divmod(self.position, self.block_size)
            size = min(count, self.block_size - offset)
            parts.append([column[offset : offset + size] for column in self._cached_block(block)])
            self.position += size
            count -= size
        if not parts:
            return Chunks(np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64))
        return Chunks(*(np.concatenate(column) for column in zip(*parts)))

    def __iter__(self) -> Iterator[Chunk]:
        while True:
            block, offset = divmod(self.position, self.block_size)
            files, starts, durations, labels = self._cached_block(block)
            for i in range(offset, self.block_size):
                self.position += 1
                yield Chunk(int(files[i]), float(starts[i]), float(durations[i]), int(labels[i]))


# ---- chunks inside annotated regions ---------------------------------------------------
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


class ChunkSampler(Sampler):
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
        super().__init__(batch_size=batch_size, seed=seed, rank=rank, worker=worker, epoch=epoch)
        self.regions = np.asarray(regions, dtype=np.float64).reshape(-1, 2)
        self.region_file = np.asarray(region_file, dtype=np.int64)
        self.duration = float(duration)
        self.min_duration = self.duration if min_duration is None else float(min_duration)
        self.cdf = np.cumsum(region_weights(self.regions, self.region_file, groups))

    def _block(self, index: int) -> Chunks:
        # BLOCK, not self.block_size: the draws must stay those of checkpoints already saved
        rng = _generator(*self.key, self.epoch, index)
        region = np.minimum(np.searchsorted(self.cdf, rng.random(BLOCK) * self.cdf[-1], side="right"), len(self.cdf) - 1)
        durations = self._durations(index)
        region_start, region_end = self.regions[region, 0], self.regions[region, 1]
        # a chunk longer than its region starts at the region's start (and is zero-padded)
        latest = np.maximum(region_start, region_end - durations)
        starts = region_start + rng.random(BLOCK) * (latest - region_start)
        return _unlabelled(self.region_file[region], starts, durations)

    def _durations(self, index: int) -> np.ndarray:
        if self.min_duration >= self.duration:
            return np.full(BLOCK, self.duration)
        # one duration per batch: positions are global, so batches straddle blocks consistently
        positions = index * BLOCK + np.arange(BLOCK)
        batch = positions // self.batch_size
        per_batch = np.array([_generator(*self.key, self.epoch, 1 << 30, b).uniform(self.min_duration, self.duration) for b in np.unique(batch)])
        return per_batch[batch - batch[0]]


# ---- clip datasets ---------------------------------------------------------------------
class ClipSampler(Sampler):
    """Endless stream of one chunk per file, every file once per pass, in a new order each pass.

    A file no longer than ``duration`` gives start 0 (the engine zero-pads it); a longer one
    gives a random crop, its start uniform in ``[0, file_duration - duration]``.

    Parameters
    ----------
    file_durations : (files,) float array
        Duration of each file, in seconds.
    duration : float
        Chunk duration, in seconds.
    batch_size : int
        Chunks per batch: blocks hold whole batches, so a batch is sliced from one block.
    file_ids : (files,) int array, optional
        File index given for each of ``file_durations`` (default: its position), e.g. the
        indices, in their subset, of the files a task can use.
    seed, rank, worker, epoch : int
        What makes this stream distinct.
    """

    def __init__(
        self,
        file_durations: np.ndarray,
        duration: float,
        *,
        batch_size: int = 1,
        file_ids: Optional[np.ndarray] = None,
        seed: int = 0,
        rank: int = 0,
        worker: int = 0,
        epoch: int = 0,
    ):
        super().__init__(batch_size=batch_size, seed=seed, rank=rank, worker=worker, epoch=epoch)
        self.file_durations = np.asarray(file_durations, dtype=np.float64).reshape(-1)
        if len(self.file_durations) == 0:
            raise ValueError("ClipSampler: there are no files to draw from.")
        positions = np.arange(len(self.file_durations))
        self.file_ids = positions if file_ids is None else np.asarray(file_ids, dtype=np.int64).reshape(-1)
        if len(self.file_ids) != len(self.file_durations):
            raise ValueError(f"ClipSampler: {len(self.file_ids)} file ids for {len(self.file_durations)} files.")
        self.duration = float(duration)
        self.block_size = _blocks_of_batches(self.batch_size)
        self._passes: dict = {}  # the passes the last block used: a pass spans many blocks

    def _pass(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(order of the files, crop fraction of each file) of pass ``index``."""
        key = (*self.key, self.epoch, index)
        if key not in self._passes:
            # the pass's own generator: a block needs no other pass to know its files
            rng = _generator(*key)
            self._passes[key] = rng.permutation(len(self.file_durations)), rng.random(len(self.file_durations))
        return self._passes[key]

    def _block(self, index: int) -> Chunks:
        positions = index * self.block_size + np.arange(self.block_size)
        passes, slots = np.divmod(positions, len(self.file_durations))
        used = np.unique(passes)
        drawn = [self._pass(p) for p in used]
        self._passes = {(*self.key, self.epoch, p): pair for p, pair in zip(used, drawn)}
        order = np.stack([pair[0] for pair in drawn])
        fraction = np.stack([pair[1] for pair in drawn])
        row = passes - used[0]
        files = order[row, slots]
        # the crop fraction belongs to the (pass, file), not to the slot it lands in
        starts = fraction[row, files] * np.maximum(self.file_durations[files] - self.duration, 0.0)
        return _unlabelled(self.file_ids[files], starts, np.full(self.block_size, self.duration))


# ---- balanced batches of labels --------------------------------------------------------
class BalancedSampler(Sampler):
    """Endless stream of batches of N distinct labels x M chunks of each label.

    Each batch draws ``labels_per_batch`` distinct labels uniformly among those with
    annotated segments, then for each label ``chunks_per_label`` chunks: a segment of that
    label with probability proportional to its length, a point ``t`` uniform inside it, and
    the chunk start ``t - duration / 2`` clipped into ``[lo, max(lo, hi - duration)]``, so the
    label is active at the chunk's centre whenever the bounds allow. A batch's chunks come
    label by label; the ``labels`` of :meth:`take` tell each chunk's label.

    Parameters
    ----------
    segment_files : (segments,) int array
        File index of each annotated segment.
    segment_starts, segment_ends : (segments,) float arrays
        Segment boundaries, in seconds. Segments of zero length are never drawn.
    segment_labels : (segments,) int array
        Label of each segment.
    segment_bounds : (segments, 2) float array
        ``[lo, hi)`` in seconds inside which a chunk drawn for the segment must lie
        (its annotated region).
    duration : float
        Chunk duration, in seconds.
    labels_per_batch : int
        N, distinct labels per batch.
    chunks_per_label : int
        M, chunks per label per batch.
    seed, rank, worker, epoch : int
        What makes this stream distinct.
    """

    def __init__(
        self,
        segment_files: np.ndarray,
        segment_starts: np.ndarray,
        segment_ends: np.ndarray,
        segment_labels: np.ndarray,
        segment_bounds: np.ndarray,
        duration: float,
        *,
        labels_per_batch: int,
        chunks_per_label: int,
        seed: int = 0,
        rank: int = 0,
        worker: int = 0,
        epoch: int = 0,
    ):
        if labels_per_batch < 1 or chunks_per_label < 1:
            raise ValueError(f"BalancedSampler: labels_per_batch ({labels_per_batch}) and chunks_per_label ({chunks_per_label}) must be at least 1.")
        super().__init__(batch_size=labels_per_batch * chunks_per_label, seed=seed, rank=rank, worker=worker, epoch=epoch)
        self.labels_per_batch, self.chunks_per_label = int(labels_per_batch), int(chunks_per_label)
        self.duration = float(duration)
        self.block_size = _blocks_of_batches(self.batch_size)
        self._set_segments(segment_files, segment_starts, segment_ends, segment_labels, segment_bounds)

    def _set_segments(self, files, starts, ends, labels, bounds) -> None:
        files, starts, ends, labels = (np.asarray(a).reshape(-1) for a in (files, starts, ends, labels))
        bounds = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
        if not len(files) == len(starts) == len(ends) == len(labels) == len(bounds):
            raise ValueError(
                f"BalancedSampler: one row per segment expected, got {len(files)} files, {len(starts)} starts, "
                f"{len(ends)} ends, {len(labels)} labels and {len(bounds)} bounds."
            )
        lengths = ends.astype(np.float64) - starts
        # sorted by label, so that each label's segments are one contiguous run
        keep = np.flatnonzero(lengths > 0)
        keep = keep[np.argsort(labels[keep], kind="stable")]
        self.labels, first, counts = np.unique(labels[keep], return_index=True, return_counts=True)
        if len(self.labels) < self.labels_per_batch:
            raise ValueError(f"BalancedSampler: {self.labels_per_batch} labels per batch, but only {len(self.labels)} labels have segments.")
        self.files, self.starts, self.ends = files[keep].astype(np.int64), starts[keep].astype(np.float64), ends[keep].astype(np.float64)
        self.bounds, self.first, self.last = bounds[keep], first, first + counts - 1
        self.cdf = self._label_offset_cdf(lengths[keep], first, counts)

    @staticmethod
    def _label_offset_cdf(lengths: np.ndarray, first: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Label rank + the cumulative share of each segment within its label.

        One sorted array for all labels: drawing segment(s) of label rank ``g`` is a single
        ``searchsorted`` of ``g + u``, whatever the mix of labels in a block.
        """
        rank = np.repeat(np.arange(len(first)), counts)
        cumulative = np.cumsum(lengths)
        before = np.repeat(cumulative[first] - lengths[first], counts)
        total = np.repeat(cumulative[first + counts - 1], counts) - before
        share = (cumulative - before) / total
        # exactly 1 at each label's end, so rounding never leaks a draw into the next label
        share[first + counts - 1] = 1.0
        return rank + share

    def _batch_draws(self, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(label ranks (N,), segment uniforms (N, M), point uniforms (N, M)) of one batch."""
        # one generator per batch: resuming anywhere needs nothing drawn before the batch
        rng = _generator(*self.key, self.epoch, batch)
        ranks = rng.choice(len(self.labels), self.labels_per_batch, replace=False)
        shape = (self.labels_per_batch, self.chunks_per_label)
        return ranks, rng.random(shape), rng.random(shape)

    def _block(self, index: int) -> Chunks:
        batches = self.block_size // self.batch_size
        draws = [self._batch_draws(index * batches + b) for b in range(batches)]
        rank = np.concatenate([np.repeat(ranks, self.chunks_per_label) for ranks, _, _ in draws])
        pick = np.concatenate([u.reshape(-1) for _, u, _ in draws])
        point = np.concatenate([u.reshape(-1) for _, _, u in draws])
        segment = np.searchsorted(self.cdf, rank + pick, side="right")
        segment = np.clip(segment, self.first[rank], self.last[rank])
        start, end = self.starts[segment], self.ends[segment]
        centre = start + point * (end - start)
        lo, hi = self.bounds[segment, 0], self.bounds[segment, 1]
        starts = np.clip(centre - self.duration / 2, lo, np.maximum(lo, hi - self.duration))
        return Chunks(self.files[segment], starts, np.full(self.block_size, self.duration), self.labels[rank].astype(np.int64))


# ---- batches that unite several streams --------------------------------------------------
def split_batch(batch_size: int, proportions: Sequence[float]) -> list[int]:
    """Chunks of each part in a batch of ``batch_size``, in the ratio of ``proportions``.

    Largest remainders: ``split_batch(16, (1, 1, 2)) == [4, 4, 8]``; every part with a
    positive proportion gets at least one chunk (a part left out of every batch would
    silently teach nothing).
    """
    weights = np.asarray(proportions, dtype=np.float64)
    if len(weights) == 0 or (weights < 0).any() or not weights.sum() > 0:
        raise ValueError(f"split_batch: proportions must be non-negative and not all zero, got {list(proportions)}.")
    if batch_size < int((weights > 0).sum()):
        raise ValueError(f"split_batch: a batch of {batch_size} cannot hold one chunk of each of {int((weights > 0).sum())} parts.")
    exact = batch_size * weights / weights.sum()
    counts = np.floor(exact).astype(int)
    counts[(weights > 0) & (counts == 0)] = 1
    while counts.sum() > batch_size:  # the minimum of one took chunks from the largest parts
        counts[np.argmax(counts)] -= 1
    order = np.argsort(-(exact - counts), kind="stable")
    for part in order[: batch_size - counts.sum()]:
        counts[part] += 1
    return counts.tolist()


class MixedSampler(Sampler):
    """Endless stream of batches that each unite fixed numbers of chunks of several streams.

    Batch ``b`` holds ``counts[0]`` chunks of ``parts[0]`` (the chunks of its own batch
    ``b``), then ``counts[1]`` of ``parts[1]``, and so on: e.g. strongly labelled, weakly
    labelled and unlabelled files in DCASE's 1 : 1 : 2. Each part is read by position, so a
    batch depends only on its index: the stream resumes like any other.

    Parameters
    ----------
    parts : list of Sampler
        One stream per part, each keyed on its own (give each a distinct seed).
    counts : list of int
        Chunks of each part per batch (see :func:`split_batch`).
    seed, rank, worker, epoch : int
        What makes this stream distinct.
    """

    def __init__(self, parts: Sequence[Sampler], counts: Sequence[int], *, seed: int = 0, rank: int = 0,
                 worker: int = 0, epoch: int = 0):
        if len(parts) != len(counts) or not parts or min(counts) < 1:
            raise ValueError(f"MixedSampler: one positive count per part, got {len(parts)} parts and counts {list(counts)}.")
        super().__init__(batch_size=int(sum(counts)), seed=seed, rank=rank, worker=worker, epoch=epoch)
        self.parts, self.counts = list(parts), [int(c) for c in counts]
        self.block_size = _blocks_of_batches(self.batch_size)
        self.set_epoch(epoch)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for part in self.parts:
            part.set_epoch(epoch)

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for part in self.parts:
            part.epoch = self.epoch

    def _block(self, index: int) -> Chunks:
        batches = self.block_size // self.batch_size
        pieces = []
        for batch in range(index * batches, (index + 1) * batches):
            for part, count in zip(self.parts, self.counts):
                part.epoch, part.position = self.epoch, batch * count
                pieces.append(part.take(count))
        return Chunks(*(np.concatenate(column) for column in zip(*pieces)))
