"""Polyphonic sound detection score (PSDS), computed by sed_scores_eval, for DCASE's scenarios.

From frame scores (:func:`psds`), or from detections at several thresholds, psds_eval's
"operating points" (:func:`psds_from_operating_points`).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from audiotask.metrics.events import (
    Events,
    FileSet,
    PathLike,
    evaluation_set,
    events_to_scores,
    split_classes,
)

#: DCASE (2021-2023 task 4) PSDS scenarios, in sed_scores_eval's argument names
PSDS_SCENARIOS = {
    1: dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0),
    2: dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100.0),
}


def score_frames(scores, files: FileSet, seconds: Optional[Mapping[str, float]] = None) -> dict[str, pd.DataFrame]:
    """Scores (a folder, or ``{name: DataFrame or SlidingWindowFeature}``) keyed by the evaluated files.

    ``SlidingWindowFeature`` scores become DataFrames cut at each file's duration (from
    ``seconds``, when given): a CHUNK model's last window runs over zero padding.
    """
    from audiotask.inference.formats import read_scores, scores_to_dataframe

    if not isinstance(scores, Mapping):
        scores = read_scores(scores)
    scores = files.rekey(scores, "the scores")
    frames = {
        name: s if isinstance(s, pd.DataFrame) else scores_to_dataframe(s, end=None if seconds is None else seconds[name])
        for name, s in scores.items()
    }
    missing = [name for name in files.names if name not in frames]
    if missing:
        raise ValueError(f"no scores for {len(missing)} evaluated file(s): {', '.join(missing[:5])}")
    return frames


def psds_of_frames(frames: dict[str, pd.DataFrame], reference: dict, seconds: dict, scenario: int, *,
                   unknown_classes: str = "ignore") -> dict:
    """sed_scores_eval's PSDS of ``frames`` for a DCASE scenario, as a dict of floats.

    ``unknown_classes`` says what becomes of a scored class the ground truth has no event of
    (see :func:`psds`).
    """
    from sed_scores_eval import intersection_based

    if scenario not in PSDS_SCENARIOS:
        raise ValueError(f"DCASE PSDS scenario must be one of {sorted(PSDS_SCENARIOS)}, got {scenario!r}")
    score_classes = list(next(iter(frames.values())).columns[2:])
    reference_labels = sorted({label for events in reference.values() for _, _, label in events})
    unknown = [label for label in reference_labels if label not in score_classes]
    if unknown:
        raise ValueError(f"the ground truth has classes without scores: {', '.join(unknown)}")
    classes, missed = split_classes(score_classes, reference_labels, score_classes, unknown_classes=unknown_classes,
                                    what="the scores")
    frames = {name: frame[["onset", "offset", *classes]] for name, frame in frames.items()}
    settings = PSDS_SCENARIOS[scenario]
    value, per_class, _, rocs = intersection_based.psds(frames, reference, seconds, **settings)
    if missed:
        value = psds_with_missed_classes(rocs, missed, settings)
    return {
        "psds": float(value),
        "per_class": {**{name: float(per_class[name]) for name in classes}, **{name: 0.0 for name in missed}},
        "scenario": scenario,
        "settings": dict(settings),
    }


def psds_with_missed_classes(rocs: dict, missed: Sequence[str], settings: dict) -> float:
    """PSDS of the single-class PSD-ROCs ``rocs`` (sed_scores_eval's), with the classes of
    ``missed`` (scored, but without any reference event) added, each with a true positive
    rate of 0 at every eFPR.

    That is how sed_scores_eval's ROC computes a class without reference events
    (``tps / max(n_ref, 1)``), had its input check let one through: nothing of it to find,
    whatever its scores, so the class lowers the mean over classes of the effective curve,
    and its spread (``alpha_st``). Cross-triggers on it count nowhere: it has no reference
    time for its scores to trigger on.
    """
    from sed_scores_eval.intersection_based.psds import (
        multi_class_psd_roc_from_single_class_psd_rocs,
        psds_from_psd_roc,
    )

    rocs = {**rocs, **{name: (np.zeros(1), np.zeros(1), np.full(1, np.inf)) for name in missed}}
    tpr, efpr = multi_class_psd_roc_from_single_class_psd_rocs(rocs, alpha_st=settings["alpha_st"],
                                                                max_efpr=settings["max_efpr"])
    return float(psds_from_psd_roc(tpr, efpr, settings["max_efpr"]))


def psds(
    scores: Union[PathLike, Mapping[str, pd.DataFrame]],
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float]],
    *,
    scenario: int,
    unknown_classes: str = "ignore",
) -> dict:
    """Polyphonic sound detection score of frame scores, for DCASE scenario 1 or 2.

    Scenario 1: dtc = gtc = 0.7, no cross-trigger penalty; scenario 2: dtc = gtc = 0.1,
    cttc = 0.3, alpha_ct = 0.5; both alpha_st = 1 and max eFPR = 100 per hour
    (:data:`PSDS_SCENARIOS`). sed_scores_eval computes the exact PSD-ROC over all thresholds.

    Parameters
    ----------
    scores : {filename: DataFrame or SlidingWindowFeature}, or a folder of score TSV files
        sed_scores_eval score DataFrames (``onset``, ``offset``, one column per class), one
        per evaluated file.
    ground_truth : {filename: [(onset, offset, label), ...]} or path of a DCASE TSV file
    durations : {filename: seconds} or path of a ``filename  duration`` TSV file
        The files evaluated, and the time over which false positives are counted.
    scenario : {1, 2}
    unknown_classes : {"ignore", "error", "false-positives"}
        What becomes of a scored class that the ground truth has no event of
        (``events.UNKNOWN_CLASSES``): left out with a warning, an error naming it, or counted
        as a class of which nothing is found: whatever it scores is false, its true positive
        rate is 0 at every eFPR, and it lowers the PSDS (its own is 0).

    Returns
    -------
    dict
        ``psds`` (in [0, 1]), ``per_class`` ``{label: PSDS of that class alone}``,
        ``scenario`` and ``settings``.
    """
    files, reference, seconds = evaluation_set(ground_truth, durations)
    return psds_of_frames(score_frames(scores, files, seconds), reference, seconds, scenario,
                          unknown_classes=unknown_classes)


def _read_detections(detections: Union[PathLike, Events]) -> Events:
    """Detections from a dict, or from a TSV file whose header names its columns (any order)."""
    if isinstance(detections, Mapping):
        return detections
    from sed_scores_eval.base_modules.io import read_ground_truth_events

    return {name: [tuple(event) for event in events] for name, events in read_ground_truth_events(detections).items()}


def operating_points_to_scores(
    operating_points: Mapping[float, Events], *, ends: Mapping[str, float], classes: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Score DataFrames equivalent to nested detections at several thresholds.

    A cell's score is the highest threshold whose detections cover it, so that thresholding
    the scores at any of the thresholds gives back that threshold's detections. This holds
    only when the detections are nested (those of a higher threshold lie within those of a
    lower one), as thresholding one set of scores gives; ``ValueError`` otherwise.

    Parameters
    ----------
    operating_points : {threshold: {name: [(onset, offset, label), ...]}}
        Names must be those of ``ends``.
    ends : {name: seconds}
        Files, and the end of each.
    classes : sequence of str
    """
    thresholds = np.array(sorted(operating_points), dtype=np.float64)
    frames, covered, ranked = {}, np.zeros(len(classes)), np.zeros(len(classes))
    for name, end in ends.items():
        events = [e for t in thresholds for e in operating_points[t].get(name, [])]
        weights = [t for t in thresholds for _ in operating_points[t].get(name, [])]
        frame = events_to_scores(events, end=end, classes=classes, event_scores=weights, name=name)
        lengths = (frame["offset"] - frame["onset"]).to_numpy()[:, None]
        rank = np.searchsorted(thresholds, frame[list(classes)].to_numpy(), side="right")
        ranked += (lengths * rank).sum(axis=0)
        for on, off, label in events:
            if label in classes:
                covered[list(classes).index(label)] += off - on
        frames[name] = frame
    # nested detections cover every cell once per threshold up to its score, and only then
    if not np.allclose(covered, ranked, rtol=0, atol=1e-6 * max(1, len(ends))):
        raise ValueError("the operating points' detections are not nested (or overlap within a threshold)")
    return frames


def psds_from_operating_points(
    operating_points: Mapping[float, Union[PathLike, Events]],
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float]],
    *,
    scenario: int,
) -> dict:
    """PSDS of detections at several thresholds (psds_eval's "operating points"), for DCASE scenario 1 or 2.

    sed_scores_eval's own route for operating points goes through the psds_eval package;
    here the nested detections become the equivalent scores
    (:func:`operating_points_to_scores`), whose exact PSD-ROC is that of the operating points.

    Parameters
    ----------
    operating_points : {threshold: detections}
        Detections as ``{filename: [(onset, offset, label), ...]}`` or a TSV file with
        ``filename onset offset event_label`` columns (in any order).
    ground_truth, durations, scenario
        As in :func:`psds`.
    """
    files, reference, seconds = evaluation_set(ground_truth, durations)
    points = {float(t): files.rekey(_read_detections(d), f"the detections at {t}") for t, d in operating_points.items()}
    classes = sorted({label for events in reference.values() for _, _, label in events})
    frames = operating_points_to_scores(points, ends=seconds, classes=classes)
    return psds_of_frames(frames, reference, seconds, scenario)
