"""Multi-label segmentation over declared classes, from files that annotate only some of them."""

from __future__ import annotations

from typing import Optional, Sequence

from audiotask.core.specifications import Problem, Resolution
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.builders import AnnotatedClassMask, FrameClasses, TargetBuilder


class MultiLabelSegmentation(AnnotatedTask):
    """FRAME-resolution multi-label classification where each file may annotate only some
    classes: the file attribute ``annotated_classes`` (a protocol key, e.g. a ``.map`` or
    ``.txt`` file in ``database.yml``, or a preprocessor; comma-separated class names) lists
    them, and the others are masked out of the loss and the metric for that file. A file
    without the attribute annotates every class.

    Parameters
    ----------
    protocol : pyannote.database.Protocol
    classes : list of str, optional
        Output classes, in order. Defaults to the labels of the training set, sorted.
    annotated_classes : str
        Name of the protocol key listing the classes each file annotates.
    **kwargs
        See :class:`~audiotask.engine.annotated_task.AnnotatedTask`.
    """

    problem = Problem.MULTI_LABEL_CLASSIFICATION
    task_name = "multi-label-segmentation"
    resolution = Resolution.FRAME

    def __init__(
        self, protocol, classes: Optional[Sequence[str]] = None, *, annotated_classes: str = "annotated_classes",
        duration: float = 5.0, **kwargs,
    ):
        self.classes = None if classes is None else [str(c) for c in classes]
        self.annotated_classes = annotated_classes
        super().__init__(protocol, duration=duration, **kwargs)

    def known_classes(self) -> Optional[list[str]]:
        return self.classes

    def file_attributes(self) -> tuple[str, ...]:
        return (*super().file_attributes(), self.annotated_classes)

    def target_builders(self) -> list[TargetBuilder]:
        return [FrameClasses(), AnnotatedClassMask(self.annotated_classes)]
