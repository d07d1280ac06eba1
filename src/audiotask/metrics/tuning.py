"""Class-wise post-processing tuned on a development set.

:func:`tune_postprocessing` picks, for each class, the median filter length and the
threshold that give the best F1 on development scores; sed_scores_eval finds the best
threshold of a class exactly (over every distinct score), so only the median filter
lengths are searched here. The result is a
:class:`~audiotask.inference.tuned_postprocessing.PostProcessing`, saved beside the model.

Scores are brought onto the cells that :func:`~audiotask.inference.postprocessing.scores_to_events`
thresholds (per-window scores spread onto step-long cells, cells past the file's end
dropped) and median-filtered as it filters them, so that a threshold tuned here gives on
the development files the events whose F1 was measured.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pyannote.core import SlidingWindowFeature

from audiotask.inference.postprocessing import median_filter
from audiotask.inference.tuned_postprocessing import (
    MEDIAN_FILTER_LENGTHS, METRICS, UNTUNED_MEDIAN_FILTER_LENGTH, UNTUNED_ONSET, PostProcessing,
)
from audiotask.metrics.events import evaluation_set

Scores = Union[SlidingWindowFeature, pd.DataFrame]
Event = tuple[float, float, str]


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
