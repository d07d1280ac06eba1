"""The shared engine of tasks whose samples come from a protocol's files and annotations.

A task built on it (``VoiceActivityDetection``, ``SoundEventDetection``,
``OverlappedSpeechDetection``...) picks its parts and writes nothing else:

- its problem and resolution (class attributes) and classes;
- its target builders (:meth:`target_builders`, from ``engine.builders``);
- its sampler (``sampling``: chunks in annotated regions, whole clips, balanced batches);
- the file attributes it needs prepared (:meth:`file_attributes`) and the label kinds it
  trains on (``label_kinds``);
- how a label maps to a class (:meth:`label_classes`).

Preparing metadata (once per protocol and preparation, see ``engine.preparation``), reading
audio, building whole batches and resuming mid-epoch are here, once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Optional, Sequence, Union

import numpy as np
from torch.utils.data import DataLoader

from audiotask.core.datasets import collate_samples
from audiotask.core.specifications import TASK_NAME, Problem, Resolution, Specifications
from audiotask.core.task import Task
from audiotask.engine.batch_builder import BatchBuilder, as_batch
from audiotask.engine.batches import TrainBatches, ValidationBatches
from audiotask.engine.builders import ChunkClasses, ChunkSegments, FrameClasses, TargetBuilder
from audiotask.engine.checks import CheckReport, check_prepared, check_protocol
from audiotask.engine.metadata import ProtocolMetadata, SubsetMetadata
from audiotask.engine.metadata_store import MetadataStore
from audiotask.engine.preparation import LABEL_KINDS, STRONG, Preparation
from audiotask.engine.readers import CachedReader, FileReader
from audiotask.engine.resume import ResumableDataLoader
from audiotask.engine.samplers import Sampler
from audiotask.engine.sampling import sampling_entry
from audiotask.engine.training_stream import training_batches, training_sampler
from audiotask.engine.validation_chunks import consecutive_chunks
from audiotask.io import default_cache_root


class AnnotatedTask(Task):
    """Task engine: prepared metadata, seeded sampler, swappable reader, target builders.

    Parameters (``duration``, ``warm_up``, ``batch_size``... are ``Task``'s)
    -------------------------------------------------------------------------
    cache : str or Path, optional
        Cache folder for prepared metadata and decoded audio; defaults to
        ``$AUDIOTASK_CACHE`` or ``~/.cache/audiotask``.
    audio_cache : "int16", "float16" or None
        Decode every file once into memory-mapped PCM of that type ("int16", the default,
        is exact for 16-bit sources at the model's rate); None reads every chunk from its audio file.
    balance : str, optional
        Protocol key (e.g. "database") whose values get equal shares of training chunks.
    sampling : str, optional
        A name of the sampler table (``engine.sampling``): "regions" (training chunks
        anywhere inside annotated regions, weighted by duration), "clips" (one per file and
        pass: a random crop of a long file, a short one zero-padded), "balanced" (batches of
        ``labels_per_batch`` classes x ``batch_size / labels_per_batch`` chunks centred on
        one of their segments), or one a task registered. Default: the task's.
    labels_per_batch : int
        Classes per batch with ``sampling="balanced"``; must divide ``batch_size``.
    kind_proportions : {label kind: share}, optional
        Unite in each training batch files of several label kinds ("strong", "weak",
        "none") in these proportions, e.g. DCASE's ``{"strong": 1, "weak": 1, "none": 2}``;
        kinds the training set lacks give their share to the others.
    """

    problem: Problem
    resolution: Resolution = Resolution.FRAME
    #: the sampler a task uses unless told otherwise (see ``sampling``)
    sampling: str = "regions"
    #: label kinds (see ``engine.preparation``) of the files the task trains and validates on
    label_kinds: tuple[str, ...] = (STRONG,)
    #: label kinds of the development files validated on (None: ``label_kinds``)
    validation_label_kinds: Optional[tuple[str, ...]] = None
    #: whether annotation labels are meant to be classes (unmatched ones are then reported)
    labels_are_classes: bool = True
    #: registry name (``tasks/registry.py``) written into the specifications' ``extra["task"]``:
    #: ``audiotask apply`` tells saved models apart by it (a tagger from a chunk-level detector)
    task_name: Optional[str] = None

    def __init__(
        self,
        protocol,
        *,
        cache: Optional[Union[str, Path]] = None,
        audio_cache: Optional[Literal["int16", "float16"]] = "int16",
        balance: Optional[str] = None,
        sampling: Optional[str] = None,
        labels_per_batch: int = 2,
        kind_proportions: Optional[dict[str, float]] = None,
        **task_options,
    ):
        super().__init__(protocol, **task_options)
        self.cache = Path(cache) if cache is not None else default_cache_root()
        self.audio_cache = audio_cache
        self.balance = balance
        self.sampling = self.sampling if sampling is None else sampling
        by_label = sampling_entry(self.sampling, type(self).__name__).by_label
        self.labels_per_batch = int(labels_per_batch)
        self.kind_proportions = dict(kind_proportions or {})
        unknown = set(self.kind_proportions) - set(LABEL_KINDS)
        if unknown:
            raise ValueError(f"{type(self).__name__}: kind_proportions names unknown label kinds {sorted(unknown)}; "
                             f"they are {LABEL_KINDS}.")
        if self.kind_proportions and self.min_duration < self.duration:
            raise ValueError(f"{type(self).__name__}: batches that mix label kinds need one chunk duration "
                             "(min_duration equal to duration).")
        if by_label and self.batch_size % self.labels_per_batch:
            raise ValueError(
                f"{type(self).__name__}: batch_size {self.batch_size} is not a multiple of labels_per_batch {self.labels_per_batch}."
            )
        self.metadata: Optional[ProtocolMetadata] = None
        #: where an interrupted epoch stopped (see ``engine.resume``); set from checkpoints
        self.resume_state: Optional[dict] = None

    # ---- the parts a task picks -----------------------------------------------------------
    def known_classes(self) -> Optional[list[str]]:
        """Class names declared by the user, or None to discover them from the training set."""
        return None

    def label_classes(self, labels: list[str], classes: list[str]) -> np.ndarray:
        """(labels,) int64 class index of each annotation label, -1 for labels that are no class."""
        position = {name: index for index, name in enumerate(classes)}
        return np.array([position.get(label, -1) for label in labels], dtype=np.int64)

    def target_builders(self) -> list[TargetBuilder]:
        """The builders of the arrays of a batch besides "X": multi-hot "y" per frame or chunk."""
        return [FrameClasses()] if self.specifications.resolution is Resolution.FRAME else [ChunkClasses()]

    def file_attributes(self) -> tuple[str, ...]:
        """Protocol keys this task needs stored per file (the balance key by default)."""
        return () if self.balance is None else (self.balance,)

    def make_specifications(self, classes: list[str]) -> Specifications:
        """The task's problem and resolution, with its chunk duration, warm-up and classes."""
        return Specifications(
            problem=self.problem, resolution=self.resolution, duration=self.duration,
            min_duration=self.min_duration, warm_up=self.warm_up, classes=classes,
            extra={} if self.task_name is None else {TASK_NAME: self.task_name},
        )

    # ---- preparing metadata -------------------------------------------------------------
    @property
    def subsets(self) -> list[str]:
        return ["train", "development"] if self.has_validation else ["train"]

    def preparation(self) -> Preparation:
        """What this task's prepared metadata depends on besides the protocol (its cache key)."""
        return Preparation(tuple(self.subsets), self.duration, tuple(self.file_attributes()))

    def metadata_store(self) -> MetadataStore:
        """Where this task's prepared metadata lives (one per task: its folder is computed once)."""
        if getattr(self, "_metadata_store", None) is None:
            self._metadata_store = MetadataStore(self.protocol, self.preparation(), self.cache,
                                                 owner=type(self).__name__)
        return self._metadata_store

    def metadata_folder(self) -> Path:
        """Cache folder of this protocol's prepared metadata for this task's preparation."""
        return self.metadata_store().folder()

    def prepare_data(self) -> None:
        """Prepare metadata (and decoded audio) once.

        Safe in several processes at once (runs started together, the local rank 0 of each
        node on a shared file system): one prepares, the others wait on its lock (as long as
        it lives, no timeout), then reuse its work. Lightning calls it on (local) rank 0
        only while the other ranks wait behind a barrier without timeout (Lightning 2.3 and
        later; 2.2's barrier gives up after the process group's 30 minutes: pass
        ``DDPStrategy(timeout=...)`` there, or prepare before training).
        """
        self.prepare_audio(self.load_metadata())

    def load_metadata(self) -> ProtocolMetadata:
        """The prepared metadata (prepared first when missing, or again when audio files
        changed since: see ``engine.metadata_store``), checked for what cannot train."""
        metadata = self.metadata_store().load()
        self.check_metadata(metadata)
        return metadata

    def check_metadata(self, metadata: ProtocolMetadata) -> None:
        """Refuse what cannot train and warn once about what the task will leave out (see
        ``engine.checks.check_prepared``)."""
        if not getattr(self, "_metadata_checked", False):
            check_prepared(self, metadata)
            self._metadata_checked = True

    def check(self, subsets: Optional[Sequence[str]] = None, *, scan: bool = True) -> CheckReport:
        """What would fail or be dropped, file by file, in one pass over the protocol (see
        ``engine.checks``): audio (missing, undecodable, empty, NaN with ``scan``), files shorter
        than a chunk, annotations or UEM past the end, labels outside the declared classes,
        files the task leaves out (with the uri the annotation spells differently)."""
        declared = self.known_classes()
        unknown_label = None
        if declared and self.labels_are_classes:
            unknown_label = lambda label: self.label_classes([label], list(declared))[0] < 0  # noqa: E731
        return check_protocol(
            self.protocol, list(subsets or self.subsets), chunk_duration=self.duration, unknown_label=unknown_label,
            label_kinds=self.label_kinds, scan=scan,
        )

    def prepare_audio(self, metadata: ProtocolMetadata) -> None:
        """Decode every file into the audio cache (once; files already there are skipped),
        in parallel processes with a progress bar (see ``CachedReader.prepare``: another
        process decoding into the same cache is waited for).

        Needs the model's sample rate: without a model attached yet, ``setup`` does it.
        """
        if not self.audio_cache or self.model is None or getattr(self, "_audio_prepared", None) == self.sample_rate:
            return
        # every subset in one go: one pool, one progress bar, a file of two subsets decoded once
        paths = [path for subset in metadata.subsets.values() for path in subset.audio.tolist()]
        CachedReader(paths, self.sample_rate, self.cache / "audio", dtype=self.audio_cache).prepare()
        self._audio_prepared = self.sample_rate  # a model at another rate needs its own decoding

    def classes_of(self, metadata: ProtocolMetadata) -> list[str]:
        """The declared classes, else the labels used in the training set (segments and tags), sorted."""
        declared = self.known_classes()
        if declared:
            return list(declared)
        train = metadata.subsets["train"]
        used = {metadata.labels[int(k)] for k in np.unique(np.asarray(train.segment_label))}
        used.update(tag for tags in train.attribute("tags").tolist() for tag in tags.split(",") if tag)
        return sorted(used)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.metadata is None:
            self.metadata = self.load_metadata()
        # prepare_data may have run before a model was attached (no sample rate then)
        self.prepare_audio(self.metadata)
        classes = self.classes_of(self.metadata)
        self.specifications = self.make_specifications(classes)
        #: (labels,) class index of each label of the metadata, -1 for no class
        self.label_class = self.label_classes(self.metadata.labels, classes)
        self._builders = self.target_builders()  # they follow the specifications just set
        for name, subset in self.metadata.subsets.items():
            for builder in self._builders:
                builder.check(subset, classes, name)
        self.balance_groups()  # now, before dataloader workers start
        self._validation_chunks = self.validation_chunks() if self.has_validation else None

    def accepted_kinds(self, name: str) -> tuple[str, ...]:
        """Label kinds of the files of subset ``name`` the task uses: those it learns from, or
        validates on for the development subset (``validation_label_kinds``)."""
        if name == "development" and self.validation_label_kinds is not None:
            return self.validation_label_kinds
        return self.label_kinds

    def usable_files(self, name: str) -> np.ndarray:
        """(files,) bool: the files of subset ``name`` of a label kind the task uses."""
        return np.isin(self.metadata.subsets[name].attribute("label_kind"), self.accepted_kinds(name))

    # ---- reading -----------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        if self.model is None:
            raise RuntimeError(f"{type(self).__name__}: attach a model first (model.task = task, or Model(task=task)).")
        return self.model.sample_rate

    def _reader(self, subset: SubsetMetadata):
        if self.audio_cache:
            return CachedReader(subset.audio, self.sample_rate, self.cache / "audio", dtype=self.audio_cache)
        return FileReader(subset.audio, self.sample_rate)

    def reader(self, name: str):
        """Chunk reader of subset ``name`` (one per process, built on first use)."""
        readers = self.__dict__.setdefault("_readers", {})
        key = (name, os.getpid(), self.sample_rate)  # a worker, or another model, gets its own
        if key not in readers:
            readers[key] = self._reader(self.metadata.subsets[name])
        return readers[key]

    def __getstate__(self):
        state = super().__getstate__()  # without the protocol: workers read the prepared metadata
        state.pop("_readers", None)  # open files and maps are reopened in each process
        state.pop("_metadata_store", None)  # holds the protocol; workers read the prepared metadata
        return state

    # ---- targets -------------------------------------------------------------------
    def output_frames(self):
        return self.model.frames

    def _subset(self, subset: Union[str, SubsetMetadata]) -> SubsetMetadata:
        return self.metadata.subsets[subset] if isinstance(subset, str) else subset

    def batch_builder(self) -> BatchBuilder:
        """The builder of this task's batches (its target builders, classes, model's frames)."""
        frames = self.output_frames() if self.specifications.resolution is Resolution.FRAME else None
        return BatchBuilder(self._builders, self.label_class, self.specifications.classes or [], self.sample_rate, frames)

    def chunk_segments(
        self, subset: Union[str, SubsetMetadata], files: np.ndarray, starts: np.ndarray, duration: float,
        limits: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
    ) -> ChunkSegments:
        """The segments of chunks of one duration, found in one pass (see ``BatchBuilder.segments``)."""
        return self.batch_builder().segments(self._subset(subset), files, starts, duration, limits, labels)

    def targets(
        self, subset: Union[str, SubsetMetadata], files: np.ndarray, starts: np.ndarray, duration: float,
        limits: Optional[np.ndarray] = None, labels: Optional[np.ndarray] = None,
    ) -> dict[str, np.ndarray]:
        """Target arrays of chunks of one duration, from the task's builders: "y" is
        (chunks, frames, classes) for FRAME and (chunks, classes) for CHUNK multi-hot tasks."""
        return self.batch_builder().targets(self._subset(subset), files, starts, duration, limits, labels)

    def target(self, subset: Union[str, SubsetMetadata], file: int, start: float, duration: float):
        """Targets of one chunk (a subclass may override it, then it is called chunk by chunk):
        a dict of arrays, or one array (then the "y" key)."""
        arrays = self.targets(subset, np.array([file]), np.array([start]), duration)
        return {key: value[0] for key, value in arrays.items()}

    def _overrides(self, name: str) -> bool:
        return getattr(type(self), name) is not getattr(AnnotatedTask, name)

    def batch_targets(self, name: str, files, starts, duration: float, limits, labels) -> dict[str, np.ndarray]:
        """Targets of a batch: the builders', or a subclass's own ``target`` chunk by chunk."""
        if not self._overrides("target"):
            return self.targets(name, files, starts, duration, limits, labels)
        per_chunk = [self.target(name, int(f), float(s), duration) for f, s in zip(files, starts)]
        per_chunk = [value if isinstance(value, dict) else {"y": value} for value in per_chunk]
        # stacked as returned, in their own dtype: nothing is cast
        return {key: np.stack([np.asarray(value[key]) for value in per_chunk]) for key in per_chunk[0]}

    def make_batch(self, name: str, files, starts, duration: float, labels: Optional[np.ndarray] = None) -> dict:
        """Chunks of one duration as a batch: "X" (chunks, 1, samples) and the target arrays.

        Waveforms are decoded straight into the batch (no per-chunk array, no stacking).
        Past the end of the annotated region a chunk starts in, its audio is zeroed: what
        nobody annotated is not taught as "no event".
        """
        if self._overrides("sample"):
            return collate_samples([self.sample(name, int(f), float(s), duration) for f, s in zip(files, starts)])
        subset = self.metadata.subsets[name]
        files, starts = np.asarray(files, dtype=np.int64), np.asarray(starts, dtype=np.float64)
        limits = subset.region_ends(files, starts)
        arrays = self.batch_targets(name, files, starts, duration, limits, labels)
        return as_batch(self.batch_builder().waveforms(self.reader(name), files, starts, duration, limits), arrays)

    def sample(self, name: str, file: int, start: float, duration: float) -> dict:
        """One chunk as a sample: "X" (1, samples) and its targets."""
        batch = self.make_batch(name, np.array([file]), np.array([start]), duration)
        return {key: value[0] for key, value in batch.items()}

    # ---- training samples ------------------------------------------------------------
    def make_sampler(self, epoch: int = 0, rank: Optional[int] = None, worker: Optional[int] = None) -> Sampler:
        """The training sampler of this seed, rank, worker and epoch (see
        ``engine/training_stream.py``: with ``kind_proportions``, one stream per label kind)."""
        return training_sampler(self, epoch, rank, worker)

    def training_regions(self, usable: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
        """``(regions (n, 2), file of each)``: annotated regions of the usable training files
        (``usable``: a (files,) bool mask; default :meth:`usable_files`)."""
        train = self.metadata.subsets["train"]
        usable = self.usable_files("train") if usable is None else usable
        region_file = np.repeat(np.arange(len(train)), np.diff(train.annotated_offsets))
        keep = usable[region_file]
        return np.asarray(train.annotated)[keep], region_file[keep]

    def balance_groups(self) -> Optional[np.ndarray]:
        """The ``balance`` attribute of every training file, by file index (read once, at
        preparation); the sampler weighs the regions it draws from by it."""
        if self.balance is None:
            return None
        return self.metadata.subsets["train"].attribute(self.balance)

    def train_batches(self, epoch: Optional[int] = None):
        """Endless training batches of this worker's stream (see ``engine/training_stream.py``).

        ``epoch`` defaults to the trainer's; a dataloader worker started by spawn has no
        trainer: its dataset passes the epoch (see ``TrainBatches``).
        """
        if epoch is None:
            epoch = 0 if self.model is None else self.model.current_epoch
        return training_batches(self, epoch)

    def sampled_rows(self) -> int:
        """Chunks of each training batch that the sampler draws from the protocol's files
        (all of them, unless a task makes some rows itself: see :meth:`extend_batch`)."""
        return self.batch_size

    def extend_batch(self, batch: dict, *, key: tuple[int, ...]) -> dict:
        """The training batch with the rows a task makes itself (e.g. soundscapes mixed on the
        fly); ``key`` (seed, rank, stream, epoch, batch index) makes them reproducible."""
        return batch

    def extend_validation_batch(self, batch: dict, indices: np.ndarray) -> dict:
        """The validation batch of chunks ``indices`` (rows of :meth:`validation_chunks`) as the
        task validates on it (e.g. mixed with noise, the same way at every validation)."""
        return batch

    def train_dataloader(self) -> ResumableDataLoader:
        """Whole training batches (built by the task, not re-collated); their position in the
        epoch is saved in Lightning checkpoints."""
        return self._batch_loader(TrainBatches(self), loader=ResumableDataLoader, task=self)

    def _batch_loader(self, dataset, loader: type = DataLoader, **kwargs) -> DataLoader:
        # workers start the platform's default way (fork on Linux, spawn on macOS and Windows):
        # the task and its datasets pickle, and a spawned worker maps the same metadata files.
        # They persist for the whole run: started again at every epoch (of a few batches on a
        # small data set), forking the training process cost more than the steps themselves
        # (its pages copied, faulted in again); a training worker learns each new epoch from
        # its dataset (see ``TrainBatches``)
        return loader(dataset, batch_size=None, num_workers=self.num_workers, pin_memory=self.pin_memory,
                      persistent_workers=self.num_workers > 0, **kwargs)

    def train__len__(self) -> int:
        return sampling_entry(self.sampling, type(self).__name__).epoch_length(self)

    # ---- validation samples ------------------------------------------------------------
    def validation_chunks(self) -> np.ndarray:
        """(chunks, 2) [file, start]: consecutive ``duration`` chunks over every annotated
        region of the usable development files."""
        development = self.metadata.subsets["development"]
        region_file = np.repeat(np.arange(len(development)), np.diff(development.annotated_offsets))
        regions = np.asarray(development.annotated).reshape(-1, 2)
        keep = self.usable_files("development")[region_file]
        chunks, _ = consecutive_chunks(region_file[keep], regions[keep, 0], regions[keep, 1], self.duration,
                                       at_least_one=True)
        return chunks

    def val_dataloader(self) -> DataLoader:
        """Validation batches built whole, in a fixed order."""
        return self._batch_loader(ValidationBatches(self, self._validation_chunks))

    def val__getitem__(self, index: int) -> dict:
        file, start = self._validation_chunks[index]
        return self.sample("development", int(file), float(start), self.duration)

    def val__len__(self) -> int:
        return len(self._validation_chunks)
