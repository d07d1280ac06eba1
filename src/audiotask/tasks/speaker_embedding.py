"""Speaker embedding: one vector per speech chunk, close for one speaker and far apart for two.

The protocol's annotation labels are speakers. Chunks are drawn only where one speaker
talks alone: the stretches of a file covered by exactly one speaker's turns (overlap with
anyone else removed) inside its annotated regions. Training batches hold N speakers x M
chunks (the engine's :class:`~audiotask.engine.samplers.BalancedSampler`); the loss is an
additive angular margin softmax over the training speakers, whose class centres train with
the model but are not part of it (``Model.add_training_head``): a saved model maps audio to
embeddings and nothing else. Validation scores trials between development chunks of
development speakers (distinct from the training ones) and keeps the checkpoint with the
lowest equal error rate.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.builders import ChunkSegments, TargetBuilder
from audiotask.engine.metadata import ProtocolMetadata, SubsetMetadata
from audiotask.engine.samplers import BalancedSampler
from audiotask.engine.sampling import register_sampling, without_batch_size
from audiotask.engine.validation_chunks import consecutive_chunks
from audiotask.metrics.verification import equal_error_rate
from audiotask.models.margin import AdditiveAngularMargin

#: name of the margin loss's class centres among the model's training heads
CLASSIFIER = "speaker_classifier"


# ---- where one speaker talks alone ---------------------------------------------------------
def single_speaker_regions(starts, ends, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(starts, ends, labels)`` of the longest stretches where exactly one label is active.

    Parameters
    ----------
    starts, ends : (segments,) float
        Turns of one file, in seconds, in any order; turns of one label may touch or
        overlap (they are united), turns of two labels overlap where both talk.
    labels : (segments,) int
        Speaker of each turn.

    A stretch ends wherever another speaker starts or its speaker stops; two stretches of
    one speaker separated by another's turn stay two.
    """
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    keep = ends > starts
    starts, ends, labels = starts[keep], ends[keep], labels[keep]
    bounds = np.unique(np.concatenate([starts, ends]))
    if len(bounds) < 2:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int64)
    speakers, speaker = np.unique(labels, return_inverse=True)
    # (speakers, elementary intervals) coverage from +1 / -1 at each turn's bounds: exact,
    # since every turn starts and ends on a bound
    change = np.zeros((len(speakers), len(bounds)), dtype=np.int64)
    np.add.at(change, (speaker, np.searchsorted(bounds, starts)), 1)
    np.add.at(change, (speaker, np.searchsorted(bounds, ends)), -1)
    active = np.cumsum(change, axis=1)[:, :-1] > 0
    alone = active.sum(axis=0) == 1
    who = np.where(alone, active.argmax(axis=0), -1)
    # a stretch begins where the speaker talking alone changes (or someone starts talking alone)
    begins = alone & np.concatenate([[True], who[1:] != who[:-1]])
    first = np.flatnonzero(begins)
    stretch = np.cumsum(begins) - 1
    last = np.zeros(len(first), dtype=np.int64)
    np.maximum.at(last, stretch[alone], np.flatnonzero(alone))
    return bounds[first], bounds[last + 1], speakers[who[first]]


def intersect_regions(regions: np.ndarray, limits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(pieces (k, 2), index (k,))``: the parts of ``regions`` (n, 2) inside ``limits``
    (m, 2, disjoint), and the region each part comes from."""
    regions, limits = np.asarray(regions).reshape(-1, 2), np.asarray(limits).reshape(-1, 2)
    lo = np.maximum(regions[:, None, 0], limits[None, :, 0])
    hi = np.minimum(regions[:, None, 1], limits[None, :, 1])
    region, limit = np.nonzero(hi > lo)
    return np.stack([lo[region, limit], hi[region, limit]], axis=1), region


@dataclass
class SpeakerRegions:
    """Single-speaker stretches of a subset's files, flat: (regions,) arrays, the label in
    the metadata's vocabulary (the speaker's name is ``metadata.labels[label]``)."""

    files: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    labels: np.ndarray

    @classmethod
    def of_subset(cls, subset: SubsetMetadata, files: np.ndarray) -> "SpeakerRegions":
        """The stretches of ``files`` (indices in ``subset``), inside their annotated regions."""
        rows = []
        for file in np.asarray(files, dtype=np.int64).tolist():
            first, last = subset.segment_offsets[file], subset.segment_offsets[file + 1]
            starts, ends, labels = single_speaker_regions(
                subset.segment_start[first:last], subset.segment_end[first:last], subset.segment_label[first:last]
            )
            # nobody's turn is known outside the annotated regions: no stretch runs past them
            pieces, index = intersect_regions(np.stack([starts, ends], axis=1), subset.regions_of(file))
            rows.append((np.full(len(index), file), pieces[:, 0], pieces[:, 1], labels[index]))
        if not rows:
            return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
        return cls(*(np.concatenate(column) for column in zip(*rows)))

    def at_least(self, duration: float) -> "SpeakerRegions":
        """The stretches that hold a whole chunk of ``duration`` seconds."""
        keep = self.ends - self.starts >= duration
        return SpeakerRegions(self.files[keep], self.starts[keep], self.ends[keep], self.labels[keep])


# ---- targets and trials --------------------------------------------------------------------
class SampledSpeaker(TargetBuilder):
    """``y`` (chunks,) int64: the training speaker each chunk was drawn for (-1 for chunks
    not drawn for one: validation chunks, whose speakers the task keeps itself)."""

    outputs = {"y": np.dtype(np.int64)}

    def __call__(self, segments: ChunkSegments) -> dict[str, np.ndarray]:
        if segments.sampled_labels is None:
            return {"y": np.full(segments.num_chunks, -1, dtype=np.int64)}
        return {"y": np.asarray(segments.sampled_labels, dtype=np.int64)}


def trial_pairs(count: int, max_trials: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(first, second)`` chunk indices of the trials among ``count`` chunks: every pair
    when there are at most ``max_trials``, else a fixed seeded sample of ``max_trials``."""
    if count * (count - 1) // 2 <= max_trials:
        return np.triu_indices(count, k=1)
    rng = np.random.default_rng(seed)
    first = rng.integers(0, count, max_trials)
    second = (first + rng.integers(1, count, max_trials)) % count  # never the chunk itself
    return first, second


def trial_scores(embeddings: torch.Tensor, speakers: np.ndarray, max_trials: int) -> tuple[np.ndarray, np.ndarray]:
    """``(cosine scores, is_target)`` of the trials between (chunks, dimension) embeddings."""
    first, second = trial_pairs(len(speakers), max_trials)
    unit = F.normalize(embeddings.float(), dim=1).cpu().numpy()
    scores = np.einsum("td,td->t", unit[first], unit[second])
    return scores, speakers[first] == speakers[second]


# ---- the task ------------------------------------------------------------------------------
#: speakers per batch unless the training speakers are fewer (see ``SpeakerEmbedding``)
DEFAULT_SPEAKERS_PER_BATCH = 8
#: chunk duration (seconds) unless fewer than two training speakers talk alone that long
DEFAULT_DURATION = 2.0
#: the shortest chunk the default duration goes down to (shorter speech says little of its
#: speaker; where even this leaves too few speakers, set-up stops and says why)
SHORTEST_FITTED_DURATION = 0.5


def dividing(batch_size: int, most: int) -> int:
    """The largest number of speakers per batch, at most ``most``, that divides ``batch_size``."""
    return max(n for n in range(1, max(1, most) + 1) if batch_size % n == 0)


class SpeakerEmbedding(AnnotatedTask):
    """Speaker embeddings trained with an additive angular margin softmax.

    Parameters
    ----------
    protocol : pyannote.database Protocol
        Speaker diarization style: annotation labels are speakers; training and development
        speakers may be distinct (they usually are).
    duration : float, optional
        Chunk duration, in seconds. Turns (single-speaker stretches) shorter than a chunk
        are never drawn: a chunk must hold one speaker only, and the engine's chunks of a
        batch share one duration (``min_duration`` is therefore refused). Default: 2 s, or,
        when fewer training speakers talk alone that long than a batch needs (two, or
        ``speakers_per_batch`` when given), the largest duration (in tenths of a second,
        down to 0.5 s) at which enough do (a warning says so).
    speakers_per_batch : int, optional
        N, training speakers per batch; ``batch_size / N`` chunks of each. Must divide
        ``batch_size``. Default: 8 (or the most below it that divides ``batch_size``), or, when fewer training speakers talk alone for a whole
        chunk, the largest number of them that divides ``batch_size`` (a warning says so).
    dimension : int
        Embedding dimension.
    margin, scale : float
        Angular margin (radians) and logit scale of the AAM-softmax.
    validation_trials : int
        Trials scored at each validation: every pair of development chunks, or this many
        pairs drawn once (seeded) when there are more.
    Other parameters are :class:`~audiotask.engine.annotated_task.AnnotatedTask`'s.

    Validation embeds fixed chunks of the development files (consecutive chunks over each
    single-speaker stretch that holds one); a trial is a pair of them, a target trial when
    both are of one speaker (two chunks of one turn make a trial too), scored by the cosine
    of their embeddings. The equal error rate over the epoch's trials is logged as
    ``val/eer`` and keeps the best checkpoint. Under DDP each rank embeds its share of the
    chunks; the shares are gathered (summed into one table) so every rank scores every trial.
    """

    problem = Problem.REPRESENTATION
    resolution = Resolution.CHUNK
    sampling = "speakers"  # registered below the class
    labels_are_classes = False  # speakers outside training (development's) are expected
    task_name = "speaker-embedding"
    validation_indices = True  # validation batches say which chunks they hold

    def __init__(
        self,
        protocol,
        *,
        duration: Optional[float] = None,
        speakers_per_batch: Optional[int] = None,
        dimension: int = 256,
        margin: float = 0.2,
        scale: float = 30.0,
        validation_trials: int = 200_000,
        **kwargs,
    ):
        if "labels_per_batch" in kwargs:
            raise ValueError("SpeakerEmbedding: give speakers_per_batch, not labels_per_batch.")
        #: whether speakers_per_batch and duration are the defaults, which adapt to the speakers at hand
        self.adapts_speakers_per_batch = speakers_per_batch is None
        self.adapts_duration = duration is None
        duration = DEFAULT_DURATION if duration is None else duration
        if kwargs.get("sampling", "speakers") != "speakers" or kwargs.get("min_duration") not in (None, duration):
            raise ValueError("SpeakerEmbedding: chunks are drawn by speaker (sampling 'speakers'), all of one "
                             f"duration (no min_duration), got sampling={kwargs.get('sampling')!r}, "
                             f"min_duration={kwargs.get('min_duration')!r}.")
        super().__init__(protocol, duration=duration, labels_per_batch=speakers_per_batch or 1, **kwargs)
        if speakers_per_batch is None:  # the most, up to the default, that batch_size allows
            speakers_per_batch = self.labels_per_batch = dividing(self.batch_size, DEFAULT_SPEAKERS_PER_BATCH)
        self.speakers_per_batch = int(speakers_per_batch)
        self.dimension, self.margin, self.scale = int(dimension), float(margin), float(scale)
        self.validation_trials = int(validation_trials)
        self._regions: dict[tuple[str, float], SpeakerRegions] = {}
        self._embeddings: Optional[dict] = None

    # ---- specifications and speakers ---------------------------------------------------
    def make_specifications(self, classes: list[str]) -> Specifications:
        """REPRESENTATION of ``dimension``: the training speakers are the loss's classes, not
        the model's outputs (an embedding model has none)."""
        return Specifications(
            problem=self.problem, resolution=self.resolution, duration=self.duration, min_duration=self.min_duration,
            warm_up=self.warm_up, extra={TASK_NAME: self.task_name, "dimension": self.dimension},
        )

    def target_builders(self) -> list[TargetBuilder]:
        return [SampledSpeaker()]

    def speaker_regions(self, name: str, metadata: Optional[ProtocolMetadata] = None, *,
                        duration: Optional[float] = None) -> SpeakerRegions:
        """The single-speaker stretches of subset ``name`` that hold a whole chunk (of
        ``duration`` seconds, default the task's), in the files the task uses (computed once)."""
        duration = self.duration if duration is None else duration
        if (name, duration) not in self._regions:
            metadata = metadata or self.metadata
            subset = metadata.subsets[name]
            usable = np.isin(subset.attribute("label_kind"), self.accepted_kinds(name))
            self._regions[name, duration] = SpeakerRegions.of_subset(subset, np.flatnonzero(usable)).at_least(duration)
        return self._regions[name, duration]

    def classes_of(self, metadata: ProtocolMetadata) -> list[str]:
        """The training speakers: those who talk alone for a whole chunk at least once (the
        default duration first fitted to them, see :meth:`fit_duration`)."""
        if self.adapts_duration:
            self.fit_duration(metadata)
        labels = np.unique(self.speaker_regions("train", metadata).labels)
        return sorted(metadata.labels[int(label)] for label in labels)

    def setup(self, stage: Optional[str] = None) -> None:
        super().setup(stage)
        self.speakers = self.classes_of(self.metadata)
        if self.adapts_speakers_per_batch and 2 <= len(self.speakers) < self.speakers_per_batch:
            self.fit_speakers_per_batch()
        if len(self.speakers) < max(2, self.speakers_per_batch):
            raise ValueError(
                f"SpeakerEmbedding: {self.speakers_per_batch} speakers per batch, but only {len(self.speakers)} "
                f"training speaker(s) talk alone for {self.duration} s or more (chunks lie inside single-speaker "
                "stretches): lower speakers_per_batch or duration."
            )

    def fit_duration(self, metadata: ProtocolMetadata) -> None:
        """The default duration lowered, when fewer training speakers talk alone that long than
        a batch needs, to the largest (in tenths of a second, down to
        :data:`SHORTEST_FITTED_DURATION`) at which enough do, said in a warning."""
        needed = 2 if self.adapts_speakers_per_batch else max(2, self.speakers_per_batch)
        regions = self.speaker_regions("train", metadata, duration=0.0)
        longest = np.zeros(len(metadata.labels))  # each speaker's longest single-speaker stretch
        np.maximum.at(longest, regions.labels, regions.ends - regions.starts)
        if (longest >= self.duration).sum() >= needed:
            return
        fitted = math.floor(np.sort(longest)[::-1][needed - 1] * 10 + 1e-9) / 10 if len(longest) >= needed else 0.0
        if fitted < SHORTEST_FITTED_DURATION:
            return  # no duration worth training on works: setup says what is missing
        warnings.warn(
            f"SpeakerEmbedding: only {int((longest >= self.duration).sum())} training speaker(s) talk alone for "
            f"{self.duration:g} s or more: chunks of {fitted:g} s instead (the longest at which {needed} do; "
            "--duration sets it).", stacklevel=2)
        self.duration = self.min_duration = fitted

    def fit_speakers_per_batch(self) -> None:
        """The default speakers per batch lowered to what the training speakers allow: the
        largest number of them that divides ``batch_size``, said in a warning."""
        fitting = dividing(self.batch_size, len(self.speakers))
        if fitting < 2:
            return  # no batch of two speakers or more divides batch_size: setup says so
        warnings.warn(
            f"SpeakerEmbedding: only {len(self.speakers)} training speakers talk alone for {self.duration:g} s or "
            f"more: {fitting} speakers per batch instead of {self.speakers_per_batch} (the largest number of them "
            f"that divides batch_size {self.batch_size}; --speakers-per-batch sets it).", stacklevel=2)
        self.speakers_per_batch = self.labels_per_batch = fitting

    def setup_training_heads(self, model) -> None:
        """The margin loss's class centres, one per training speaker (kept when they fit)."""
        heads = getattr(model, "training_heads", {})
        head = heads[CLASSIFIER] if CLASSIFIER in heads else None
        if head is None or (head.num_classes, head.dimension) != (len(self.speakers), self.dimension):
            head = AdditiveAngularMargin(len(self.speakers), self.dimension, margin=self.margin, scale=self.scale)
            model.add_training_head(CLASSIFIER, head.to(model.device))
        head.margin, head.scale = self.margin, self.scale  # this task's, when centres of an earlier fit are kept

    # ---- training ----------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int):
        waveforms = self.augment(batch["X"])
        loss = self.model.training_heads[CLASSIFIER](self.model(waveforms), batch["y"])
        return self.checked_loss(loss, waveforms, batch_idx)

    def __getstate__(self):
        state = super().__getstate__()
        state["_embeddings"] = None  # dataloader workers make batches, not embeddings
        return state

    # ---- validation --------------------------------------------------------------------
    @property
    def monitor(self) -> tuple[str, str]:
        return ("val/eer", "min") if self.has_validation else super().monitor

    def validation_chunks(self) -> np.ndarray:
        """(chunks, 2) [file, start]: consecutive chunks over each single-speaker stretch of
        the development files; their speakers are kept in ``validation_speakers``."""
        regions = self.speaker_regions("development")
        chunks, region = consecutive_chunks(regions.files, regions.starts, regions.ends, self.duration,
                                            at_least_one=False)
        #: (chunks,) label (in the metadata's vocabulary) of each validation chunk's speaker
        self.validation_speakers = regions.labels[region]
        if len(np.unique(self.validation_speakers)) < 2:
            warnings.warn(f"SpeakerEmbedding: the development files hold {len(np.unique(self.validation_speakers))} "
                          f"speaker(s) talking alone for {self.duration} s: no trial to validate on, val/eer is 0.5.")
        return chunks

    def setup_metrics(self, model) -> None:
        self._embeddings = {}

    def validation_step(self, batch, batch_idx: int):
        embeddings = self.model(batch["X"]).detach()
        for index, embedding in zip(batch["index"].tolist(), embeddings):
            self._embeddings[int(index)] = embedding  # a chunk seen twice (a padded distributed share) counts once

    def validation_embeddings(self) -> tuple[torch.Tensor, np.ndarray]:
        """``((chunks, dimension) embeddings, (chunks,) speakers)`` of every chunk validated
        this epoch, by every rank: under DDP the ranks' embeddings are summed into one table
        (each rank then scores the same trials, and keeps the same checkpoint)."""
        from audiotask.engine.validation_chunks import summed_over_ranks

        reduce = self.model.trainer.strategy.reduce if self.trainer_world_size() > 1 else None
        table, seen = summed_over_ranks(self._embeddings, len(self.validation_speakers), (self.dimension,),
                                        reduce=reduce, device=self.model.device)
        kept = seen > 0
        return table[kept] / seen[kept, None], self.validation_speakers[kept.cpu().numpy()]

    def on_validation_epoch_end(self) -> None:
        embeddings, speakers = self.validation_embeddings()
        self._embeddings = {}
        scores, is_target = trial_scores(embeddings, speakers, self.validation_trials)
        if is_target.all() or not is_target.any():
            if getattr(self.model.trainer, "sanity_checking", False):
                return  # the sanity check's few batches may hold one speaker: nothing to say
            eer = 0.5  # no trial tells checkpoints apart (warned at set-up, or validation was cut short)
        else:
            eer, _ = equal_error_rate(scores, is_target)
        self.model.log("val/eer", float(eer), prog_bar=True)


def speaker_epoch_length(task: SpeakerEmbedding) -> int:
    regions = task.speaker_regions("train")
    return task.default_train_len(float(np.sum(regions.ends - regions.starts)))


@register_sampling("speakers", epoch_length=speaker_epoch_length, by_label=True)
def speaker_sampler(task: SpeakerEmbedding, key: dict, usable: np.ndarray) -> BalancedSampler:
    """Batches of ``speakers_per_batch`` speakers, each chunk inside one of the speaker's
    single-speaker stretches (the stretch is both the segment drawn and the chunk's bounds:
    a chunk of a stretch at least as long stays inside it)."""
    regions = task.speaker_regions("train")
    keep = usable[regions.files] & (task.label_class[regions.labels] >= 0)
    starts, ends = regions.starts[keep], regions.ends[keep]
    return BalancedSampler(
        regions.files[keep], starts, ends, task.label_class[regions.labels[keep]], np.stack([starts, ends], axis=1),
        task.duration, labels_per_batch=task.speakers_per_batch,
        chunks_per_label=key["batch_size"] // task.speakers_per_batch, **without_batch_size(key),
    )
