"""Class-wise post-processing stored beside the model: what ``audiotask apply`` reads.

:class:`PostProcessing` holds each class's threshold and median filter length, as the
tuner (``metrics/tuning.py``, which scores candidates on a development set) chose them,
and is saved as ``postprocessing.json`` in the model folder, where ``audiotask apply``
finds it. This module scores nothing: inference needs no metric.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from audiotask.io import read_json_object, write_text_atomically

FILENAME = "postprocessing.json"
FORMAT_VERSION = 1

#: sed_scores_eval's criteria for each tunable metric, at DCASE's values: intersection F1
#: with the PSDS scenario 1 criteria (dtc = gtc = 0.7), event F1 with sed_eval's collars
#: (200 ms onset, offset max(200 ms, 20 % of the event))
METRICS = {
    "intersection_f1": dict(dtc_threshold=0.7, gtc_threshold=0.7),
    "event_f1": dict(onset_collar=0.2, offset_collar=0.2, offset_collar_rate=0.2),
}

#: median filter lengths searched by default, in seconds
MEDIAN_FILTER_LENGTHS = (0.0, 0.15, 0.3, 0.45, 0.6, 0.9)

#: what a class without development events keeps: ``scores_to_events``' own defaults
UNTUNED_ONSET = 0.5
UNTUNED_MEDIAN_FILTER_LENGTH = 0.0


@dataclass
class PostProcessing:
    """Per-class thresholds and median filter lengths, as tuned by
    :func:`audiotask.metrics.tuning.tune_postprocessing`.

    Parameters
    ----------
    classes : list of str
        The model's classes, in its output order.
    onset : list of float, length classes
        Threshold of each class, in [0, 1] (no hysteresis: the offset threshold is the same).
    median_filter_length : list of float, length classes
        Median filter length of each class, in seconds (0: none).
    metric : str
        The F1 tuned for, a key of :data:`METRICS`.
    scores : list of float or None, length classes
        Each class's F1 on the development set with these settings; None for a class
        without development events (it keeps :data:`UNTUNED_ONSET` and no filter).
    settings : dict
        sed_scores_eval's criteria of ``metric`` (collars, or dtc / gtc).
    """

    classes: list[str]
    onset: list[float]
    median_filter_length: list[float]
    metric: str = "intersection_f1"
    scores: list[Optional[float]] = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.classes = [str(name) for name in self.classes]
        self.onset = [float(value) for value in self.onset]
        self.median_filter_length = [float(value) for value in self.median_filter_length]
        self.scores = [None if value is None else float(value) for value in self.scores] or [None] * len(self.classes)
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"classes must be distinct, got {self.classes}")
        for name in ("onset", "median_filter_length", "scores"):
            if len(getattr(self, name)) != len(self.classes):
                raise ValueError(f"{name} must have one value per class ({len(self.classes)}), got {getattr(self, name)}")
        if not all(0.0 <= value <= 1.0 for value in self.onset):  # NaN too
            raise ValueError(f"onset thresholds must be in [0, 1], got {self.onset}")
        if not all(0.0 <= value < math.inf for value in self.median_filter_length):
            raise ValueError(f"median filter lengths must be non-negative seconds, got {self.median_filter_length}")
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}")

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`~audiotask.inference.postprocessing.scores_to_events`."""
        return {"onset": list(self.onset), "median_filter_length": list(self.median_filter_length)}

    def to_dict(self) -> dict:
        return {
            "format": FORMAT_VERSION,
            "metric": self.metric,
            "settings": dict(self.settings),
            "classes": list(self.classes),
            "onset": list(self.onset),
            "median_filter_length": list(self.median_filter_length),
            "scores": list(self.scores),
        }

    @classmethod
    def from_dict(cls, data: Mapping, *, source: str = "post-processing") -> "PostProcessing":
        """Inverse of :meth:`to_dict`; ``ValueError`` starting with ``source`` for a malformed one."""
        try:
            if data.get("format") != FORMAT_VERSION:
                raise ValueError(f"unknown format {data.get('format')!r} (expected {FORMAT_VERSION})")
            return cls(
                classes=data["classes"], onset=data["onset"], median_filter_length=data["median_filter_length"],
                metric=data["metric"], scores=data.get("scores") or [], settings=data.get("settings") or {},
            )
        except KeyError as error:
            raise ValueError(f"{source}: missing key {error.args[0]!r}") from None
        except (ValueError, TypeError, AttributeError) as error:
            raise ValueError(f"{source}: {error}") from None

    def check_classes(self, classes: Sequence[str], *, source: str) -> None:
        """``ValueError`` naming ``source`` when ``classes`` (the model's) are not :attr:`classes`."""
        if list(classes) != self.classes:
            raise ValueError(f"{source} was tuned for the classes {self.classes}, but the model's are {list(classes)}: "
                             "tune it again with `audiotask tune`")

    def save(self, model_dir: Union[str, Path]) -> Path:
        """Write ``model_dir/postprocessing.json`` (atomically) and return its path.

        ``ValueError`` when ``model_dir`` is a saved model (``audiotask.json``) of other classes.
        """
        path = Path(model_dir) / FILENAME
        self.check_classes(_model_classes(Path(model_dir)) or self.classes, source=str(path))
        # a reader never sees a half-written file, even if this process dies mid-write
        return write_text_atomically(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, model_dir: Union[str, Path]) -> Optional["PostProcessing"]:
        """The post-processing saved in ``model_dir``; None when it has none (or is no folder).

        ``ValueError`` naming the file when it is malformed or tuned for other classes than
        those of the model saved there.
        """
        path = Path(model_dir) / FILENAME
        if not path.is_file():
            return None
        data = read_json_object(path)
        tuned = cls.from_dict(data, source=str(path))
        classes = _model_classes(Path(model_dir))
        if classes is not None:
            tuned.check_classes(classes, source=str(path))
        return tuned


def _model_classes(model_dir: Path) -> Optional[list[str]]:
    """The classes of the saved model in ``model_dir`` (its JSON manifest); None without one."""
    from audiotask.core.manifest import MANIFEST

    try:
        manifest = json.loads((model_dir / MANIFEST).read_text(encoding="utf-8"))
        return list(manifest["specifications"]["classes"])
    except (OSError, ValueError, KeyError, TypeError):  # no model there: nothing to compare with
        return None
