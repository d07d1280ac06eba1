"""The shared engine of tasks whose targets come from a protocol's annotations.

A subclass (``VoiceActivityDetection``, ``SoundEventDetection``) contributes only its
specifications and how a label maps to a class; sampling, reading, target building,
validation chunks and caching are here, once.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Literal, Optional, Union

import numpy as np
import torch

from audiotask.core.batches import collate_rows, new_batch_buffer
from audiotask.core.datasets import TrainDataset
from audiotask.core.frames import Frames, seconds_to_samples
from audiotask.core.metadata import METADATA_FORMAT, ProtocolMetadata, SubsetMetadata, build_subset
from audiotask.core.readers import CachedReader, FileReader
from audiotask.core.resume import ResumableDataLoader, resumed_stream
from audiotask.core.sampler import ChunkSampler
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.core.targets import chunk_targets_batch, frame_targets_batch
from audiotask.core.task import Task
from audiotask.protocols.files import iter_subset
from audiotask.protocols.fingerprint import protocol_fingerprint
from audiotask.utils.random import distributed_rank, global_seed, worker_identity


def default_cache_root() -> Path:
    """``$AUDIOTASK_CACHE``, else ``~/.cache/audiotask``."""
    return Path(os.environ.get("AUDIOTASK_CACHE", Path.home() / ".cache" / "audiotask"))


class AnnotatedTask(Task):
    """Task engine: prepared metadata, seeded sampler, swappable reader, target builder.

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
    """

    problem: Problem
    resolution: Resolution = Resolution.FRAME

    def __init__(
        self,
        protocol,
        *,
        cache: Optional[Union[str, Path]] = None,
        audio_cache: Optional[Literal["int16", "float16"]] = "int16",
        balance: Optional[str] = None,
        **task_options,
    ):
        super().__init__(protocol, **task_options)
        self.cache = Path(cache) if cache is not None else default_cache_root()
        self.audio_cache = audio_cache
        self.balance = balance
        self.metadata: Optional[ProtocolMetadata] = None
        #: where an interrupted epoch stopped (see ``core.resume``); set from checkpoints
        self.resume_state: Optional[dict] = None

    # ---- what a subclass provides ------------------------------------------------------
    def known_classes(self) -> Optional[list[str]]:
        """Class names declared by the user, or None to discover them from the training set."""
        return None

    def label_index(self, classes: list[str]) -> Callable[[str], int]:
        """Map a label to its class index (-1: not a class of the task, reported)."""
        position = {name: i for i, name in enumerate(classes)}
        return lambda label: position.get(label, -1)

    def make_specifications(self, classes: list[str]) -> Specifications:
        """The task's problem and resolution, with its chunk duration, warm-up and classes."""
        return Specifications(
            problem=self.problem,
            resolution=self.resolution,
            duration=self.duration,
            min_duration=self.min_duration,
            warm_up=self.warm_up,
            classes=classes,
        )

    def target_parameters(self) -> dict:
        """Everything that changes the prepared metadata (part of its cache key)."""
        return {
            "task": type(self).__qualname__, "classes": self.known_classes(), "balance": self.balance,
            "duration": self.duration, "metadata_format": METADATA_FORMAT,
        }

    # ---- preparing metadata -------------------------------------------------------------
    @property
    def subsets(self) -> list[str]:
        return ["train", "development"] if self.has_validation else ["train"]

    def metadata_folder(self) -> Path:
        """Cache folder of this protocol's prepared metadata for this task's parameters.

        Computed once per task (prepare_data and setup both need it): the fingerprint may
        read every file of the protocol (see ``protocols.fingerprint``).
        """
        if getattr(self, "_metadata_folder", None) is None:
            key = protocol_fingerprint(self.protocol, self.subsets, self.target_parameters())
            self._metadata_folder = self.cache / "metadata" / key
        return self._metadata_folder

    def prepare_data(self) -> None:
        """Prepare metadata (and decoded audio) once; Lightning runs this on rank 0 only."""
        self.prepare_audio(self.load_metadata())

    def load_metadata(self) -> ProtocolMetadata:
        """The prepared metadata, built first when missing, or again when audio files changed
        since (the protocol's fingerprint does not read every audio file; their stamps are
        in the metadata)."""
        folder = self.metadata_folder()
        if ProtocolMetadata.exists(folder):
            metadata = ProtocolMetadata.load(folder)
            # prepare_data and setup both come here: the audio files are checked once
            if getattr(self, "_audio_checked", False):
                return metadata
            changed = [uri for subset in metadata.subsets.values() for uri in subset.changed_audio()]
            if not changed:
                self._audio_checked = True
                return metadata
            warnings.warn(
                f"{type(self).__name__}: {len(changed)} audio file(s) changed since the metadata in {folder} "
                f"was prepared ({', '.join(map(repr, changed[:3]))}{', ...' if len(changed) > 3 else ''}): preparing it again."
            )
        self.build_metadata().save(folder, replace=True)
        self._audio_checked = True
        return ProtocolMetadata.load(folder)

    def prepare_audio(self, metadata: ProtocolMetadata) -> None:
        """Decode every file into the audio cache (once; files already there are skipped).

        Needs the model's sample rate: without a model attached yet, ``setup`` does it.
        """
        if not self.audio_cache or self.model is None or getattr(self, "_audio_prepared", None) == self.sample_rate:
            return
        for subset in metadata.subsets.values():
            self._reader(subset).prepare()
        self._audio_prepared = self.sample_rate  # a model at another rate needs its own decoding

    def build_metadata(self) -> ProtocolMetadata:
        classes = self.known_classes() or self.discover_classes()
        subsets, unknown = {}, {}
        for name in self.subsets:
            subsets[name], counts = build_subset(
                iter_subset(self.protocol, name), self.label_index(classes), max_segment_length=self.duration
            )
            for label, count in counts.items():
                unknown[label] = unknown.get(label, 0) + count
        if unknown:
            warnings.warn(
                f"{type(self).__name__}: labels outside the task's classes {classes} are ignored: "
                + ", ".join(f"{label!r} ({count} segments)" for label, count in sorted(unknown.items()))
            )
        if len(subsets["train"]) == 0:
            raise ValueError(f"{type(self).__name__}: the protocol's train subset has no file.")
        for name, subset in subsets.items():
            self.warn_unannotated(name, subset)
        return ProtocolMetadata(classes, subsets)

    def warn_unannotated(self, name: str, subset: SubsetMetadata) -> None:
        """Name the files that have no annotated region: they are never used, and a uri
        spelt differently in the file list and in the UEM looks exactly like this."""
        empty = subset.uri[np.diff(subset.annotated_offsets) == 0]
        if len(empty):
            warnings.warn(
                f"{type(self).__name__}: {len(empty)} {name} file(s) have no annotated region (UEM) "
                f"and are left out: {', '.join(map(repr, empty[:5].tolist()))}{', ...' if len(empty) > 5 else ''}"
            )

    def discover_classes(self) -> list[str]:
        labels = set()
        for file in self.protocol.train():
            labels.update(str(label) for label in file["annotation"].labels())
        return sorted(labels)

    def setup(self, stage: Optional[str] = None) -> None:
        if self.metadata is None:
            self.metadata = self.load_metadata()
        # prepare_data may have run before a model was attached (no sample rate then)
        self.prepare_audio(self.metadata)
        self.specifications = self.make_specifications(self.metadata.classes)
        self.balance_groups()  # now, before dataloader workers start
        self._validation_chunks = self.validation_chunks() if self.has_validation else None

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
        state = dict(self.__dict__)
        state.pop("_readers", None)
        return state

    # ---- targets -------------------------------------------------------------------
    def output_frames(self) -> Frames:
        return self.model.frames

    def target(self, subset: SubsetMetadata, file: int, start: float, duration: float) -> np.ndarray:
        """Target of a chunk: (frames, classes) for FRAME, (classes,) for CHUNK resolution."""
        return self.targets(subset, np.array([file]), np.array([start]), duration)[0]

    def targets(
        self, subset: SubsetMetadata, files: np.ndarray, starts: np.ndarray, duration: float,
        limits: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """Targets of chunks of one duration: (chunks, frames, classes) for FRAME, (chunks,
        classes) for CHUNK resolution; one vectorised pass over all their segments.

        A chunk longer than the annotated region it starts in sees no annotation past the
        region's end (``limits``, default :meth:`SubsetMetadata.region_ends`): there, its
        audio is silence (see :meth:`make_batch`).
        """
        starts = np.asarray(starts, dtype=np.float64)
        limits = subset.region_ends(files, starts) if limits is None else limits
        view_ends = np.minimum(starts + duration, limits)
        found = [subset.segments_in(int(f), float(s), float(e)) for f, s, e in zip(files, starts, view_ends)]
        chunk = np.repeat(np.arange(len(found)), [len(segment_starts) for segment_starts, _, _ in found])
        segment_starts, segment_ends, classes = (np.concatenate(column) for column in zip(*found))
        segment_ends = np.minimum(segment_ends, view_ends[chunk])
        num_classes = len(self.metadata.classes)
        if self.specifications.resolution is Resolution.CHUNK:
            return chunk_targets_batch(chunk, segment_starts, segment_ends, classes, num_chunks=len(found), num_classes=num_classes)
        # segment times relative to the start of their chunk
        offset = starts[chunk]
        frames = self.output_frames()
        return frame_targets_batch(
            chunk, segment_starts - offset, segment_ends - offset, classes, frames=frames, num_chunks=len(found),
            num_frames=frames.num_frames_for_duration(duration, self.sample_rate), num_classes=num_classes,
        )

    def sample(self, name: str, file: int, start: float, duration: float) -> dict:
        """One chunk as a sample: "X" (1, samples), "y" (frames, classes) or (classes,)."""
        batch = self.make_batch(name, np.array([file]), np.array([start]), duration)
        return {key: value[0] for key, value in batch.items()}

    def make_batch(self, name: str, files: np.ndarray, starts: np.ndarray, duration: float) -> dict:
        """Chunks of one duration as a batch: "X" (chunks, 1, samples), "y" (chunks, ...).

        Waveforms are decoded straight into the batch (no per-chunk array, no stacking).
        Past the end of the annotated region a chunk starts in, its audio is zeroed: what
        nobody annotated is not taught as "no event".
        """
        subset = self.metadata.subsets[name]
        files, starts = np.asarray(files, dtype=np.int64), np.asarray(starts, dtype=np.float64)
        limits = subset.region_ends(files, starts)
        targets = self.targets(subset, files, starts, duration, limits)
        num_samples = seconds_to_samples(duration, self.sample_rate)
        X = new_batch_buffer((len(files), 1, num_samples), torch.float32)
        y = new_batch_buffer(targets.shape, torch.uint8)
        y.numpy()[...] = targets
        waveforms, reader = X.numpy(), self.reader(name)
        for row, (file, start, limit) in enumerate(zip(files.tolist(), starts.tolist(), limits.tolist())):
            reader.crop(file, start, duration, out=waveforms[row, 0])
            if limit < start + duration:
                waveforms[row, 0, max(0, seconds_to_samples(limit - start, self.sample_rate)) :] = 0.0
        return {"X": X, "y": y}

    def collate_fn(self, samples):
        """Batch samples: the rows of one ``make_batch`` are handed back as it, without a copy."""
        return collate_rows(samples) or super().collate_fn(samples)

    # ---- training samples ------------------------------------------------------------
    def make_sampler(self, epoch: int = 0, rank: Optional[int] = None, worker: Optional[int] = None) -> ChunkSampler:
        """The training chunk sampler of this seed, rank, worker and epoch."""
        train = self.metadata.subsets["train"]
        region_file = np.repeat(np.arange(len(train)), np.diff(train.annotated_offsets))
        groups = self.balance_groups()
        return ChunkSampler(
            np.asarray(train.annotated), region_file, self.duration,
            min_duration=self.min_duration, batch_size=self.batch_size, groups=groups, seed=global_seed(),
            rank=distributed_rank() if rank is None else rank,
            worker=worker_identity()[0] if worker is None else worker, epoch=epoch,
        )

    def balance_groups(self) -> Optional[np.ndarray]:
        """The ``balance`` key's value for each training file, read from the protocol once
        (in the main process: workers and later epochs inherit it)."""
        if self.balance is None:
            return None
        if getattr(self, "_balance_groups", None) is None:
            values = {str(file["uri"]): str(file[self.balance]) for file in self.protocol.train()}
            self._balance_groups = np.array([values[str(uri)] for uri in self.metadata.subsets["train"].uri])
        return self._balance_groups

    def train__iter__(self):
        epoch = 0 if self.model is None else self.model.current_epoch
        worker, num_workers = worker_identity()
        # resume mid-epoch exactly where a saved run stopped (this worker's own stream from
        # its start when it did not)
        stream, position = resumed_stream(
            self.resume_state, epoch=epoch, worker=worker, num_workers=num_workers, batch_size=self.batch_size
        )
        sampler = self.make_sampler(epoch, worker=stream)
        sampler.position = position
        if type(self).sample is not AnnotatedTask.sample or type(self).target is not AnnotatedTask.target:
            for chunk in sampler:  # a subclass's own samples, one by one
                yield self.sample("train", chunk.file, chunk.start, chunk.duration)
            return
        while True:
            # up to the end of the batch the sampler is in: its chunks share one duration
            files, starts, durations = sampler.take(self.batch_size - sampler.position % self.batch_size)
            batch = self.make_batch("train", files, starts, float(durations[0]))
            for row in range(len(files)):
                yield {key: value[row] for key, value in batch.items()}

    def train_dataloader(self) -> ResumableDataLoader:
        """Training batches; their position in the epoch is saved in Lightning checkpoints."""
        return self._dataloader(TrainDataset(self), loader=ResumableDataLoader, task=self, drop_last=True)

    def train__len__(self) -> int:
        train = self.metadata.subsets["train"]
        return self.default_train_len(float(np.sum(train.annotated[:, 1] - train.annotated[:, 0])))

    # ---- validation samples ------------------------------------------------------------
    def validation_chunks(self) -> np.ndarray:
        """(chunks, 2) [file, start]: consecutive ``duration`` chunks over every annotated region."""
        development = self.metadata.subsets["development"]
        rows = []
        for file in range(len(development)):
            for start, end in development.regions_of(file):
                count = max(1, int((end - start) // self.duration))
                rows.extend((file, start + k * self.duration) for k in range(count))
        return np.array(rows, dtype=np.float64).reshape(-1, 2)

    def val__getitem__(self, index: int) -> dict:
        file, start = self._validation_chunks[index]
        return self.sample("development", int(file), float(start), self.duration)

    def val__len__(self) -> int:
        return len(self._validation_chunks)
