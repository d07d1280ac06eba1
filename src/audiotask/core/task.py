"""Task: a problem (``Specifications``) plus an experimental protocol, as a LightningDataModule.

A task turns its protocol into endless random training samples (``train__iter__``) and fixed
validation samples (``val__getitem__``); its default ``training_step`` and
``validation_step`` derive loss and metric from ``self.specifications``.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Callable, Optional, Sequence, Tuple, Union

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from audiotask.core import objectives
from audiotask.core.datasets import TrainDataset, ValDataset, apply_augmentation, collate_samples
from audiotask.core.frames import warm_up_mask
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.core.protocol_files import has_subset, prepare_protocol

__all__ = ["Task", "Problem", "Resolution", "Specifications"]


def default_num_workers() -> int:
    """No worker on two cores or fewer, else half the cores (data loading shares the machine
    with the model).

    Measured on two cores (``benchmarks/cli_training.py``, CRNN voice activity detection,
    batches of 32 two-second chunks): built in the training process, a batch costs some
    4 ms of a 0.12-0.15-s step (3 %); one persistent worker made the training loop wait 10-12
    ms a step (its batches cross processes, and each new epoch drains the batches it had
    prepared ahead), validation took twice as long, and the step was no faster: with
    PyTorch's two threads on the two cores, a worker has no idle core to hide its work in.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return 0 if cores <= 2 else cores // 2


class Task(pl.LightningDataModule):
    """Base task.

    Parameters
    ----------
    protocol : pyannote.database.Protocol, optional
    duration : float
        Training chunk duration, in seconds.
    min_duration : float, optional
        Shortest training chunk (variable-length training). Defaults to ``duration``.
    warm_up : float or (float, float)
        Seconds at each end of a chunk excluded from the loss (FRAME resolution).
    batch_size : int
    num_workers : int, optional
        Dataloader workers; default :func:`default_num_workers` (none on two cores, else half the cores).
    pin_memory : bool
    augmentation : callable, optional
        Applied to each training batch of waveforms (batch, channels, samples); the
        torch-audiomentations calling convention works.
    """

    def __init__(
        self,
        protocol,
        duration: float = 2.0,
        min_duration: Optional[float] = None,
        warm_up: Union[float, Tuple[float, float]] = 0.0,
        batch_size: int = 32,
        num_workers: Optional[int] = None,
        pin_memory: bool = False,
        augmentation: Optional[Callable] = None,
    ):
        super().__init__()
        # a protocol-less task (synthetic data) is allowed: its hooks make the samples
        self.protocol = None if protocol is None else prepare_protocol(protocol)
        self.has_validation = protocol is not None and has_subset(self.protocol, "development")
        self.duration = float(duration)
        self.min_duration = self.duration if min_duration is None else float(min_duration)
        self.warm_up = (float(warm_up), float(warm_up)) if isinstance(warm_up, (int, float)) else tuple(warm_up)
        self.batch_size = int(batch_size)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.pin_memory = pin_memory
        self.augmentation = augmentation
        self.model = None
        self._specifications: Optional[Specifications] = None
        self._validation_metric = (None, None)

    # ---- specifications ---------------------------------------------------------
    @property
    def specifications(self) -> Specifications:
        if self._specifications is None:
            raise RuntimeError(f"{type(self).__name__} has no specifications yet: call task.setup() first.")
        return self._specifications

    @specifications.setter
    def specifications(self, specifications: Specifications) -> None:
        self._specifications = specifications

    # ---- hooks a task implements --------------------------------------------------
    def setup(self, stage: Optional[str] = None) -> None:
        """Load the metadata that sample production needs and set ``self.specifications``."""

    def train__iter__(self):
        """Yield ``{"X": (channels, samples), "y": target}`` training samples forever."""
        raise NotImplementedError(f"{type(self).__name__} must implement train__iter__.")

    def train__len__(self) -> int:
        """Number of training samples in an epoch."""
        raise NotImplementedError(f"{type(self).__name__} must implement train__len__.")

    def val__getitem__(self, index: int):
        """Validation sample number ``index``."""
        raise NotImplementedError(f"{type(self).__name__} must implement val__getitem__.")

    def val__len__(self) -> int:
        """Number of validation samples."""
        raise NotImplementedError(f"{type(self).__name__} must implement val__len__.")

    def __getstate__(self):
        # a dataloader worker started by spawn (macOS, Windows) gets a pickled copy of the
        # task: the protocol, which pyannote.database cannot pickle, stays behind; workers
        # produce samples from what setup() prepared
        state = dict(self.__dict__)
        state["protocol"] = None
        return state

    # ---- dataloaders --------------------------------------------------------------
    def collate_fn(self, samples: Sequence[dict]) -> dict[str, torch.Tensor]:
        """Batch samples (stacking "X" and "y")."""
        return collate_samples(list(samples))

    def _dataloader(self, dataset, loader: type = DataLoader, **kwargs) -> DataLoader:
        return loader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=self.collate_fn,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        return self._dataloader(TrainDataset(self), drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return self._dataloader(ValDataset(self), shuffle=False, drop_last=False)

    # ---- training and validation steps ----------------------------------------------
    def frame_weight(self, num_frames: int, duration: Optional[float] = None) -> Optional[torch.Tensor]:
        """(frames,) mask that is 0 in the warm-up frames of a FRAME output, None when there are none.

        The warm-up is the specifications' (a task may set them itself, as the tutorial's
        does); ``duration`` is the chunk's, in seconds (chunks vary with ``min_duration``),
        by default the extent of its ``num_frames`` frames. The rule itself is
        ``core.frames.warm_up_mask``, shared with inference.
        """
        specifications = self.specifications
        if specifications.resolution is not Resolution.FRAME or not any(specifications.warm_up):
            return None
        frames = self.model.frames
        if duration is None:
            duration = frames.start + num_frames * frames.step
        mask = warm_up_mask(frames, num_frames, duration=duration, warm_up=specifications.warm_up)
        return torch.from_numpy(mask).float()

    def augment(self, waveforms: torch.Tensor) -> torch.Tensor:
        if self.augmentation is None:
            return waveforms
        return apply_augmentation(self.augmentation, waveforms, self.model.sample_rate)

    def compute_loss(
        self, y_pred: torch.Tensor, y: torch.Tensor, duration: Optional[float] = None, *,
        mask: Optional[torch.Tensor] = None, weight: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """Default loss for the specifications over the entries that count: warm-up frames of
        ``duration``-second chunks, and entries where ``mask`` is 0, are left out; samples
        are weighted by ``weight`` (batch,)."""
        loss = objectives.elementwise_loss(self.specifications, y_pred, y)
        frame_weight = self.frame_weight(y_pred.shape[1], duration) if y_pred.ndim == 3 else None
        return objectives.reduce_loss(loss, objectives.entry_weights(loss, mask=mask, weight=weight, frame_weight=frame_weight))

    def chunk_duration(self, waveforms: torch.Tensor) -> float:
        """Duration in seconds of a batch of (batch, channels, samples) chunks."""
        return waveforms.shape[-1] / self.model.sample_rate

    #: training stops with FloatingPointError at this many non-finite losses in a row (each
    #: batch before is skipped with a warning); ``audiotask train --max-nonfinite-losses``
    max_nonfinite_losses: int = 5
    #: non-finite losses since the last finite one (kept in checkpoints: a resumed run stops where
    #: the uninterrupted one would)
    nonfinite_losses_in_a_row: int = 0

    def training_step(self, batch, batch_idx: int):
        waveforms = self.augment(batch["X"])
        y_pred = self.model(waveforms)
        loss = self.compute_loss(
            y_pred, batch["y"], self.chunk_duration(waveforms), mask=batch.get("mask"), weight=batch.get("weight")
        )
        return self.checked_loss(loss, waveforms, batch_idx)

    def checked_loss(self, loss: torch.Tensor, waveforms: torch.Tensor, batch_idx: int):
        """``{"loss": loss}`` (logged) when it is finite; else None (the batch is skipped), or
        FloatingPointError after ``max_nonfinite_losses`` in a row."""
        if torch.isfinite(loss):
            self.nonfinite_losses_in_a_row = 0
            # the epoch's mean is the model's own (core/epoch_loss.py): Lightning's would not resume
            self.model.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=len(waveforms))
            self.model.epoch_loss.add(loss, len(waveforms))
            return {"loss": loss}
        # one bad batch (a corrupt file, a rare overflow) must not end a long run: on None,
        # Lightning skips the backward pass, the gradients stay None and the optimiser changes
        # no weight (the step still counts). Many in a row mean that training diverged: stop.
        self.nonfinite_losses_in_a_row += 1
        reason = "the input waveforms contain NaN or Inf" if not torch.isfinite(waveforms).all() else (
            "the model output diverged (lower the learning rate, or clip gradients?)"
        )
        where = (f"{type(self).__name__}: loss is {loss.item()} at training step {self.model.global_step} "
                 f"(batch {batch_idx} of epoch {self.model.current_epoch}): {reason}")
        if self.nonfinite_losses_in_a_row >= self.max_nonfinite_losses or self.trainer_world_size() > 1:
            # under DDP every rank must step together: Lightning cannot skip one rank's batch
            count, self.nonfinite_losses_in_a_row = self.nonfinite_losses_in_a_row, 0
            raise FloatingPointError(f"{where}; {count} non-finite losses in a row: training stopped.")
        warnings.warn(f"{where}; batch skipped ({self.nonfinite_losses_in_a_row} non-finite loss(es) in a row, "
                      f"training stops at {self.max_nonfinite_losses}).", RuntimeWarning)
        return None

    def on_optimizer_step(self) -> None:
        """Called right after each optimiser step, e.g. to update a mean teacher."""

    @property
    def monitor(self) -> tuple[str, str]:
        """``(logged metric, "min" or "max")`` by which training keeps its best checkpoint."""
        return "val/loss", "min"

    def checkpoint_extras(self) -> dict:
        """Plain values (tensors, numbers, strings) a task adds to training checkpoints."""
        return {}

    def restore_extras(self, checkpoint: dict) -> None:
        """Take back what :meth:`checkpoint_extras` saved, when a run resumes."""

    def trainer_world_size(self) -> int:
        """Processes training together (1 without a trainer)."""
        trainer = getattr(self.model, "_trainer", None)
        return 1 if trainer is None else int(trainer.world_size)

    def setup_training_heads(self, model) -> None:
        """Add the modules that train with the model but are not part of it (see
        ``Model.add_training_head``), once the specifications are known."""

    def setup_metrics(self, model) -> None:
        """Create the default validation metric for the specifications, on the model's device."""
        name, metric = objectives.validation_metric(self.specifications)
        self._validation_metric = (name, None if metric is None else metric.to(model.device))

    def validation_mask(self, y_pred: torch.Tensor, batch: dict, duration: float) -> Optional[torch.Tensor]:
        """Which output entries the metric counts: the batch's ``mask`` outside warm-up frames."""
        mask = batch.get("mask")
        frame_weight = self.frame_weight(y_pred.shape[1], duration) if y_pred.ndim == 3 else None
        if frame_weight is None:
            return mask
        warm = frame_weight.bool().to(y_pred.device).reshape(1, -1, 1).expand(y_pred.shape)
        return warm if mask is None else warm & objectives.broadcast_mask(mask.bool(), y_pred.shape)

    def repeated_validation_samples(self, batch_idx: int, size: int) -> Optional[torch.Tensor]:
        """(size,) bool: which samples of this process's validation batch ``batch_idx`` (of
        ``size`` samples) another process validates too, None when none is.

        Under DDP, Lightning deals the validation set out with a ``DistributedSampler``, which
        pads the shares to one length with items of the set's start: validated twice, they
        would count twice in the loss and the metrics, which then differ from one process's
        (an AnnotatedTask's items are whole batches: a repeated item is a whole batch). The
        sampler puts item ``k`` of process ``r`` at place ``r + k * replicas`` of its padded
        order, and the padding after the set's ``len(dataset)`` places.
        """
        from torch.utils.data import BatchSampler, DistributedSampler

        if self.trainer_world_size() <= 1:
            return None
        loaders = self.model.trainer.val_dataloaders
        if isinstance(loaders, (list, tuple)):
            loaders = loaders[0] if len(loaders) == 1 else None
        sampler = getattr(loaders, "sampler", None)
        if not isinstance(sampler, DistributedSampler) or sampler.drop_last:
            return None  # a split without padding (or none Lightning made)
        if loaders.batch_sampler is None:  # batch_size=None: each item is a whole batch
            items = torch.full((size,), batch_idx)
        elif type(loaders.batch_sampler) is BatchSampler and loaders.batch_sampler.sampler is sampler:
            items = batch_idx * loaders.batch_sampler.batch_size + torch.arange(size)
        else:
            return None  # a batch sampler of its own: which items a batch holds is its business
        repeated = sampler.rank + items * sampler.num_replicas >= len(sampler.dataset)
        return repeated if bool(repeated.any()) else None

    def counted_validation_batch(self, batch: dict, batch_idx: int) -> dict:
        """``batch``, its samples that another process validates too (see
        :meth:`repeated_validation_samples`) masked out and flagged in ``batch["repeated"]``:
        they count for nothing in the loss and the metrics, as in one process."""
        repeated = self.repeated_validation_samples(batch_idx, len(batch["X"]))
        if repeated is None:
            return batch
        repeated = repeated.to(batch["X"].device)
        counted = ~repeated
        mask = batch.get("mask")
        if mask is None:
            mask = counted
        else:
            mask = mask * counted.reshape(-1, *([1] * (mask.ndim - 1))).to(mask.dtype)
        return {**batch, "mask": mask, "repeated": repeated}

    def validation_step(self, batch, batch_idx: int):
        return self.validate_outputs(self.model(batch["X"]), self.counted_validation_batch(batch, batch_idx))

    def log_validation_loss(self, loss: torch.Tensor, batch: dict) -> None:
        """Log ``loss``, the validation loss of ``batch``, as ``val/loss``, its samples flagged in
        ``batch["repeated"]`` (see :meth:`counted_validation_batch`) left out of the count."""
        # synced: checkpoint selection and early stopping monitor it on every rank. Lightning
        # averages loss x batch_size and batch_size over the ranks, so the figure is that of
        # one process provided that repeated samples are left out of both (a wholly repeated
        # batch logs 0 with a batch size of 0: every rank still logs, as the sync needs) and
        # that the batch size is a float: Lightning accumulates an int batch size in an int
        # tensor, whose mean over the ranks truncates (gloo and NCCL alike) when the ranks'
        # shares are unequal, inflating the loss (Lightning-AI/pytorch-lightning#21838; seen:
        # 0.919 on two ranks for one process's 0.735)
        repeated = batch.get("repeated")
        size = len(batch["X"]) if repeated is None else len(batch["X"]) - int(repeated.sum())
        logged = loss if size else torch.zeros_like(loss)
        self.model.log("val/loss", logged, prog_bar=True, on_epoch=True, batch_size=float(size), sync_dist=True)

    def validate_outputs(self, y_pred: torch.Tensor, batch: dict):
        """Log the validation loss of the model's outputs ``y_pred`` on ``batch``, and update the metric
        (samples flagged in ``batch["repeated"]``, see :meth:`counted_validation_batch`, count for nothing)."""
        waveforms = batch["X"]
        duration = self.chunk_duration(waveforms)
        loss = self.compute_loss(y_pred, batch["y"], duration, mask=batch.get("mask"), weight=batch.get("weight"))
        self.log_validation_loss(loss, batch)
        name, metric = self._validation_metric
        if metric is not None:
            mask = self.validation_mask(y_pred, batch, duration)
            metric.to(y_pred.device).update(*objectives.metric_inputs(self.specifications, y_pred, batch["y"], mask))
        return {"loss": loss}

    def on_validation_epoch_end(self) -> None:
        name, metric = self._validation_metric
        if metric is None or not metric.update_called:
            return
        self.model.log(f"val/{name}", metric.compute(), prog_bar=True)
        metric.reset()

    # ---- helpers for subclasses ---------------------------------------------------------
    def default_train_len(self, total_duration: float) -> int:
        """Samples per epoch: the training set's duration in chunks, at least one batch."""
        return max(self.batch_size, math.ceil(total_duration / self.duration))
