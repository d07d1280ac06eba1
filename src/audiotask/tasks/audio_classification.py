"""Audio classification: which one class does a clip belong to (ESC-50, UrbanSound8K)?"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from audiotask.core.objectives import IGNORE
from audiotask.core.specifications import Problem
from audiotask.engine.builders import ChunkClassIndex, TargetBuilder
from audiotask.engine.clip_task import ClipTask, clip_tags, unknown_label_error
from audiotask.engine.metadata import SubsetMetadata
from audiotask.engine.preparation import WEAK


class ClipClassIndex(ChunkClassIndex):
    """(chunks,) int64 index of the one class each clip is labelled with (its tags)."""

    def __init__(self, key: str = "y"):
        super().__init__(attribute="tags", key=key)

    def check(self, subset: SubsetMetadata, classes: list, subset_name: str) -> None:
        for _, uri, labels in clip_tags(subset, (WEAK,)):
            if len(labels) != 1:
                found = f"{len(labels)} labels ({', '.join(labels)})" if labels else "no label"
                raise ValueError(f"{subset_name} file {uri!r} has {found}: audio classification needs exactly one "
                                 "label per clip (audio-tagging learns several).")
            if labels[0] not in classes:
                raise unknown_label_error(subset_name, uri, labels[0], classes)


class AudioClassification(ClipTask):
    """Mono-label classification of whole clips: one class per clip, from its label.

    Trains on whole clips (a random ``duration`` crop of a longer one, a shorter one
    zero-padded); each clip is weakly labelled with exactly one label (a clip CSV's label
    column, see ``protocols.clip_tables``). Validation logs ``val/accuracy`` (the share of
    validation chunks whose top class is right) and ``val/macro_f1``; the checkpoint with the
    best accuracy is kept.

    Parameters
    ----------
    protocol : pyannote.database.Protocol
    classes : list of str, optional
        Output classes, in order. Defaults to the labels of the training clips, sorted.
    fold : str or int, optional
        Validate on the training clips of this fold and train on the others (cross-
        validation, see :class:`~audiotask.engine.clip_task.ClipTask`).
    duration : float
        Chunk duration (seconds): ESC-50's 5-second clips by default.
    **kwargs
        See :class:`~audiotask.engine.annotated_task.AnnotatedTask`.
    """

    problem = Problem.MONO_LABEL_CLASSIFICATION
    task_name = "audio-classification"
    selection_metric = "accuracy"

    def __init__(self, protocol, classes: Optional[Sequence[str]] = None, *, fold: Union[str, int, None] = None,
                 duration: float = 5.0, **kwargs):
        super().__init__(protocol, classes, fold=fold, duration=duration, **kwargs)

    def target_builders(self) -> list[TargetBuilder]:
        return [ClipClassIndex()]

    def soft_targets(self, y: torch.Tensor) -> torch.Tensor:
        return F.one_hot(y.long(), self.specifications.num_outputs).float()

    def soft_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # cross-entropy against a distribution: a mixed-up clip is lambda of one class, 1 - lambda of another
        return -(targets * F.log_softmax(logits, dim=-1)).sum(dim=-1).mean()

    def validation_metrics(self) -> dict[str, Metric]:
        count = self.specifications.num_outputs
        return {
            "accuracy": MulticlassAccuracy(num_classes=count, average="micro", ignore_index=IGNORE),
            "macro_f1": MulticlassF1Score(num_classes=count, average="macro", ignore_index=IGNORE),
        }
