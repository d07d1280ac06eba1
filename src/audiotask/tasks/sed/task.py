"""Sound event detection: which sound classes are active, per chunk or per frame?

:class:`SoundEventDetection` is the plain task: one multi-label decision per chunk (the
tutorial's task), trained on strong labels by the shared engine. Asked for FRAME resolution,
it is DCASE's recipe (``tasks/sed/recipe.py``): ``SoundEventDetection(protocol,
resolution="frame")`` returns a :class:`~audiotask.tasks.sed.recipe.DetectionRecipe`, a
subclass, as ``pathlib.Path()`` returns a ``PosixPath``. The recipe registers itself
(:attr:`SoundEventDetection.frame_task`) when its module is imported, which importing
``audiotask.tasks.sed`` does: this module does not import the recipe.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Sequence

from audiotask.core.specifications import Problem, Resolution
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.preparation import STRONG, UNLABELLED, WEAK

#: The ten classes of DCASE's domestic sound event detection task (DESED).
DCASE_CLASSES = [
    "Speech", "Dog", "Cat", "Alarm_bell_ringing", "Dishes",
    "Frying", "Blender", "Running_water", "Vacuum_cleaner", "Electric_shaver_toothbrush",
]

#: DCASE baseline's batch: strong, weak and unlabelled files in 1 : 1 : 2
DCASE_PROPORTIONS = {STRONG: 1.0, WEAK: 1.0, UNLABELLED: 2.0}

#: the options that only the FRAME recipe takes (given to the CHUNK task: refused)
RECIPE_OPTIONS = ("kind_proportions", "mean_teacher", "teacher_decay", "consistency_weight",
                  "consistency_ramp_up", "mixing", "select_by")


class SoundEventDetection(AnnotatedTask):
    """Multi-label sound event detection.

    Parameters
    ----------
    protocol : pyannote.database.Protocol
        At CHUNK resolution, its strongly labelled training files (an ``Annotation``); at
        FRAME resolution, strong labels, weak labels (``WeakLabels``, a DCASE weak TSV) and
        none (a file without "annotation") may mix, e.g. through a pyannote.database
        meta-protocol.
    classes : list of str, optional
        Class names, in the order of the model's outputs. Labels are mapped by name; labels
        outside ``classes`` are reported and ignored. Defaults to the labels of the
        training set, sorted.
    resolution : Resolution or "chunk" / "frame"
        CHUNK (one decision per chunk; the default, as in the tutorial) or FRAME (one per
        frame: DCASE's recipe, whose options are those of
        :class:`~audiotask.tasks.sed.recipe.DetectionRecipe`).
    augmentation : callable, optional
        CHUNK: the base ``Task``'s waveform augmentation (FRAME: a ``DetectionAugmentation``).
    """

    problem = Problem.MULTI_LABEL_CLASSIFICATION
    task_name = "sound-event-detection"
    #: the subclass that trains at FRAME resolution (``recipe.py`` registers DetectionRecipe)
    frame_task: ClassVar[Optional[type]] = None

    def __new__(cls, *args, **kwargs):
        resolution = kwargs.get("resolution", args[2] if len(args) > 2 else Resolution.CHUNK)
        if cls is SoundEventDetection and Resolution(resolution) is Resolution.FRAME:
            if cls.frame_task is None:  # only when task.py is loaded without its package
                raise RuntimeError("SoundEventDetection: import audiotask.tasks.sed for FRAME resolution")
            return super().__new__(cls.frame_task)
        return super().__new__(cls)

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
        if self.resolution is Resolution.CHUNK:
            given = [name for name in RECIPE_OPTIONS if kwargs.get(name) is not None]
            if given:
                raise ValueError(f"SoundEventDetection: {', '.join(given)} applies to FRAME resolution only.")
        super().__init__(protocol, duration=duration, **kwargs)

    def known_classes(self) -> Optional[list[str]]:
        return self.classes
