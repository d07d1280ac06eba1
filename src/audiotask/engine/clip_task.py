"""What clip-level tasks (classification, tagging) share: whole clips, folds, clip metrics.

A clip task decides once per clip. Its training chunks are whole clips (``sampling="clips"``:
a random crop of a long clip, a short one zero-padded), its targets come from the clip's
weak labels (its tags), and with ``fold`` it trains on every fold of the training files but
one and validates on that one (``engine.folds``). Its validation metrics are torchmetrics
metrics logged as ``val/<name>``, one of which picks the kept checkpoint.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MultilabelAveragePrecision

from audiotask.core import objectives
from audiotask.core.specifications import Resolution
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.folds import FOLD, split_by_fold
from audiotask.engine.metadata import ProtocolMetadata, SubsetMetadata
from audiotask.engine.preparation import WEAK


def clip_tags(subset: SubsetMetadata, kinds: Sequence[str] = (WEAK,)) -> list[tuple[int, str, list[str]]]:
    """``(file index, uri, tags)`` of the files of ``subset`` whose label kind is in ``kinds``."""
    usable = np.isin(subset.attribute("label_kind"), kinds)
    return [
        (index, uri, [name for name in value.split(",") if name])
        for index, (uri, value) in enumerate(zip(subset.uri.tolist(), subset.attribute("tags").tolist()))
        if usable[index]
    ]


def unknown_label_error(subset_name: str, uri: str, label: str, classes: Sequence[str]) -> ValueError:
    """The error of a clip labelled outside the classes: a development clip's label that no
    training clip has cannot be predicted (with folds: no clip of the other folds has it)."""
    if subset_name == "train":
        return ValueError(f"train file {uri!r} is labelled {label!r}, which is not one of the classes {list(classes)}.")
    return ValueError(
        f"{subset_name} file {uri!r} is labelled {label!r}, which is absent from the training classes "
        f"{list(classes)}: no training clip has it (with folds, no clip of the other folds)."
    )


class PositiveClassMAP(MultilabelAveragePrecision):
    """Macro mean average precision over the classes with at least one positive target.

    torchmetrics gives a class without positives an AP of 0 (and a warning), which would pull
    the mean down for a validation fold that merely lacks the class: such classes are left out.
    """

    def __init__(self, num_labels: int, **kwargs):
        super().__init__(num_labels=num_labels, average=None, ignore_index=objectives.IGNORE, **kwargs)
        self.add_state("positives", torch.zeros(num_labels), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        super().update(preds, target)
        self.positives += (target == 1).sum(dim=0).to(self.positives)

    def compute(self) -> torch.Tensor:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No positive samples")
            per_class = super().compute()
        counted = self.positives > 0
        return per_class[counted].mean() if counted.any() else torch.tensor(0.0, device=per_class.device)


class ClipTask(AnnotatedTask):
    """Base of the clip-level tasks: CHUNK resolution, whole clips, weak labels, folds.

    Parameters
    ----------
    protocol : pyannote.database.Protocol
        E.g. a clip CSV's (``protocols.clip_tables.write_clip_database``).
    classes : list of str, optional
        Output classes, in order. Defaults to the labels of the training files, sorted.
    fold : str or int, optional
        Cross-validation fold to validate on: the training files of the other folds are
        trained on, those of this fold validated on (the protocol's development subset is
        then not used). Files get their fold from a clip CSV's ``fold`` column or a protocol
        key ``fold``. None: the protocol's development subset, as usual.
    augmentation : DetectionAugmentation or callable, optional
        A :class:`~audiotask.augmentation.recipe.DetectionAugmentation` augments the log-mel
        of a model that exposes it (as ``CRNN`` does) with the clips' targets: mixup mixes
        clips and their labels (soft targets), FilterAugment and masks the spectrogram. Any
        other callable is a waveform augmentation (see ``Task``). Default: none.
    **kwargs
        See :class:`~audiotask.engine.annotated_task.AnnotatedTask` (``duration``...).
    """

    resolution = Resolution.CHUNK
    sampling = "clips"
    label_kinds = (WEAK,)
    #: the validation metric (a key of :meth:`validation_metrics`) that picks the kept checkpoint
    selection_metric: str = ""

    def __init__(self, protocol, classes: Optional[Sequence[str]] = None, *, fold: Union[str, int, None] = None,
                 duration: float = 5.0, **kwargs):
        from audiotask.augmentation.recipe import DetectionAugmentation

        self.classes = None if classes is None else [str(c) for c in classes]
        augmentation = kwargs.pop("augmentation", None)
        self.recipe = augmentation if isinstance(augmentation, DetectionAugmentation) else DetectionAugmentation.none()
        if augmentation is not None and not isinstance(augmentation, DetectionAugmentation):
            kwargs["augmentation"] = augmentation
        self.fold = None if fold is None else str(fold).strip()
        if self.fold == "":
            raise ValueError(f"{type(self).__name__}: fold must name a fold (e.g. 1), got an empty string.")
        super().__init__(protocol, duration=duration, **kwargs)
        if self.fold is not None:
            self.has_validation = True  # the fold's files, split off the training files

    def known_classes(self) -> Optional[list[str]]:
        return self.classes

    def file_attributes(self) -> tuple[str, ...]:
        return (*super().file_attributes(), FOLD)

    @property
    def subsets(self) -> list[str]:
        # with a fold, training and validation files both come from the train subset
        return ["train"] if self.fold is not None else super().subsets

    def load_metadata(self) -> ProtocolMetadata:
        """The prepared metadata; with ``fold``, its training files split into "train" (the
        other folds) and "development" (this fold). Every fold shares one preparation."""
        metadata = super().load_metadata()
        if self.fold is None:
            return metadata
        return split_by_fold(metadata, self.fold, owner=type(self).__name__)

    # ---- training -----------------------------------------------------------------------
    def soft_targets(self, y: torch.Tensor) -> torch.Tensor:
        """(batch, classes) float targets of a batch's ``y``, which mixup may blend."""
        return y.float()

    def soft_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of (batch, classes) logits against (batch, classes) soft targets."""
        return F.binary_cross_entropy_with_logits(logits, targets)

    def training_step(self, batch, batch_idx: int):
        from audiotask.augmentation.draws import step_generator
        from audiotask.augmentation.recipe import DetectionAugmentation

        model = self.model
        if self.recipe == DetectionAugmentation.none() or not hasattr(model, "forward_spectrogram"):
            return super().training_step(batch, batch_idx)
        generator = step_generator(model.global_step)
        waveforms = self.recipe.waveforms(self.augment(batch["X"]), sample_rate=self.sample_rate, generator=generator)
        targets = self.soft_targets(batch["y"])
        rows = torch.ones(len(targets), dtype=torch.bool)
        no_frames = torch.zeros(len(targets), 1, 1)  # clip labels only: nothing to move with a time shift
        spectrogram, _, targets = self.recipe.spectrogram(
            model.spectrogram(waveforms), no_frames, targets, strong=~rows, weak=rows,
            pooling=model.spectrogram_frames_per_output, generator=generator,
            bands=getattr(model, "spectrogram_bands", None),
        )
        loss = self.soft_loss(model.forward_spectrogram(spectrogram), targets)
        return self.checked_loss(loss, waveforms, batch_idx)

    # ---- validation ---------------------------------------------------------------------
    def validation_metrics(self) -> dict[str, Metric]:
        """``{name: metric}`` updated with (scores, targets) of every validation chunk."""
        raise NotImplementedError

    @property
    def monitor(self) -> tuple[str, str]:
        if not self.has_validation:
            return super().monitor
        return f"val/{self.selection_metric}", "max"

    def setup_metrics(self, model) -> None:
        self._validation_metric = (None, None)  # ours replace the default one
        self.clip_metrics = {name: metric.to(model.device) for name, metric in self.validation_metrics().items()}

    def validate_outputs(self, y_pred: torch.Tensor, batch: dict):
        output = super().validate_outputs(y_pred, batch)
        inputs = objectives.metric_inputs(self.specifications, y_pred, batch["y"], batch.get("mask"))
        for metric in getattr(self, "clip_metrics", {}).values():
            metric.to(y_pred.device).update(*inputs)
        return output

    def on_validation_epoch_end(self) -> None:
        for name, metric in getattr(self, "clip_metrics", {}).items():
            if metric.update_called:
                self.model.log(f"val/{name}", metric.compute(), prog_bar=name == self.selection_metric)
            metric.reset()
