"""The table of training samplers that a task names by its ``sampling`` attribute.

An entry builds the sampler of one stream (a ``key`` of batch size, seed, epoch, rank and
worker) over the training files a mask marks usable, and says how many chunks make an
epoch. The engine's entries:

- ``"regions"``: chunks anywhere inside annotated regions, weighted by duration (and by the
  ``balance`` key's groups);
- ``"clips"``: every usable file once per pass, a random crop of a long one, a short one
  zero-padded (clip corpora);
- ``"balanced"``: batches of ``labels_per_batch`` classes x ``batch_size / labels_per_batch``
  chunks, each centred on a segment of its class.

A task that draws chunks its own way registers an entry under a name of its own
(:func:`register_sampling`) and names it, instead of overriding the engine (see
``tasks/speaker_embedding.py``: chunks within single-speaker stretches).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from audiotask.engine.samplers import BalancedSampler, ChunkSampler, ClipSampler, Sampler

#: the task of an entry: an ``engine.annotated_task.AnnotatedTask`` (not imported: it imports this table)
AnnotatedTask = Any
SamplerBuilder = Callable[[AnnotatedTask, dict, np.ndarray], Sampler]


@dataclass(frozen=True)
class Sampling:
    """One entry of :data:`SAMPLINGS`.

    Parameters
    ----------
    build : (task, key, usable) -> Sampler
        The sampler of stream ``key`` over the training files where ``usable`` is True.
    epoch_length : task -> int
        Chunks of one training epoch.
    by_label : bool
        Whether each batch groups ``task.labels_per_batch`` labels (the batch size must be a
        multiple of it).
    """

    build: SamplerBuilder
    epoch_length: Callable[[AnnotatedTask], int]
    by_label: bool = False


#: sampling name -> its entry; tasks add theirs with :func:`register_sampling`
SAMPLINGS: dict[str, Sampling] = {}


def register_sampling(name: str, *, epoch_length: Callable[[AnnotatedTask], int],
                      by_label: bool = False) -> Callable[[SamplerBuilder], SamplerBuilder]:
    """Decorator: register the decorated ``build(task, key, usable)`` as sampling ``name``."""

    def register(build: SamplerBuilder) -> SamplerBuilder:
        if name in SAMPLINGS and SAMPLINGS[name].build is not build:
            raise ValueError(f"sampling {name!r} is already registered (by {SAMPLINGS[name].build.__qualname__}).")
        SAMPLINGS[name] = Sampling(build, epoch_length, by_label)
        return build

    return register


def sampling_entry(name: str, owner: str) -> Sampling:
    """The entry registered as ``name``; ``owner`` (the task's name) is named in the error."""
    if name not in SAMPLINGS:
        raise ValueError(f"{owner}: sampling must be one of {tuple(SAMPLINGS)}, got {name!r}.")
    return SAMPLINGS[name]


def without_batch_size(key: dict) -> dict:
    """The stream key of a sampler whose batch size follows from other arguments."""
    return {k: v for k, v in key.items() if k != "batch_size"}


# ---- the engine's entries ----------------------------------------------------------------
def region_epoch_length(task: AnnotatedTask) -> int:
    regions, _ = task.training_regions()
    return task.default_train_len(float(np.sum(regions[:, 1] - regions[:, 0])))


@register_sampling("regions", epoch_length=region_epoch_length)
def region_sampler(task: AnnotatedTask, key: dict, usable: np.ndarray) -> Sampler:
    regions, region_file = task.training_regions(usable)
    return ChunkSampler(regions, region_file, task.duration, min_duration=task.min_duration,
                        groups=task.balance_groups(), **key)


@register_sampling("clips", epoch_length=lambda task: max(task.batch_size, int(task.usable_files("train").sum())))
def clip_sampler(task: AnnotatedTask, key: dict, usable: np.ndarray) -> Sampler:
    # the sampler draws among the usable files: it must give their indices in the subset
    durations = np.asarray(task.metadata.subsets["train"].duration)[usable]
    return ClipSampler(durations, task.duration, file_ids=np.flatnonzero(usable), **key)


@register_sampling("balanced", epoch_length=region_epoch_length, by_label=True)
def balanced_sampler(task: AnnotatedTask, key: dict, usable: np.ndarray) -> Sampler:
    train = task.metadata.subsets["train"]
    file_of = np.repeat(np.arange(len(train)), np.diff(train.segment_offsets))
    segment_class = task.label_class[np.asarray(train.segment_label)] if len(file_of) else file_of
    keep = (segment_class >= 0) & usable[file_of]
    starts, ends = np.asarray(train.segment_start)[keep], np.asarray(train.segment_end)[keep]
    # a chunk drawn for a segment stays inside the annotated region the segment is in
    bounds = np.stack(train.region_bounds(file_of[keep], starts), axis=1)
    return BalancedSampler(
        file_of[keep], starts, ends, segment_class[keep], bounds, task.duration,
        labels_per_batch=task.labels_per_batch, chunks_per_label=key["batch_size"] // task.labels_per_batch,
        **without_batch_size(key),
    )
