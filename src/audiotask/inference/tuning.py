"""Class-wise post-processing tuned on a development set, stored beside the model.

:func:`tune_postprocessing` picks, for each class, the median filter length and the
threshold that give the best F1 on development scores; sed_scores_eval finds the best
threshold of a class exactly (over every distinct score), so only the median filter
lengths are searched here. :class:`PostProcessing` holds the result and is saved as
``postprocessing.json`` in the model folder, where ``audiotask apply`` finds it.

Scores are brought onto the cells that :func:`~audiotask.inference.postprocessing.scores_to_events`
thresholds (per-window scores spread onto step-long cells, cells past the file's end
dropped) and median-filtered as it filters them, so that a threshold tuned here gives on
the development files the events whose F1 was measured.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pyannote.core import SlidingWindowFeature

from audiotask.inference.postprocessing import median_filter
from audiotask.io import write_text_atomically

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

Scores = Union[SlidingWindowFeature, pd.DataFrame]
Event = tuple[float, float, str]


@dataclass
class PostProcessing:
    """Per-class thresholds and median filter lengths, as tuned by :func:`tune_postprocessing`.

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
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path}: invalid JSON: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object")
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


# ---- scores as sed_scores_eval sees them ----------------------------------------------
@dataclass
class _Development:
    """Development scores on the cells events are made of, and what they are compared with."""

    frames: dict[str, pd.DataFrame]  # {file: onset, offset, one column per evaluated class}
    steps: dict[str, float]  # {file: seconds between cells}, the median filter's unit
    reference: dict[str, list[Event]]  # events of the evaluated classes only
    evaluated: list[str]  # classes with development events, in the model's order


def _cells(scores: Scores, classes: Sequence[str], end: float, name: str) -> tuple[pd.DataFrame, float]:
    """``(DataFrame, step)`` of one file's scores, on the cells ``scores_to_events`` thresholds."""
    from audiotask.inference.aggregation import is_per_window, windows_to_timeline
    from audiotask.inference.formats import scores_to_dataframe

    if isinstance(scores, pd.DataFrame):
        missing = [label for label in classes if label not in scores.columns]
        if missing:
            raise ValueError(f"the scores of {name!r} have no column for {', '.join(missing)}")
        onsets = scores["onset"].to_numpy(dtype=np.float64)
        # a score file keeps cell edges, not the frame step: the usual cell width stands for it
        widths = np.diff(onsets) if len(onsets) > 1 else scores["offset"].to_numpy() - onsets
        return scores[["onset", "offset", *classes]], float(np.round(np.median(widths), 6))
    if scores.labels is not None and list(scores.labels) != list(classes):
        raise ValueError(f"the scores of {name!r} are of the classes {list(scores.labels)}, not {list(classes)}")
    if is_per_window(scores.sliding_window):
        scores = windows_to_timeline(scores, end=end)
    return scores_to_dataframe(scores, list(classes), end=end), float(scores.sliding_window.step)


def _development(
    scores: Mapping[str, Scores], reference, durations: Mapping[str, float], classes: Sequence[str]
) -> _Development:
    from audiotask.metrics.events import evaluation_set

    files, reference, seconds = evaluation_set(reference, durations)
    scores = files.rekey(scores, "the scores")
    missing = [name for name in files.names if name not in scores]
    if missing:
        raise ValueError(f"no scores for {len(missing)} development file(s): {', '.join(missing[:5])}")
    labels = {label for events in reference.values() for _, _, label in events}
    unknown = sorted(labels - set(classes))
    if unknown:
        raise ValueError(f"the reference has events of classes the model does not score: {', '.join(unknown)}")
    evaluated = [name for name in classes if name in labels]
    if not evaluated:
        raise ValueError("no development event of any class: nothing to tune on")
    frames, steps = {}, {}
    for name in files.names:
        frame, steps[name] = _cells(scores[name], classes, seconds[name], name)
        frames[name] = frame[["onset", "offset", *evaluated]]
    reference = {name: [event for event in events if event[2] in evaluated] for name, events in reference.items()}
    return _Development(frames, steps, reference, evaluated)


def _filtered(development: _Development, lengths: Sequence[float]) -> dict[str, pd.DataFrame]:
    """Development frames with each evaluated class median-filtered (``lengths``: seconds, one per class)."""
    filtered = {}
    for name, frame in development.frames.items():
        frame = frame.copy()
        columns = development.evaluated
        frame[columns] = median_filter(frame[columns].to_numpy(), frame_step=development.steps[name], length=lengths)
        filtered[name] = frame
    return filtered


def _check_metric(metric: str) -> dict:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return METRICS[metric]


def _sed_scores_eval(metric: str):
    from sed_scores_eval import collar_based, intersection_based

    return intersection_based if metric == "intersection_f1" else collar_based


def _threshold(value: float) -> float:
    """sed_scores_eval's best threshold as a score threshold in [0, 1].

    It is -inf when detecting every cell is best; 0 does the same for any positive score.
    """
    return float(min(max(value, 0.0), 1.0))


def tune_postprocessing(
    scores: Mapping[str, Scores],
    reference,
    durations: Mapping[str, float],
    *,
    classes: Sequence[str],
    median_filter_lengths: Sequence[float] = MEDIAN_FILTER_LENGTHS,
    metric: str = "intersection_f1",
) -> PostProcessing:
    """Per class, the median filter length and threshold with the best development F1.

    Parameters
    ----------
    scores : {file: SlidingWindowFeature (frames, classes) or sed_scores_eval DataFrame}
        Development scores in [0, 1], as ``Inference`` returns them (or as score files hold them).
    reference : {file: [(onset, offset, label), ...]} or path of a DCASE strong-label TSV file
    durations : {file: seconds}
        The development files (files without events included) and their durations.
    classes : sequence of str
        The model's classes, in its output order.
    median_filter_lengths : sequence of float
        Lengths tried, in seconds; on equal F1 the one listed first is kept.
    metric : {"intersection_f1", "event_f1"}
        F1 tuned for, with the criteria of :data:`METRICS`.

    Returns
    -------
    PostProcessing
        A class without development events keeps :data:`UNTUNED_ONSET`, no filter, F1 None
        (with a warning).
    """
    settings = _check_metric(metric)
    lengths = [float(length) for length in median_filter_lengths]
    if not lengths or not all(0.0 <= length < math.inf for length in lengths):
        raise ValueError(f"median filter lengths must be non-negative seconds, got {list(median_filter_lengths)}")
    development = _development(scores, reference, durations, classes)
    best = {name: (-1.0, UNTUNED_ONSET, UNTUNED_MEDIAN_FILTER_LENGTH) for name in development.evaluated}
    for length in lengths:
        frames = _filtered(development, [length] * len(development.evaluated))
        fscores, _, _, thresholds, _ = _sed_scores_eval(metric).best_fscore(frames, development.reference, **settings)
        for name in development.evaluated:
            if fscores[name] > best[name][0]:
                best[name] = (float(fscores[name]), _threshold(thresholds[name]), length)
    untuned = [name for name in classes if name not in best]
    if untuned:
        warnings.warn(f"classes without development events keep threshold {UNTUNED_ONSET} and no median filter: "
                      f"{', '.join(untuned)}", stacklevel=2)
    return PostProcessing(
        classes=list(classes),
        onset=[best[name][1] if name in best else UNTUNED_ONSET for name in classes],
        median_filter_length=[best[name][2] if name in best else UNTUNED_MEDIAN_FILTER_LENGTH for name in classes],
        metric=metric,
        scores=[best[name][0] if name in best else None for name in classes],
        settings=dict(settings),
    )


def fscores(
    scores: Mapping[str, Scores],
    reference,
    durations: Mapping[str, float],
    *,
    classes: Sequence[str],
    onset: Union[float, Sequence[float]],
    median_filter_length: Union[float, Sequence[float]],
    metric: str = "intersection_f1",
) -> dict[str, Optional[float]]:
    """Each class's development F1 with the given post-processing (None: no development event).

    Parameters are those of :func:`tune_postprocessing`; ``onset`` and ``median_filter_length``
    (seconds) are one value for every class or one per class of ``classes``.
    """
    settings = _check_metric(metric)
    development = _development(scores, reference, durations, classes)
    index = [list(classes).index(name) for name in development.evaluated]
    onsets = np.broadcast_to(np.asarray(onset, dtype=np.float64), (len(classes),))
    lengths = np.broadcast_to(np.asarray(median_filter_length, dtype=np.float64), (len(classes),))
    frames = _filtered(development, lengths[index])
    thresholds = {name: float(onsets[k]) for name, k in zip(development.evaluated, index)}
    values, _, _, _ = _sed_scores_eval(metric).fscore(frames, development.reference, thresholds, **settings)
    return {name: float(values[name]) if name in development.evaluated else None for name in classes}
