"""What a task asks of a model: the problem, its time resolution, chunk duration and classes.

The model's output head, activation, loss and validation metrics are all derived from a
``Specifications`` object (heads: ``audiotask.core.model``; losses and metrics:
``audiotask.core.objectives``), never chosen twice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any, Optional, Sequence, Tuple, Union


class Problem(Enum):
    """Kind of machine-learning problem a task poses."""

    BINARY_CLASSIFICATION = "binary_classification"
    MONO_LABEL_CLASSIFICATION = "mono_label_classification"
    MULTI_LABEL_CLASSIFICATION = "multi_label_classification"
    REGRESSION = "regression"
    REPRESENTATION = "representation"


class Resolution(Enum):
    """One prediction per chunk, or a sequence of predictions (one per frame)."""

    FRAME = "frame"
    CHUNK = "chunk"


CLASSIFICATION = (
    Problem.BINARY_CLASSIFICATION,
    Problem.MONO_LABEL_CLASSIFICATION,
    Problem.MULTI_LABEL_CLASSIFICATION,
)

#: Fields that only say how chunks are cut. A model's head never depends on them, so a
#: model fine-tuned on chunks of another duration keeps its head. Every other field counts
#: as shaping the head (see ``Specifications.head_fields``): a field added later is then
#: safe by default, since rebuilding a head keeps the weights that still fit.
CHUNKING_FIELDS = ("duration", "min_duration", "warm_up")
#: key of ``extra`` naming the task that made the specifications (its registry name)
TASK_NAME = "task"


def _as_warm_up(warm_up: Union[float, Sequence[float]]) -> Tuple[float, float]:
    if isinstance(warm_up, (int, float)):
        return (float(warm_up), float(warm_up))
    left, right = warm_up
    return (float(left), float(right))


@dataclass
class Specifications:
    """Problem specifications.

    Parameters
    ----------
    problem : Problem
    resolution : Resolution
    duration : float
        Duration of the chunks the model ingests, in seconds.
    min_duration : float, optional
        Shortest chunk used in training (variable-length training). Defaults to ``duration``.
    warm_up : float or (float, float)
        Seconds at the left and right of each chunk that are excluded from the loss and
        down-weighted at inference, because the model lacks context there.
    classes : list of str
        Class names, in the order of the model's outputs. Required for classification;
        a binary problem has exactly one class (the positive one).
    permutation_invariant : bool
        Reserved for tasks whose output order is arbitrary (speaker segmentation).
    """

    problem: Problem
    resolution: Resolution
    duration: float
    min_duration: Optional[float] = None
    warm_up: Tuple[float, float] = (0.0, 0.0)
    classes: Optional[list] = None
    permutation_invariant: bool = False
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.problem = Problem(self.problem)
        self.resolution = Resolution(self.resolution)
        self.warm_up = _as_warm_up(self.warm_up)
        if self.classes is not None:
            self.classes = [str(c) for c in self.classes]
        self._validate()

    def _validate(self) -> None:
        if not self.duration > 0:
            raise ValueError(f"Specifications: duration must be positive, got {self.duration}.")
        if self.min_duration is not None and not 0 < self.min_duration <= self.duration:
            raise ValueError(
                f"Specifications: min_duration must be in (0, duration={self.duration}], got {self.min_duration}."
            )
        shortest = self.duration if self.min_duration is None else self.min_duration
        if min(self.warm_up) < 0 or sum(self.warm_up) >= shortest:
            raise ValueError(
                f"Specifications: warm_up {self.warm_up} must be non-negative and leave part of the "
                f"shortest ({shortest}s) chunk."
            )
        if self.problem in CLASSIFICATION and not self.classes:
            raise ValueError(f"Specifications: {self.problem.name} needs a non-empty list of classes.")
        if self.classes is not None and len(set(self.classes)) != len(self.classes):
            duplicated = sorted({c for c in self.classes if self.classes.count(c) > 1})
            raise ValueError(f"Specifications: class names must be unique, repeated: {duplicated}.")
        if self.problem is Problem.BINARY_CLASSIFICATION and len(self.classes) != 1:
            raise ValueError(
                f"Specifications: BINARY_CLASSIFICATION has exactly one (positive) class, got {self.classes}."
            )

    @classmethod
    def head_fields(cls) -> tuple[str, ...]:
        """Names of the fields a model's ``build()`` may read: all but :data:`CHUNKING_FIELDS`."""
        return tuple(f.name for f in fields(cls) if f.name not in CHUNKING_FIELDS)

    def head_changes(self, other: "Specifications") -> dict[str, tuple[Any, Any]]:
        """``{field: (ours, other's)}`` for each head field that differs in ``other``.

        Empty when a head built for ``self`` also fits ``other`` (e.g. only the chunk
        duration or the warm-up differ). The task's name in ``extra`` says which task trained
        the model, not what shape its head has: a voice activity detector fine-tuned for
        overlapped speech keeps its head.
        """
        changes = {}
        for name in self.head_fields():
            ours, theirs = getattr(self, name), getattr(other, name)
            if name == "extra":
                ours, theirs = without_task_name(ours), without_task_name(theirs)
            if ours != theirs:
                changes[name] = (ours, theirs)
        return changes

    @property
    def task_name(self) -> Optional[str]:
        """The registry name of the task that made these specifications (None: not said)."""
        return self.extra.get(TASK_NAME)

    @property
    def num_outputs(self) -> int:
        """Size of the model's output layer."""
        if self.problem is Problem.BINARY_CLASSIFICATION:
            return 1
        if self.classes:
            return len(self.classes)
        return int(self.extra.get("dimension", 1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (used by model manifests)."""
        description = asdict(self)
        description["problem"] = self.problem.value
        description["resolution"] = self.resolution.value
        description["warm_up"] = list(self.warm_up)
        return description

    @classmethod
    def from_dict(cls, description: dict[str, Any]) -> "Specifications":
        return cls(**description)


def without_task_name(extra: dict) -> dict:
    """``extra`` without the task's name (see :meth:`Specifications.head_changes`)."""
    return {key: value for key, value in extra.items() if key != TASK_NAME}
