"""Overlapped speech detection: are two or more people speaking at once, frame by frame?"""

from __future__ import annotations

from audiotask.core.specifications import Problem, Resolution
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.builders import FrameOverlap, TargetBuilder


class OverlappedSpeechDetection(AnnotatedTask):
    """Binary FRAME-resolution task: a frame is "overlap" when two or more DISTINCT tracks
    (speakers: the labels of an RTTM) are active; two overlapping turns of one speaker are
    not overlap.

    Evaluate it with ``audiotask evaluate --task osd`` (detection error rate on the overlap
    regions of a reference RTTM). Parameters are those of
    :class:`~audiotask.engine.annotated_task.AnnotatedTask`.
    """

    CLASSES = ["overlap"]
    problem = Problem.BINARY_CLASSIFICATION
    task_name = "overlapped-speech-detection"
    resolution = Resolution.FRAME
    labels_are_classes = False  # labels are speakers, counted as tracks

    def __init__(self, protocol, *, duration: float = 5.0, **kwargs):
        super().__init__(protocol, duration=duration, **kwargs)

    def known_classes(self) -> list[str]:
        return list(self.CLASSES)

    def target_builders(self) -> list[TargetBuilder]:
        return [FrameOverlap(min_tracks=2)]
