"""Sound event detection metrics, computed by sed_scores_eval (the DCASE reference tool).

Nothing here re-implements a metric: this module only brings our inputs into
sed_scores_eval's form and its outputs into plain dictionaries.

* Event-, segment- and intersection-based F1 (:func:`event_based_f1`,
  :func:`segment_based_f1`, :func:`intersection_based_f1`) are computed from detected
  *events*: each file's events become a binary score DataFrame (1 inside a detected event,
  0 elsewhere, cells bounded by the events' onsets and offsets) evaluated at threshold 0.5,
  which gives exactly the detected events back inside sed_scores_eval.
* PSDS is computed from frame *scores* (:mod:`audiotask.metrics.psds`);
  :func:`evaluate_sound_events` computes every metric its inputs allow.

How files are matched and reference events merged: :mod:`audiotask.metrics.events`.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence, Union

from audiotask.metrics.events import (
    Events,
    PathLike,
    end_of,
    evaluated_classes,
    evaluation_set,
    events_to_scores,
    merge_reference,
    read_durations,
    read_ground_truth,
)
from audiotask.metrics.psds import PSDS_SCENARIOS, psds_of_frames, score_frames

#: threshold at which binary detection scores are evaluated (any value in (0, 1) would do)
_THRESHOLD = 0.5


class _Detections:
    """Detections brought into sed_scores_eval's form against a ground truth."""

    def __init__(self, detections, ground_truth, durations, classes: Optional[Sequence[str]]):
        files, reference, seconds = evaluation_set(ground_truth, durations)
        detected = files.rekey(detections, "the detections")
        reference_labels = sorted({label for events in reference.values() for _, _, label in events})
        detected_labels = {label for events in detected.values() for _, _, label in events}
        self.classes = evaluated_classes(classes, reference_labels, detected_labels)
        self.ground_truth = {name: [e for e in events if e[2] in self.classes] for name, events in reference.items()}
        self.durations = seconds
        self.scores = {
            name: events_to_scores(
                detected.get(name, []), end=end_of(name, seconds, reference[name], detected.get(name, [])),
                classes=self.classes, name=name,
            )
            for name in files.names
        }

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
    ground_truth = merge_reference(read_ground_truth(ground_truth))
    durations = read_durations(durations)
    results: dict = {}
    details: dict = {}
    if scores is not None:
        files, reference, seconds = evaluation_set(ground_truth, durations)
        frames = score_frames(scores, files, seconds)
        for scenario in sorted(PSDS_SCENARIOS):
            details[f"psds{scenario}"] = psds_of_frames(frames, reference, seconds, scenario)
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
