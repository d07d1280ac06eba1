"""From frame scores to events: median filtering, hysteresis binarisation, minimum durations.

Pure, vectorised functions over ``(frames, classes)`` arrays; :func:`scores_to_events`
chains them on a ``pyannote.core.SlidingWindowFeature`` as :class:`~audiotask.inference.
inference.Inference` returns it.

Time convention (see :mod:`audiotask.core.frames`): active frames ``i .. j-1`` make the
event ``[centre(i) - step/2, centre(j-1) + step/2)``, i.e. the frame edges for
non-overlapping frames. :func:`audiotask.inference.formats.scores_to_dataframe` uses the same
cells, so events and score files agree on where a frame starts and ends.

Per-window scores (a CHUNK model's rows, windows longer than their step) are first spread
onto step-wide cells by :func:`audiotask.inference.aggregation.windows_to_timeline`: a row
is a whole window, not a cell centred on it.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import scipy.ndimage
from pyannote.core import Annotation, Segment, SlidingWindow, SlidingWindowFeature

# first_cell_start lives with the other conversions; imported here, where it was first
# defined, for the code that imports it from this module
from audiotask.core.frames import EPSILON, cell_edges, first_cell_start, num_cells_before
from audiotask.inference.aggregation import is_per_window, windows_to_timeline

Event = tuple[float, float, str]
PerClass = Union[float, Sequence[float]]

_TIME_DECIMALS = 6


def _check_frames_classes(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must have shape (frames, classes), got shape {array.shape}")
    return array


def _per_class(value: Optional[PerClass], num_classes: int, name: str) -> np.ndarray:
    """A scalar or one value per class, as a float array of shape (classes,)."""
    values = np.asarray(value, dtype=np.float64)
    if values.ndim == 0:
        return np.full(num_classes, float(values))
    if values.shape != (num_classes,):
        raise ValueError(f"{name} must be a number or one number per class ({num_classes}), got {value!r}")
    return values


def filter_size(length: float, frame_step: float) -> int:
    """Median filter length of ``length`` seconds as an odd number of frames, at least 1.

    An odd size keeps the filter centred on its frame, so that filtering moves no boundary
    on average; an even rounding is moved up to the next odd number.
    """
    if length < 0:
        raise ValueError(f"median filter length must be >= 0 seconds, got {length}")
    size = max(1, int(round(length / frame_step)))
    return size if size % 2 == 1 else size + 1


def median_filter(scores: np.ndarray, *, frame_step: float, length: PerClass) -> np.ndarray:
    """Median-filter each class's scores along time.

    Parameters
    ----------
    scores : np.ndarray, shape (frames, classes)
    frame_step : float
        Hop between frames, in seconds.
    length : float or sequence of float, shape (classes,)
        Filter length in seconds, one for all classes or one per class; converted to an odd
        number of frames by :func:`filter_size` (0 leaves the class unchanged).

    Returns
    -------
    np.ndarray, shape (frames, classes)
        ``scipy.ndimage.median_filter(scores[:, k], size=n_k, mode="nearest")`` for each class.
    """
    scores = _check_frames_classes(scores, "scores")
    lengths = _per_class(length, scores.shape[1], "length")
    sizes = np.array([filter_size(seconds, frame_step) for seconds in lengths])
    filtered = scores.copy()
    # one scipy call per distinct size: a (n, 1) footprint filters every column independently
    for size in np.unique(sizes):
        columns = np.flatnonzero(sizes == size)
        if size > 1:
            filtered[:, columns] = scipy.ndimage.median_filter(scores[:, columns], size=(size, 1), mode="nearest")
    return filtered


def binarize_hysteresis(
    scores: np.ndarray, *, onset: PerClass, offset: Optional[PerClass] = None
) -> np.ndarray:
    """Active frames by hysteresis thresholding, each class on its own.

    A region starts at a frame whose score is above ``onset`` and goes on while the score
    stays above ``offset``. Regions are not extended backwards: a region's first frame is
    the first one above ``onset``, even when frames before it are above ``offset``.

    Parameters
    ----------
    scores : np.ndarray, shape (frames, classes)
    onset, offset : float or sequence of float, shape (classes,)
        Activation and deactivation thresholds (``offset`` defaults to ``onset``); they
        must satisfy ``offset <= onset``.

    Returns
    -------
    np.ndarray of bool, shape (frames, classes)
    """
    scores = _check_frames_classes(scores, "scores")
    num_frames, num_classes = scores.shape
    onsets = _per_class(onset, num_classes, "onset")
    offsets = onsets if offset is None else _per_class(offset, num_classes, "offset")
    if np.any(offsets > onsets):
        raise ValueError(f"offset thresholds must not exceed onset thresholds, got onset={onset!r}, offset={offset!r}")
    above_onset = scores > onsets
    above_offset = scores > offsets
    index = np.arange(num_frames)[:, None]
    # a frame is active when the latest frame above onset comes after the latest frame at or
    # below offset: the region that frame started has not been interrupted since
    last_onset = np.maximum.accumulate(np.where(above_onset, index, -1), axis=0)
    last_break = np.maximum.accumulate(np.where(above_offset, -1, index), axis=0)
    return above_offset & (last_onset > last_break)


def _runs(active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(class, start, end)`` of every run of True frames, ``end`` exclusive, ordered by class then start."""
    num_frames, num_classes = active.shape
    padded = np.zeros((num_classes, num_frames + 2), dtype=np.int8)
    padded[:, 1:-1] = active.T
    change = np.diff(padded, axis=1)
    # row-major nonzero: starts and ends come in the same (class, time) order, so they pair up
    classes, starts = np.nonzero(change == 1)
    _, ends = np.nonzero(change == -1)
    return classes, starts, ends


def _paint(shape: tuple[int, int], classes: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Boolean (frames, classes) mask that is True over the frame intervals ``[start, end)``."""
    num_frames, num_classes = shape
    delta = np.zeros((num_frames + 1, num_classes), dtype=np.int64)
    np.add.at(delta, (starts, classes), 1)
    np.add.at(delta, (ends, classes), -1)
    return np.cumsum(delta, axis=0)[:-1] > 0


def apply_min_durations(
    active: np.ndarray,
    *,
    frame_step: float,
    min_duration_on: PerClass = 0.0,
    min_duration_off: PerClass = 0.0,
) -> np.ndarray:
    """Fill gaps shorter than ``min_duration_off``, then drop events shorter than ``min_duration_on``.

    Parameters
    ----------
    active : np.ndarray of bool, shape (frames, classes)
    frame_step : float
        Hop between frames, in seconds: a run of ``n`` frames lasts ``n * frame_step`` s.
    min_duration_on, min_duration_off : float or sequence of float, shape (classes,)
        In seconds. Only gaps between two events are filled: the file's start and end are
        not events' neighbours.

    Returns
    -------
    np.ndarray of bool, shape (frames, classes)
    """
    active = _check_frames_classes(active, "active").astype(bool)
    num_frames, num_classes = active.shape
    min_on = _per_class(min_duration_on, num_classes, "min_duration_on")
    min_off = _per_class(min_duration_off, num_classes, "min_duration_off")
    classes, starts, ends = _runs(~active)
    short = ((ends - starts) * frame_step < min_off[classes] - EPSILON) & (starts > 0) & (ends < num_frames)
    active = active | _paint(active.shape, classes[short], starts[short], ends[short])
    classes, starts, ends = _runs(active)
    short = (ends - starts) * frame_step < min_on[classes] - EPSILON
    return active & ~_paint(active.shape, classes[short], starts[short], ends[short])


def active_to_events(active: np.ndarray, *, frames: SlidingWindow, classes: Sequence[str]) -> list[Event]:
    """Events ``(onset, offset, label)`` in seconds of the runs of active frames.

    Parameters
    ----------
    active : np.ndarray of bool, shape (frames, classes)
    frames : pyannote.core.SlidingWindow
        Frame ``i`` is centred on ``frames.start + i * frames.step + frames.duration / 2``.
    classes : sequence of str, length classes

    Returns
    -------
    list of (float, float, str)
        Active frames ``i .. j-1`` give ``(centre(i) - step/2, centre(j-1) + step/2, label)``
        (rounded to the microsecond); sorted by onset, then label.
    """
    active = _check_frames_classes(active, "active")
    if len(classes) != active.shape[1]:
        raise ValueError(f"{len(classes)} class names for {active.shape[1]} classes")
    class_index, starts, ends = _runs(active.astype(bool))
    # rounded to the microsecond, far below any frame step: i * step carries float error
    # (0.1 * 3 = 0.30000000000000004) that would otherwise reach the files we write
    onsets = np.round(cell_edges(frames, starts), _TIME_DECIMALS)
    offsets = np.round(cell_edges(frames, ends), _TIME_DECIMALS)
    events = [(float(on), float(off), classes[k]) for on, off, k in zip(onsets, offsets, class_index)]
    return sorted(events, key=lambda event: (event[0], event[2]))


def scores_to_events(
    scores: SlidingWindowFeature,
    *,
    onset: PerClass = 0.5,
    offset: Optional[PerClass] = None,
    median_filter_length: PerClass = 0.0,
    min_duration_on: PerClass = 0.0,
    min_duration_off: PerClass = 0.0,
    classes: Optional[Sequence[str]] = None,
    end: Optional[float] = None,
) -> list[Event]:
    """Events of a file's scores: median filter, hysteresis, minimum durations.

    Parameters
    ----------
    scores : pyannote.core.SlidingWindowFeature, data of shape (frames, classes)
        Scores in [0, 1] (after the model's activation) on their frame grid. Per-window
        scores (``sliding_window.duration > step``, a CHUNK model's output) are first
        spread onto step-wide cells by :func:`~audiotask.inference.aggregation.windows_to_timeline`,
        so that an event covers the windows that detected it.
    onset, offset : float or sequence of float
        Hysteresis thresholds (see :func:`binarize_hysteresis`).
    median_filter_length : float or sequence of float
        Median filter length in seconds (0: none).
    min_duration_on, min_duration_off : float or sequence of float
        Minimum event and gap durations in seconds (see :func:`apply_min_durations`).
    classes : sequence of str, optional
        Class names; default ``scores.labels``.
    end : float, optional
        End of the file, in seconds: cells starting at or after it are dropped and offsets
        past it are cut to it (the last window or frame may run over zero padding).

    Returns
    -------
    list of (onset, offset, label), in seconds, sorted by onset then label.
    """
    data = _check_frames_classes(scores.data, "scores.data")
    classes = list(classes if classes is not None else (scores.labels or []))
    if len(classes) != data.shape[1]:
        raise ValueError(f"{len(classes)} class names for scores of shape {data.shape}: give classes=")
    if is_per_window(scores.sliding_window):
        scores = windows_to_timeline(scores, end=end)
    frames = scores.sliding_window
    data = rows_before(scores.data, frames=frames, end=end)
    filtered = median_filter(data, frame_step=frames.step, length=median_filter_length)
    active = binarize_hysteresis(filtered, onset=onset, offset=offset)
    active = apply_min_durations(
        active, frame_step=frames.step, min_duration_on=min_duration_on, min_duration_off=min_duration_off
    )
    events = active_to_events(active, frames=frames, classes=classes)
    if end is None:
        return events
    last = round(float(end), _TIME_DECIMALS)
    return [(on, min(off, last), label) for on, off, label in events]


def rows_before(data: np.ndarray, *, frames: SlidingWindow, end: Optional[float]) -> np.ndarray:
    """The rows of ``data`` (frames, classes) whose cell starts before ``end`` seconds (all without ``end``).

    Cell ``i`` is ``[centre(i) - step/2, centre(i) + step/2)``, as in :func:`active_to_events`.
    """
    if end is None:
        return data
    return data[: num_cells_before(end, first_start=first_cell_start(frames), step=frames.step)]


def events_to_annotation(events: Sequence[Event], uri: str) -> Annotation:
    """``pyannote.core.Annotation`` of ``(onset, offset, label)`` events, one track per event."""
    annotation = Annotation(uri=uri)
    for track, (onset, offset, label) in enumerate(events):
        annotation[Segment(onset, offset), track] = label
    return annotation
