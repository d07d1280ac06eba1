"""Sound event detection metrics, computed by sed_scores_eval (the DCASE reference tool).

Nothing here re-implements a metric: this module only brings our inputs into
sed_scores_eval's form and its outputs into plain dictionaries.

* PSDS (:func:`psds`) is computed from frame *scores*, for DCASE's two scenarios.
* Event-, segment- and intersection-based F1 (:func:`event_based_f1`,
  :func:`segment_based_f1`, :func:`intersection_based_f1`) are computed from detected
  *events*: each file's events become a binary score DataFrame (1 inside a detected event,
  0 elsewhere, cells bounded by the events' onsets and offsets) evaluated at threshold 0.5,
  which gives exactly the detected events back inside sed_scores_eval.

Files are named by filename (``clip.wav``) or uri (``clip``); a name given one way in the
ground truth and the other way elsewhere still matches (see :class:`FileSet`). The files
evaluated are those of ``durations`` when given, else those of the ground truth; a file of
the detections, scores or ground truth outside that set is an error naming it.
Overlapping or touching reference events of one class, which sed_scores_eval refuses, are
merged into one (with a warning).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from audiotask.protocols.dcase import uri_of

Event = tuple[float, float, str]
Events = Mapping[str, Sequence[Event]]
PathLike = Union[str, Path]

#: DCASE (2021-2023 task 4) PSDS scenarios, in sed_scores_eval's argument names
PSDS_SCENARIOS = {
    1: dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0, max_efpr=100.0),
    2: dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100.0),
}

#: threshold at which binary detection scores are evaluated (any value in (0, 1) would do)
_THRESHOLD = 0.5
#: sed_scores_eval compares times at 6 decimals; event boundaries are rounded alike so that
#: two boundaries a float error apart never make a zero-length score cell
_TIME_DECIMALS = 6


class FileSet:
    """The files of an evaluation, and the resolution of other inputs' names onto them.

    A name resolves to the file of the same name, else to the file whose uri it is (or
    whose uri it has, ``uri_of`` stripping the last suffix): ``clip.wav`` and ``clip`` name
    the same file, and so do ``Y_30.000_40.000.wav`` and ``Y_30.000_40.000``.
    """

    def __init__(self, names, source: str):
        self.names = list(names)
        self.source = source
        self._alias: dict[str, Optional[str]] = {name: name for name in self.names}
        for name in self.names:
            uri = uri_of(name)
            if uri not in self._alias:
                self._alias[uri] = name
            elif self._alias[uri] != name and uri not in self.names:
                self._alias[uri] = None  # two files share this uri: the uri alone names neither

    def resolve(self, name: str, what: str) -> str:
        """The file ``name`` refers to; ``ValueError`` naming it when it is not one of them."""
        for candidate in (name, uri_of(name)):
            if candidate in self._alias:
                if self._alias[candidate] is None:
                    raise ValueError(f"{what}: {name!r} could be several files of {self.source}; use full filenames")
                return self._alias[candidate]
        raise ValueError(f"{what} has file {name!r}, which is not in {self.source}")

    def rekey(self, mapping: Mapping, what: str) -> dict:
        """``mapping`` keyed by the names of this set (each file at most once)."""
        rekeyed = {}
        for name, value in mapping.items():
            key = self.resolve(name, what)
            if key in rekeyed:
                raise ValueError(f"{what} has file {key!r} twice (as {name!r} too)")
            rekeyed[key] = value
        return rekeyed


def read_durations(durations: Union[PathLike, Mapping[str, float]]) -> dict[str, float]:
    """``{filename: seconds}`` from a dict, or from a TSV file with a ``filename  duration`` header."""
    if isinstance(durations, Mapping):
        return {name: float(seconds) for name, seconds in durations.items()}
    table = pd.read_csv(durations, sep="\t", dtype={"filename": str})
    if not {"filename", "duration"} <= set(table.columns):
        raise ValueError(f"{durations}: expected a 'filename<TAB>duration' header, got columns {list(table.columns)}")
    return dict(zip(table["filename"], table["duration"].astype(float)))


def read_ground_truth(ground_truth: Union[PathLike, Events]) -> dict[str, list[Event]]:
    """``{filename: [(onset, offset, label), ...]}`` from a dict or a DCASE TSV file."""
    if isinstance(ground_truth, Mapping):
        return {name: [(float(on), float(off), str(label)) for on, off, label in events]
                for name, events in ground_truth.items()}
    from audiotask.inference.formats import read_events_tsv

    return read_events_tsv(ground_truth)


def merge_connected(events: Sequence[Event]) -> list[Event]:
    """Events with each group of overlapping or touching same-label events replaced by their union.

    Sorted by label, then onset. sed_scores_eval refuses such reference events (they cannot
    be told apart once on a time line), and frame targets merge them anyway.
    """
    merged: list[list] = []
    for onset, offset, label in sorted(events, key=lambda event: (event[2], event[0], event[1])):
        if merged and merged[-1][2] == label and onset <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], offset)
        else:
            merged.append([onset, offset, label])
    return [tuple(event) for event in merged]


def _merge_reference(reference: dict[str, list[Event]]) -> dict[str, list[Event]]:
    """``merge_connected`` on every file, with a warning naming the files it changed."""
    merged = {name: merge_connected(events) for name, events in reference.items()}
    changed = sorted(name for name in reference if len(merged[name]) != len(reference[name]))
    if changed:
        warnings.warn(
            f"overlapping or touching reference events of the same class were merged in {len(changed)} "
            f"file(s), e.g. {', '.join(changed[:3])}", stacklevel=3,
        )
    return merged


def _evaluation_set(
    ground_truth: Union[PathLike, Events], durations: Union[PathLike, Mapping[str, float], None]
) -> tuple[FileSet, dict[str, list[Event]], Optional[dict[str, float]]]:
    """The files evaluated, the ground truth of each (``[]`` when none) and their durations."""
    reference = _merge_reference(read_ground_truth(ground_truth))
    if durations is None:
        files = FileSet(reference, "the ground truth")
        return files, {name: list(events) for name, events in reference.items()}, None
    seconds = read_durations(durations)
    files = FileSet(seconds, "the durations")
    reference = files.rekey(reference, "the ground truth")
    return files, {name: list(reference.get(name, [])) for name in files.names}, seconds


def _check_events(events: Sequence[Event], name: str) -> np.ndarray:
    """Onsets and offsets of ``events`` (shape (events, 2)), rounded; ``ValueError`` for a bad one."""
    times = np.round(np.array([(on, off) for on, off, _ in events], dtype=np.float64).reshape(-1, 2), _TIME_DECIMALS)
    bad = (times[:, 0] < 0) | (times[:, 1] <= times[:, 0])
    if bad.any():
        raise ValueError(f"file {name!r}: expected 0 <= onset < offset, got event {tuple(events[int(np.argmax(bad))])}")
    return times


def events_to_scores(
    events: Sequence[Event],
    *,
    end: float,
    classes: Sequence[str],
    event_scores: Optional[Sequence[float]] = None,
    name: str = "",
) -> pd.DataFrame:
    """sed_scores_eval score DataFrame of a file's detected events.

    Parameters
    ----------
    events : sequence of (onset, offset, label), in seconds
    end : float
        End of the file in seconds (the DataFrame covers ``[0, max(end, last offset)]``).
    classes : sequence of str
        Columns; events of other labels are left out.
    event_scores : sequence of float, optional
        Score of each event (default 1): a cell's score is the highest score of the events
        of its class that cover it, 0 where none does.
    name : str
        The file, for error messages.

    Returns
    -------
    pandas.DataFrame
        One row per cell, cells bounded by 0, ``end`` and every onset and offset.
    """
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    times = _check_events(events, name)
    timestamps = np.unique(np.concatenate([[0.0, round(float(end), _TIME_DECIMALS)], times.ravel()]))
    middles = 0.5 * (timestamps[:-1] + timestamps[1:])
    inside = (middles[:, None] > times[None, :, 0]) & (middles[:, None] < times[None, :, 1])  # (cells, events)
    weights = np.ones(len(events)) if event_scores is None else np.asarray(event_scores, dtype=np.float64)
    column = {label: index for index, label in enumerate(classes)}
    kept = np.array([label in column for _, _, label in events], dtype=bool)
    event_class = np.array([column.get(label, -1) for _, _, label in events], dtype=np.int64)
    scores = np.zeros((len(classes), len(middles)))  # (classes, cells)
    np.maximum.at(scores, event_class[kept], np.where(inside, weights, 0.0).T[kept])
    return create_score_dataframe(scores.T, timestamps, list(classes))


def _end_of(name: str, durations: Optional[Mapping[str, float]], *event_lists: Sequence[Event]) -> float:
    """A file's duration, or without durations its last event offset (1 s when it has none)."""
    if durations is not None:
        return durations[name]
    return max([1.0] + [off for events in event_lists for _, off, _ in events])


class _Detections:
    """Detections brought into sed_scores_eval's form against a ground truth."""

    def __init__(self, detections, ground_truth, durations, classes: Optional[Sequence[str]]):
        files, reference, seconds = _evaluation_set(ground_truth, durations)
        detected = files.rekey(detections, "the detections")
        reference_labels = sorted({label for events in reference.values() for _, _, label in events})
        detected_labels = {label for events in detected.values() for _, _, label in events}
        self.classes = _evaluated_classes(classes, reference_labels, detected_labels)
        self.ground_truth = {name: [e for e in events if e[2] in self.classes] for name, events in reference.items()}
        self.durations = seconds
        self.scores = {
            name: events_to_scores(
                detected.get(name, []), end=_end_of(name, seconds, reference[name], detected.get(name, [])),
                classes=self.classes, name=name,
            )
            for name in files.names
        }


def _evaluated_classes(classes, reference_labels, other_labels) -> list[str]:
    """Classes to evaluate: ``classes``, or every label of the inputs, less those without reference events.

    sed_scores_eval refuses a class without ground truth events (its recall is undefined);
    such a class is left out with a warning rather than failing the whole evaluation, and
    its detections count nowhere, micro averages included.
    """
    wanted = list(classes) if classes is not None else sorted(set(reference_labels) | set(other_labels))
    left_out = [name for name in wanted if name not in reference_labels]
    if left_out:
        warnings.warn(f"classes without ground truth events are not evaluated: {', '.join(left_out)}", stacklevel=3)
    evaluated = [name for name in wanted if name in reference_labels]
    if not evaluated:
        raise ValueError("no class to evaluate: the ground truth has no event of " + ", ".join(wanted))
    return evaluated


def _fscore_result(fscores, precisions, recalls, statistics, settings: dict) -> dict:
    """sed_scores_eval's ``fscore`` outputs as ``{"macro", "micro", "per_class", "settings"}`` of floats."""
    classes = [name for name in fscores if name not in ("macro_average", "micro_average")]

    def average(kind):
        return {"f1": float(fscores[kind]), "precision": float(precisions[kind]), "recall": float(recalls[kind])}

    return {
        "macro": average("macro_average"),
        "micro": average("micro_average"),
        "per_class": {
            name: {
                "f1": float(fscores[name]), "precision": float(precisions[name]), "recall": float(recalls[name]),
                "tp": int(statistics[name]["tps"]), "fp": int(statistics[name]["fps"]),
                "n_ref": int(statistics[name]["n_ref"]),
            }
            for name in classes
        },
        "settings": settings,
    }


def event_based_f1(
    detections: Events,
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float], None] = None,
    *,
    onset_collar: float = 0.2,
    offset_collar: float = 0.2,
    offset_collar_rate: float = 0.2,
    classes: Optional[Sequence[str]] = None,
) -> dict:
    """Collar-based (event-based) F1 of detected events; defaults are DCASE's (sed_eval's t-collar 200 ms, 20 %).

    Parameters
    ----------
    detections : {filename: [(onset, offset, label), ...]}
    ground_truth : {filename: [(onset, offset, label), ...]} or path of a DCASE TSV file
    durations : {filename: seconds} or path of a ``filename  duration`` TSV file, optional
        When given, the files evaluated (files without reference events included).
    onset_collar, offset_collar : float
        Allowed onset / offset deviation, in seconds.
    offset_collar_rate : float
        The offset collar is at least this fraction of the reference event's length.
    classes : sequence of str, optional
        Classes to evaluate; default: every label of the ground truth and detections.

    Returns
    -------
    dict
        ``macro`` and ``micro`` ``{f1, precision, recall}``, ``per_class`` ``{label: {f1,
        precision, recall, tp, fp, n_ref}}`` (fractions, not %), ``settings``.
    """
    from sed_scores_eval import collar_based

    data = _Detections(detections, ground_truth, durations, classes)
    outputs = collar_based.fscore(
        data.scores, data.ground_truth, _THRESHOLD, onset_collar=onset_collar,
        offset_collar=offset_collar, offset_collar_rate=offset_collar_rate,
    )
    settings = dict(onset_collar=onset_collar, offset_collar=offset_collar, offset_collar_rate=offset_collar_rate)
    return _fscore_result(*outputs, settings)


def segment_based_f1(
    detections: Events,
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float]],
    *,
    segment_length: float = 1.0,
    classes: Optional[Sequence[str]] = None,
) -> dict:
    """Segment-based F1 of detected events over fixed segments; DCASE's default is 1-s segments.

    Parameters are those of :func:`event_based_f1`, except ``durations`` (required: they
    give each file's number of segments) and ``segment_length`` (seconds).
    """
    from sed_scores_eval import segment_based

    data = _Detections(detections, ground_truth, durations, classes)
    outputs = segment_based.fscore(
        data.scores, data.ground_truth, data.durations, _THRESHOLD, segment_length=segment_length,
    )
    return _fscore_result(*outputs, dict(segment_length=segment_length))


def intersection_based_f1(
    detections: Events,
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float], None] = None,
    *,
    dtc: float = 0.5,
    gtc: float = 0.5,
    classes: Optional[Sequence[str]] = None,
) -> dict:
    """Intersection-based F1 of detected events (Bilen et al., 2020); DCASE's dtc = gtc = 0.5.

    A detection is a true positive candidate when at least ``dtc`` of it overlaps reference
    events of its class; a reference event is detected when such detections cover at least
    ``gtc`` of it. Every other detection is a false positive (cross-triggers included:
    sed_scores_eval's F1 has no cross-trigger criterion). Other parameters are those of
    :func:`event_based_f1`.
    """
    from sed_scores_eval import intersection_based

    data = _Detections(detections, ground_truth, durations, classes)
    outputs = intersection_based.fscore(
        data.scores, data.ground_truth, _THRESHOLD, dtc_threshold=dtc, gtc_threshold=gtc,
    )
    return _fscore_result(*outputs, dict(dtc=dtc, gtc=gtc))


def _score_frames(scores, files: FileSet) -> dict[str, pd.DataFrame]:
    """Scores (a folder, or ``{name: DataFrame or SlidingWindowFeature}``) keyed by the evaluated files."""
    from audiotask.inference.formats import read_scores, scores_to_dataframe

    if not isinstance(scores, Mapping):
        scores = read_scores(scores)
    frames = files.rekey(
        {name: s if isinstance(s, pd.DataFrame) else scores_to_dataframe(s) for name, s in scores.items()}, "the scores"
    )
    missing = [name for name in files.names if name not in frames]
    if missing:
        raise ValueError(f"no scores for {len(missing)} evaluated file(s): {', '.join(missing[:5])}")
    return frames


def _psds_of_frames(frames: dict[str, pd.DataFrame], reference: dict, seconds: dict, scenario: int) -> dict:
    """sed_scores_eval's PSDS of ``frames`` for a DCASE scenario, as a dict of floats."""
    from sed_scores_eval import intersection_based

    if scenario not in PSDS_SCENARIOS:
        raise ValueError(f"DCASE PSDS scenario must be one of {sorted(PSDS_SCENARIOS)}, got {scenario!r}")
    score_classes = list(next(iter(frames.values())).columns[2:])
    reference_labels = sorted({label for events in reference.values() for _, _, label in events})
    unknown = [label for label in reference_labels if label not in score_classes]
    if unknown:
        raise ValueError(f"the ground truth has classes without scores: {', '.join(unknown)}")
    classes = _evaluated_classes(score_classes, reference_labels, [])
    frames = {name: frame[["onset", "offset", *classes]] for name, frame in frames.items()}
    settings = PSDS_SCENARIOS[scenario]
    value, per_class, _, _ = intersection_based.psds(frames, reference, seconds, **settings)
    return {
        "psds": float(value),
        "per_class": {name: float(per_class[name]) for name in classes},
        "scenario": scenario,
        "settings": dict(settings),
    }


def psds(
    scores: Union[PathLike, Mapping[str, pd.DataFrame]],
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float]],
    *,
    scenario: int,
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

    Returns
    -------
    dict
        ``psds`` (in [0, 1]), ``per_class`` ``{label: PSDS of that class alone}``,
        ``scenario`` and ``settings``.
    """
    files, reference, seconds = _evaluation_set(ground_truth, durations)
    return _psds_of_frames(_score_frames(scores, files), reference, seconds, scenario)


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
    files, reference, seconds = _evaluation_set(ground_truth, durations)
    points = {float(t): files.rekey(_read_detections(d), f"the detections at {t}") for t, d in operating_points.items()}
    classes = sorted({label for events in reference.values() for _, _, label in events})
    frames = operating_points_to_scores(points, ends=seconds, classes=classes)
    return _psds_of_frames(frames, reference, seconds, scenario)


#: F1 metrics computed from detections: key in the results, function, table header
_F1_METRICS = (
    ("event_f1", event_based_f1, "event F1"),
    ("segment_f1", segment_based_f1, "segment F1"),
    ("intersection_f1", intersection_based_f1, "intersection F1"),
)


def evaluate_sound_events(
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float]],
    *,
    detections: Optional[Events] = None,
    scores=None,
) -> dict:
    """Every metric the inputs allow, at DCASE's settings: PSDS1 and PSDS2 from scores, three F1 from detections.

    Parameters
    ----------
    ground_truth : {filename: [(onset, offset, label), ...]} or path of a DCASE TSV file
    durations : {filename: seconds} or path of a ``filename  duration`` TSV file
    detections : {filename: [(onset, offset, label), ...]}, optional
    scores : {filename: DataFrame or SlidingWindowFeature} or a folder of score TSV files, optional

    Returns
    -------
    dict (JSON-serialisable)
        Fractions in [0, 1]: ``psds1``, ``psds2`` (with scores), ``event_f1``,
        ``segment_f1``, ``intersection_f1`` (macro averages) and ``*_micro`` (with
        detections); ``details`` holds each metric's full result (per class, settings).
    """
    if detections is None and scores is None:
        raise ValueError("nothing to evaluate: give detections, scores or both")
    # read and merged once: the metrics below then neither re-read files nor warn again
    ground_truth = _merge_reference(read_ground_truth(ground_truth))
    durations = read_durations(durations)
    results: dict = {}
    details: dict = {}
    if scores is not None:
        files, reference, seconds = _evaluation_set(ground_truth, durations)
        frames = _score_frames(scores, files)
        for scenario in sorted(PSDS_SCENARIOS):
            details[f"psds{scenario}"] = _psds_of_frames(frames, reference, seconds, scenario)
            results[f"psds{scenario}"] = details[f"psds{scenario}"]["psds"]
    if detections is not None:
        for key, metric, _ in _F1_METRICS:
            details[key] = metric(detections, ground_truth, durations)
            results[key] = details[key]["macro"]["f1"]
            results[f"{key}_micro"] = details[key]["micro"]["f1"]
    results["details"] = details
    return results


def format_table(results: dict) -> str:
    """Text table of :func:`evaluate_sound_events`'s results, in %: PSDS, macro, micro, then per class.

    Results of :func:`audiotask.metrics.voice_activity.detection_error_rate` are formatted
    by that module's table, so that one call prints whatever was evaluated.
    """
    if "detection_error_rate" in results:
        from audiotask.metrics.voice_activity import format_table as voice_activity_table

        return voice_activity_table(results)
    details = results.get("details", {})
    columns = [(key, header) for key, _, header in _F1_METRICS if key in details]
    columns += [(key, key.upper()) for key in ("psds1", "psds2") if key in details]
    classes = sorted({name for key, _ in columns for name in details[key]["per_class"]})
    rows: list[tuple[str, list[Optional[float]]]] = []
    if any(key.startswith("psds") for key, _ in columns):
        rows.append(("PSDS", [details[key]["psds"] if key.startswith("psds") else None for key, _ in columns]))
    for average in ("macro", "micro"):
        rows.append((f"{average} average", [None if key.startswith("psds") else details[key][average]["f1"]
                                            for key, _ in columns]))
    for name in classes:
        rows.append((name, [_class_value(details[key], name) for key, _ in columns]))
    width = max([len("class (%)")] + [len(label) for label, _ in rows])
    widths = [max(len(header), 6) for _, header in columns]
    lines = ["  ".join([f"{'class (%)':<{width}}"] + [f"{h:>{w}}" for (_, h), w in zip(columns, widths)])]
    lines.append("-" * len(lines[0]))
    for label, values in rows:
        cells = ["-" if v is None else f"{100 * v:.2f}" for v in values]
        lines.append("  ".join([f"{label:<{width}}"] + [f"{c:>{w}}" for c, w in zip(cells, widths)]))
    return "\n".join(lines)


def _class_value(result: dict, name: str) -> Optional[float]:
    """A class's F1 or PSDS in one metric's result; None when that metric did not evaluate it."""
    value = result["per_class"].get(name)
    return value["f1"] if isinstance(value, dict) else value
