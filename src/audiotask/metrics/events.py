"""Sound event evaluation inputs: files, durations, reference and detected events.

What every sound event metric (:mod:`audiotask.metrics.sound_events`,
:mod:`audiotask.metrics.psds`) needs before sed_scores_eval sees its inputs: reading the
ground truth and the durations, matching file names, merging reference events that
sed_scores_eval would refuse, and turning detected events into score DataFrames.

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

from audiotask.protocols.uris import uri_of

Event = tuple[float, float, str]
Events = Mapping[str, Sequence[Event]]
PathLike = Union[str, Path]

#: sed_scores_eval compares times at 6 decimals; event boundaries are rounded alike so that
#: two boundaries a float error apart never make a zero-length score cell
_TIME_DECIMALS = 6


class FileSet:
    """The files of an evaluation, and the resolution of other inputs' names onto them.

    A name resolves to the file of the same name, else to the file whose uri it is (or
    whose uri it has, ``uri_of`` stripping an audio extension): ``clip.wav`` and ``clip`` name
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
    """``{filename: seconds}`` from a dict, or from a ``filename<TAB>duration`` TSV file (a
    header line allowed); ``ValueError`` naming the file and line of a malformed row."""
    if isinstance(durations, Mapping):
        return {name: float(seconds) for name, seconds in durations.items()}
    from audiotask.io import read_text

    text = read_text(durations)
    seconds = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.strip().split("\t")
        if not line.strip() or fields[0] == "filename":
            continue
        try:
            seconds[fields[0]] = float(fields[1])
        except (IndexError, ValueError):
            raise ValueError(f"{durations}, line {number}: expected 'filename<TAB>duration', got {line!r}") from None
    return seconds


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


def merge_reference(reference: dict[str, list[Event]]) -> dict[str, list[Event]]:
    """``merge_connected`` on every file, with a warning naming the files it changed."""
    merged = {name: merge_connected(events) for name, events in reference.items()}
    changed = sorted(name for name in reference if len(merged[name]) != len(reference[name]))
    if changed:
        warnings.warn(
            f"overlapping or touching reference events of the same class were merged in {len(changed)} "
            f"file(s), e.g. {', '.join(changed[:3])}", stacklevel=3,
        )
    return merged


def evaluation_set(
    ground_truth: Union[PathLike, Events], durations: Union[PathLike, Mapping[str, float], None]
) -> tuple[FileSet, dict[str, list[Event]], Optional[dict[str, float]]]:
    """The files evaluated, the ground truth of each (``[]`` when none) and their durations."""
    reference = merge_reference(read_ground_truth(ground_truth))
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


def end_of(name: str, durations: Optional[Mapping[str, float]], *event_lists: Sequence[Event]) -> float:
    """A file's duration, or without durations its last event offset (1 s when it has none)."""
    if durations is not None:
        return durations[name]
    return max([1.0] + [off for events in event_lists for _, off, _ in events])


#: what the metrics do with a predicted class the ground truth has no event of (an "unknown"
#: class): "ignore" leaves it out with a warning (its detections count nowhere: sed_scores_eval
#: evaluates classes with reference events only), "error" refuses the evaluation, naming it,
#: "false-positives" counts its every detection as a false positive (see ``sound_events`` and
#: ``psds`` for what that does to each metric)
UNKNOWN_CLASSES = ("ignore", "error", "false-positives")


def check_unknown_classes(unknown_classes: str) -> str:
    """``unknown_classes``, checked to be one of :data:`UNKNOWN_CLASSES`."""
    if unknown_classes not in UNKNOWN_CLASSES:
        raise ValueError(f"unknown_classes must be one of {', '.join(UNKNOWN_CLASSES)}, got {unknown_classes!r}")
    return unknown_classes


def unknown_classes_error(names: Sequence[str], what: str, files: Optional[Mapping[str, Sequence[str]]] = None) -> ValueError:
    """The ``ValueError`` of predicted classes ``names`` without ground truth events: it names
    them, with the first files of ``files`` (``{class: [file, ...]}``) where they are predicted."""
    shown = []
    for name in names:
        where = list((files or {}).get(name, []))
        shown.append(f"{name} (in {', '.join(where[:3])}{', ...' if len(where) > 3 else ''})" if where else name)
    return ValueError(f"{what} have class(es) that the ground truth has no event of: {', '.join(shown)}; count their "
                      "detections as false positives (unknown_classes='false-positives') or leave them out "
                      "(unknown_classes='ignore')")


def split_classes(
    classes, reference_labels, predicted_labels, *, unknown_classes: str = "ignore", what: str = "the predictions",
    files: Optional[Mapping[str, Sequence[str]]] = None,
) -> tuple[list[str], list[str]]:
    """``(evaluated, false_positive_classes)``: the classes sed_scores_eval evaluates (those of
    ``classes``, or of every label of the inputs, that have reference events), and the
    predicted classes without reference events whose detections are to count as false
    positives (``unknown_classes="false-positives"``; none otherwise).

    A class of ``predicted_labels`` without reference events is an "unknown" class: see
    :data:`UNKNOWN_CLASSES` (``what`` and ``files`` name where it is predicted, for the error).
    A class of ``classes`` that is neither in the reference nor predicted is left out with a
    warning, as there is nothing of it to count.
    """
    check_unknown_classes(unknown_classes)
    wanted = list(classes) if classes is not None else sorted(set(reference_labels) | set(predicted_labels))
    evaluated = [name for name in wanted if name in reference_labels]
    unknown = [name for name in wanted if name not in reference_labels and name in set(predicted_labels)]
    if unknown and unknown_classes == "error":
        raise unknown_classes_error(unknown, what, files)
    counted = unknown if unknown_classes == "false-positives" else []
    left_out = [name for name in wanted if name not in reference_labels and name not in counted]
    if left_out:
        warnings.warn(f"classes without ground truth events are not evaluated: {', '.join(left_out)}", stacklevel=3)
    if not evaluated:
        raise ValueError("no class to evaluate: the ground truth has no event of " + ", ".join(wanted))
    return evaluated, counted


def evaluated_classes(classes, reference_labels, other_labels) -> list[str]:
    """Classes to evaluate: ``classes``, or every label of the inputs, less those without reference events.

    sed_scores_eval refuses a class without ground truth events (its recall is undefined);
    such a class is left out with a warning rather than failing the whole evaluation, and
    its detections count nowhere, micro averages included (``split_classes`` with
    ``unknown_classes="ignore"``).
    """
    return split_classes(classes, reference_labels, other_labels)[0]
