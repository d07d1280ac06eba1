"""Audio tagging: which classes occur in a clip (FSD50K, DCASE weak labels)?"""

from __future__ import annotations

from typing import Optional, Sequence, Union

from torchmetrics import Metric

from audiotask.core.specifications import Problem
from audiotask.engine.builders import ChunkTags, TargetBuilder
from audiotask.engine.clip_task import ClipTask, PositiveClassMAP, clip_tags, unknown_label_error
from audiotask.engine.metadata import SubsetMetadata
from audiotask.engine.preparation import STRONG, WEAK


class ClipTags(ChunkTags):
    """Multi-hot (chunks, classes) of a clip's tags and, for a strongly labelled file, of the
    classes with a segment in the chunk; with ``strict``, a tag outside the classes is an
    error (the classes then come from the training clips: a validation clip's tag that no
    training clip has could never be predicted)."""

    def __init__(self, key: str = "y", strict: bool = True):
        super().__init__(key)
        self.strict = strict

    def check(self, subset: SubsetMetadata, classes: list, subset_name: str) -> None:
        if not self.strict:
            return  # declared classes: tags outside them are not learnt (as labels of segments)
        for _, uri, tags in clip_tags(subset, (WEAK,)):
            unknown = [tag for tag in tags if tag not in classes]
            if unknown:
                raise unknown_label_error(subset_name, uri, unknown[0], classes)


class AudioTagging(ClipTask):
    """Multi-label tagging of whole clips: which classes occur in each.

    Tags come from weak labels (a DCASE weak-label TSV, ``filename<TAB>Dog,Speech``, or a
    clip CSV's ``labels`` column) and from strong labels too: a strongly labelled file's
    classes with a segment in the chunk are its tags. Trains on whole clips (a random
    ``duration`` crop of a longer one, a shorter one zero-padded). Validation logs ``val/mAP``,
    the macro mean average precision over the classes with a positive validation chunk,
    by which the kept checkpoint is chosen.

    Parameters
    ----------
    protocol : pyannote.database.Protocol
    classes : list of str, optional
        Output classes, in order. Defaults to the tags of the training clips, sorted; then a
        validation clip's tag outside them is an error. Declared classes leave other tags out.
    fold : str or int, optional
        Validate on the training clips of this fold and train on the others (see
        :class:`~audiotask.engine.clip_task.ClipTask`).
    duration : float
        Chunk duration (seconds): DCASE's 10-second clips by default.
    **kwargs
        See :class:`~audiotask.engine.annotated_task.AnnotatedTask`.
    """

    problem = Problem.MULTI_LABEL_CLASSIFICATION
    task_name = "audio-tagging"
    label_kinds = (STRONG, WEAK)
    selection_metric = "mAP"

    def __init__(self, protocol, classes: Optional[Sequence[str]] = None, *, fold: Union[str, int, None] = None,
                 duration: float = 10.0, **kwargs):
        super().__init__(protocol, classes, fold=fold, duration=duration, **kwargs)

    def target_builders(self) -> list[TargetBuilder]:
        return [ClipTags(strict=self.classes is None)]

    def validation_metrics(self) -> dict[str, Metric]:
        return {"mAP": PositiveClassMAP(self.specifications.num_outputs)}
