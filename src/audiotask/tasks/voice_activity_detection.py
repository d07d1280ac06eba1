"""Voice activity detection: is anybody speaking, frame by frame?"""

from __future__ import annotations

from typing import Callable

from audiotask.core.annotated_task import AnnotatedTask
from audiotask.core.specifications import Problem, Resolution


class VoiceActivityDetection(AnnotatedTask):
    """Binary FRAME-resolution task: a frame is "speech" when any annotated label is active.

    Every label of the protocol's annotations (e.g. speaker names in RTTM) counts as speech.
    Parameters are those of :class:`~audiotask.core.annotated_task.AnnotatedTask`.
    """

    CLASSES = ["speech"]
    problem = Problem.BINARY_CLASSIFICATION
    resolution = Resolution.FRAME

    def known_classes(self) -> list[str]:
        return list(self.CLASSES)

    def label_index(self, classes: list[str]) -> Callable[[str], int]:
        return lambda label: 0
