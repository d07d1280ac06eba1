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

import numpy as np

from audiotask.metrics.events import (
    Events,
    PathLike,
    end_of,
    evaluation_set,
    events_to_scores,
    merge_reference,
    read_durations,
    read_ground_truth,
    split_classes,
)
from audiotask.metrics.psds import PSDS_SCENARIOS, psds_of_frames, score_frames

#: threshold at which binary detection scores are evaluated (any value in (0, 1) would do)
_THRESHOLD = 0.5


class _Detections:
    """Detections brought into sed_scores_eval's form against a ground truth.

    ``classes`` are those sed_scores_eval evaluates, ``false_positive_classes`` the detected
    classes without reference events whose detections count as false positives
    (``unknown_classes="false-positives"``), in ``unknown_scores`` (their own score frames).
    """

    def __init__(self, detections, ground_truth, durations, classes: Optional[Sequence[str]],
                 unknown_classes: str = "ignore"):
        files, reference, seconds = evaluation_set(ground_truth, durations)
        detected = files.rekey(detections, "the detections")
        reference_labels = sorted({label for events in reference.values() for _, _, label in events})
        detected_in: dict[str, list[str]] = {}
        for name, events in detected.items():
            for label in sorted({label for _, _, label in events}):
                detected_in.setdefault(label, []).append(name)
        self.classes, self.false_positive_classes = split_classes(
            classes, reference_labels, detected_in, unknown_classes=unknown_classes, what="the detections",
            files=detected_in)
        self.ground_truth = {name: [e for e in events if e[2] in self.classes] for name, events in reference.items()}
        self.durations = seconds

        def frames(names):
            return {
                name: events_to_scores(
                    detected.get(name, []), end=end_of(name, seconds, reference[name], detected.get(name, [])),
                    classes=names, name=name,
                )
                for name in files.names
            }

        self.scores = frames(self.classes)
        self.unknown_scores = frames(self.false_positive_classes) if self.false_positive_classes else {}

    def fscore(self, compute) -> tuple:
        """sed_scores_eval's ``(fscores, precisions, recalls, statistics)`` of ``compute(scores,
        ground_truth, durations)``, the false positive classes added (:func:`with_false_positives`)."""
        outputs = compute(self.scores, self.ground_truth, self.durations)
        if not self.false_positive_classes:
            return outputs
        counts = false_positive_counts(compute, self.unknown_scores, self.false_positive_classes, self.durations)
        return with_false_positives(*outputs, counts)


#: the name of the clip :func:`false_positive_counts` adds (no evaluated file can be named so)
_PLACEHOLDER = "\x00one reference event of each unknown class"


def false_positive_counts(compute, scores: dict, classes: Sequence[str], durations) -> dict[str, int]:
    """How many false positives sed_scores_eval counts for each of ``classes``, the detected
    classes without reference events, in ``scores`` (their score frames), with the metric of
    ``compute(scores, ground_truth, durations)``.

    sed_scores_eval refuses a class without reference events: it is given one, in a silent
    clip of its own (scores 0, so that no detection there is true or false), and only the
    false positives are kept; every detection of such a class is one (or, segment-based, every
    segment where it is detected).
    """
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    end = 1.0
    placeholder = create_score_dataframe(np.zeros((1, len(classes))), np.array([0.0, end]), list(classes))
    ground_truth = {**{name: [] for name in scores}, _PLACEHOLDER: [(0.0, end, name) for name in classes]}
    seconds = None if durations is None else {**durations, _PLACEHOLDER: end}
    statistics = compute({**scores, _PLACEHOLDER: placeholder}, ground_truth, seconds)[3]
    return {name: int(statistics[name]["fps"]) for name in classes}


def with_false_positives(fscores, precisions, recalls, statistics, counts: Mapping[str, int]) -> tuple:
    """sed_scores_eval's outputs with the classes of ``counts`` (``{class: false positives}``),
    which the ground truth has no event of: each such class has no true positive and no
    reference event, so precision 0 and F1 0, and no recall (None: nothing to recall).

    The macro averages of F1 and precision include them, that of recall the classes with
    reference events only; the micro averages add their false positives (sed_scores_eval's
    ``micro_average``), so that they lower micro precision and F1.
    """
    from sed_scores_eval.base_modules.precision_recall import micro_average

    def per_class(values):
        return {name: value for name, value in values.items() if name not in ("macro_average", "micro_average")}

    fscores, precisions, recalls, statistics = per_class(fscores), per_class(precisions), per_class(recalls), dict(statistics)
    known = list(recalls)
    for name, count in counts.items():
        fscores[name], precisions[name], recalls[name] = 0.0, 0.0 if count else 1.0, None
        statistics[name] = {"tps": 0, "fps": count, "n_ref": 0}
    fscores["macro_average"] = float(np.mean([fscores[name] for name in statistics]))
    precisions["macro_average"] = float(np.mean([precisions[name] for name in statistics]))
    recalls["macro_average"] = float(np.mean([recalls[name] for name in known]))
    fscores["micro_average"], precisions["micro_average"], recalls["micro_average"] = micro_average(statistics)
    return fscores, precisions, recalls, statistics


def _fscore_result(fscores, precisions, recalls, statistics, settings: dict) -> dict:
    """sed_scores_eval's ``fscore`` outputs as ``{"macro", "micro", "per_class", "settings"}`` of floats."""
    classes = [name for name in fscores if name not in ("macro_average", "micro_average")]

    def plain(value):  # a class without reference events has no recall (None)
        return None if value is None else float(value)

    def average(kind):
        return {"f1": float(fscores[kind]), "precision": float(precisions[kind]), "recall": float(recalls[kind])}

    return {
        "macro": average("macro_average"),
        "micro": average("micro_average"),
        "per_class": {
            name: {
                "f1": float(fscores[name]), "precision": float(precisions[name]), "recall": plain(recalls[name]),
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
    unknown_classes: str = "ignore",
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
    unknown_classes : {"ignore", "error", "false-positives"}
        What becomes of a detected class the ground truth has no event of
        (``events.UNKNOWN_CLASSES``): left out with a warning, an error naming it, or each of its
        detections a false positive (its class then has precision 0, F1 0, no recall, and
        enters the macro F1 and precision and the micro averages).

    Returns
    -------
    dict
        ``macro`` and ``micro`` ``{f1, precision, recall}``, ``per_class`` ``{label: {f1,
        precision, recall, tp, fp, n_ref}}`` (fractions, not %), ``settings``.
    """
    from sed_scores_eval import collar_based

    data = _Detections(detections, ground_truth, durations, classes, unknown_classes)
    outputs = data.fscore(lambda scores, truth, _: collar_based.fscore(
        scores, truth, _THRESHOLD, onset_collar=onset_collar,
        offset_collar=offset_collar, offset_collar_rate=offset_collar_rate,
    ))
    settings = dict(onset_collar=onset_collar, offset_collar=offset_collar, offset_collar_rate=offset_collar_rate)
    return _fscore_result(*outputs, settings)


def segment_based_f1(
    detections: Events,
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float]],
    *,
    segment_length: float = 1.0,
    classes: Optional[Sequence[str]] = None,
    unknown_classes: str = "ignore",
) -> dict:
    """Segment-based F1 of detected events over fixed segments; DCASE's default is 1-s segments.

    Parameters are those of :func:`event_based_f1`, except ``durations`` (required: they
    give each file's number of segments) and ``segment_length`` (seconds); a false positive of
    an unknown class is a segment where it is detected.
    """
    from sed_scores_eval import segment_based

    data = _Detections(detections, ground_truth, durations, classes, unknown_classes)
    outputs = data.fscore(lambda scores, truth, seconds: segment_based.fscore(
        scores, truth, seconds, _THRESHOLD, segment_length=segment_length,
    ))
    return _fscore_result(*outputs, dict(segment_length=segment_length))


def intersection_based_f1(
    detections: Events,
    ground_truth: Union[PathLike, Events],
    durations: Union[PathLike, Mapping[str, float], None] = None,
    *,
    dtc: float = 0.5,
    gtc: float = 0.5,
    classes: Optional[Sequence[str]] = None,
    unknown_classes: str = "ignore",
) -> dict:
    """Intersection-based F1 of detected events (Bilen et al., 2020); DCASE's dtc = gtc = 0.5.

    A detection is a true positive candidate when at least ``dtc`` of it overlaps reference
    events of its class; a reference event is detected when such detections cover at least
    ``gtc`` of it. Every other detection is a false positive (cross-triggers included:
    sed_scores_eval's F1 has no cross-trigger criterion). Other parameters are those of
    :func:`event_based_f1`.
    """
    from sed_scores_eval import intersection_based

    data = _Detections(detections, ground_truth, durations, classes, unknown_classes)
    outputs = data.fscore(lambda scores, truth, _: intersection_based.fscore(
        scores, truth, _THRESHOLD, dtc_threshold=dtc, gtc_threshold=gtc,
    ))
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
    unknown_classes: str = "ignore",
) -> dict:
    """Every metric the inputs allow, at DCASE's settings: PSDS1 and PSDS2 from scores, three F1 from detections.

    Parameters
    ----------
    ground_truth : {filename: [(onset, offset, label), ...]} or path of a DCASE TSV file
    durations : {filename: seconds} or path of a ``filename  duration`` TSV file
    detections : {filename: [(onset, offset, label), ...]}, optional
    scores : {filename: DataFrame or SlidingWindowFeature} or a folder of score TSV files, optional
    unknown_classes : {"ignore", "error", "false-positives"}
        What becomes of a detected or scored class that the ground truth has no event of
        (see :func:`event_based_f1` and ``psds.psds``).

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
            details[f"psds{scenario}"] = psds_of_frames(frames, reference, seconds, scenario,
                                                        unknown_classes=unknown_classes)
            results[f"psds{scenario}"] = details[f"psds{scenario}"]["psds"]
    if detections is not None:
        for key, metric, _ in _F1_METRICS:
            details[key] = metric(detections, ground_truth, durations, unknown_classes=unknown_classes)
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
