"""A task's endless stream of training batches: its sampler, then whole batches from it.

The sampler of one stream is a pure function of (seed, rank, worker, epoch) and of the
task's sampling (``engine/sampling.py``): with ``kind_proportions``, a
:class:`~audiotask.engine.samplers.MixedSampler` uniting one stream per label kind in those
proportions. The batches resume where a saved run stopped (``engine/resume.py``).
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import numpy as np

from audiotask.engine.resume import resumed_stream
from audiotask.engine.samplers import Chunks, MixedSampler, Sampler, split_batch
from audiotask.engine.sampling import sampling_entry
from audiotask.utils.random import distributed_rank, global_seed, worker_identity

#: an ``engine.annotated_task.AnnotatedTask`` (not imported: it imports this module)
AnnotatedTask = Any


def batch_kinds(task: AnnotatedTask) -> Optional[list[tuple[str, float]]]:
    """``[(label kind, share)]`` of the kinds each batch of ``task`` unites, among those its
    training set has; None when batches are drawn from all usable files alike."""
    if not task.kind_proportions:
        return None
    present = set(task.metadata.subsets["train"].attribute("label_kind").tolist())
    kinds = [(kind, float(share)) for kind, share in task.kind_proportions.items()
             if kind in task.label_kinds and kind in present and share > 0]
    return kinds if len(kinds) > 1 else None


def stream_sampler(task: AnnotatedTask, key: dict, usable: np.ndarray) -> Sampler:
    """The task's ``sampling`` stream ``key`` over the training files where ``usable`` is True."""
    if not usable.any():
        raise ValueError(f"{type(task).__name__}: no training file to draw chunks from.")
    return sampling_entry(task.sampling, type(task).__name__).build(task, key, usable)


def training_sampler(task: AnnotatedTask, epoch: int = 0, rank: Optional[int] = None,
                     worker: Optional[int] = None) -> Sampler:
    """The training sampler of this seed, rank (default: the process's), worker (default:
    this dataloader worker's) and epoch."""
    key = dict(
        batch_size=task.sampled_rows(), seed=global_seed(), epoch=epoch,
        rank=distributed_rank() if rank is None else rank, worker=worker_identity()[0] if worker is None else worker,
    )
    kinds = batch_kinds(task)
    if kinds is None:
        return stream_sampler(task, key, task.usable_files("train"))
    label_kind = task.metadata.subsets["train"].attribute("label_kind")
    counts = split_batch(key["batch_size"], [share for _, share in kinds])
    parts = [
        # each part its own stream: the seed is the run's, set apart by the part
        stream_sampler(task, {**key, "batch_size": count, "seed": key["seed"] * 8 + 1 + part}, label_kind == kind)
        for part, ((kind, _), count) in enumerate(zip(kinds, counts))
    ]
    return MixedSampler(parts, counts, **{k: v for k, v in key.items() if k != "batch_size"})


def training_batches(task: AnnotatedTask, epoch: int) -> Iterator[dict]:
    """Endless whole training batches of this worker's stream at ``epoch``, resumed where the
    task's ``resume_state`` says a saved run stopped. Of each batch, the sampler draws
    ``task.sampled_rows()`` chunks; ``task.extend_batch`` adds the rest."""
    worker, num_workers = worker_identity()
    stream, position = resumed_stream(
        task.resume_state, epoch=epoch, worker=worker, num_workers=num_workers, batch_size=task.batch_size
    )
    sampler = task.make_sampler(epoch, worker=stream)
    rows = sampler.batch_size
    sampler.position = position // task.batch_size * rows + position % task.batch_size
    while True:
        index = sampler.position // rows
        # up to the end of the batch the sampler is in: its chunks share one duration
        chunks: Chunks = sampler.take(rows - sampler.position % rows)
        batch = task.make_batch("train", chunks.files, chunks.starts, float(chunks.durations[0]), chunks.labels)
        yield task.extend_batch(batch, key=(global_seed(), distributed_rank(), stream, epoch, index))
