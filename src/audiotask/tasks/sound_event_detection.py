"""Sound event detection: which sound classes are active, per chunk or per frame?"""

from __future__ import annotations

from typing import Optional, Sequence

from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.core.specifications import Problem, Resolution

#: The ten classes of DCASE's domestic sound event detection task (DESED).
DCASE_CLASSES = [
    "Speech", "Dog", "Cat", "Alarm_bell_ringing", "Dishes",
    "Frying", "Blender", "Running_water", "Vacuum_cleaner", "Electric_shaver_toothbrush",
]


class SoundEventDetection(AnnotatedTask):
    """Multi-label sound event detection.

    Parameters
    ----------
    protocol : pyannote.database.Protocol
    classes : list of str, optional
        Class names, in the order of the model's outputs. Labels are mapped by name; labels
        outside ``classes`` are reported and ignored. Defaults to the labels of the
        training set, sorted.
    resolution : Resolution or "chunk" / "frame"
        CHUNK (one decision per chunk; the default, as in the tutorial) or FRAME (one
        per frame). Both learn from strongly labelled files: the targets of a chunk come
        from the events inside it, and files with weak labels only (a DCASE weak-label
        TSV) are left out, with a warning that names them.
    **kwargs
        See :class:`~audiotask.engine.annotated_task.AnnotatedTask`.
    """

    problem = Problem.MULTI_LABEL_CLASSIFICATION

    def __init__(
        self,
        protocol,
        classes: Optional[Sequence[str]] = None,
        resolution: Resolution | str = Resolution.CHUNK,
        duration: float = 5.0,
        **kwargs,
    ):
        self.classes = None if classes is None else [str(c) for c in classes]
        self.resolution = Resolution(resolution)
        super().__init__(protocol, duration=duration, **kwargs)

    def known_classes(self) -> Optional[list[str]]:
        return self.classes
