"""Voice activity detection: is anybody speaking, frame by frame?"""

from __future__ import annotations

import numpy as np

from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.core.specifications import Problem, Resolution


class VoiceActivityDetection(AnnotatedTask):
    """Binary FRAME-resolution task: a frame is "speech" when any annotated label is active.

    Every label of the protocol's annotations (e.g. speaker names in RTTM) counts as speech.
    Parameters are those of :class:`~audiotask.engine.annotated_task.AnnotatedTask`.
    """

    CLASSES = ["speech"]
    problem = Problem.BINARY_CLASSIFICATION
    task_name = "voice-activity-detection"
    resolution = Resolution.FRAME

    def known_classes(self) -> list[str]:
        return list(self.CLASSES)

    def label_classes(self, labels: list[str], classes: list[str]) -> np.ndarray:
        return np.zeros(len(labels), dtype=np.int64)
