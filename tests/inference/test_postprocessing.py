"""Scores to events: median filter, hysteresis, minimum durations, event times."""

import numpy as np
import pytest
import scipy.ndimage
from pyannote.core import Segment, SlidingWindow, SlidingWindowFeature, Timeline

from audiotask.inference.postprocessing import (
    active_to_events,
    apply_min_durations,
    binarize_hysteresis,
    events_to_annotation,
    filter_size,
    median_filter,
    scores_to_events,
)

FRAMES = SlidingWindow(start=0.0, duration=0.1, step=0.1)


def column(*values):
    """One class's scores or activity as a (frames, 1) array."""
    return np.array(values)[:, None]


# --- median filter -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "length, step, size",
    [(0.0, 0.02, 1), (0.01, 0.02, 1), (0.04, 0.02, 3), (0.1, 0.02, 5), (0.45, 0.1, 5), (0.2, 0.1, 3)],
)
def test_filter_size_is_odd_number_of_frames(length, step, size):
    assert filter_size(length, step) == size


def test_median_filter_equals_scipy_per_class():
    scores = np.random.default_rng(0).random((200, 4))
    lengths = [0.0, 0.1, 0.45, 0.06]
    filtered = median_filter(scores, frame_step=0.02, length=lengths)
    for k, seconds in enumerate(lengths):
        expected = scipy.ndimage.median_filter(scores[:, k], size=filter_size(seconds, 0.02), mode="nearest")
        np.testing.assert_array_equal(filtered[:, k], expected)
    np.testing.assert_array_equal(filtered[:, 0], scores[:, 0])  # 0 s: unchanged


def test_median_filter_removes_a_one_frame_spike_and_keeps_input():
    scores = column(0, 0, 1, 0, 0, 1, 1, 1, 0)
    filtered = median_filter(scores, frame_step=0.1, length=0.3)
    np.testing.assert_array_equal(filtered[:, 0], [0, 0, 0, 0, 0, 1, 1, 1, 0])
    assert scores[2, 0] == 1  # the input is not modified


def test_median_filter_checks_shapes():
    with pytest.raises(ValueError, match="frames, classes"):
        median_filter(np.zeros(10), frame_step=0.1, length=0.3)
    with pytest.raises(ValueError, match="one number per class"):
        median_filter(np.zeros((10, 2)), frame_step=0.1, length=[0.3, 0.3, 0.3])


# --- hysteresis --------------------------------------------------------------------------


def test_hysteresis_starts_above_onset_and_continues_above_offset():
    scores = column(0.2, 0.6, 0.4, 0.3, 0.45, 0.7, 0.1)
    active = binarize_hysteresis(scores, onset=0.5, offset=0.35)
    np.testing.assert_array_equal(active[:, 0], [0, 1, 1, 0, 0, 1, 0])
    # 0.45 > offset but no frame above onset started that region: inactive


def test_hysteresis_events_at_start_and_end_of_file():
    scores = column(0.9, 0.4, 0.1, 0.4, 0.9)
    active = binarize_hysteresis(scores, onset=0.5, offset=0.3)
    np.testing.assert_array_equal(active[:, 0], [1, 1, 0, 0, 1])


def test_hysteresis_thresholds_are_strict_and_offset_defaults_to_onset():
    scores = column(0.5, 0.51, 0.49, 0.6)
    np.testing.assert_array_equal(binarize_hysteresis(scores, onset=0.5)[:, 0], [0, 1, 0, 1])


def test_hysteresis_per_class_thresholds():
    scores = np.repeat(column(0.1, 0.6, 0.9, 0.7, 0.2), 2, axis=1)
    active = binarize_hysteresis(scores, onset=[0.5, 0.8], offset=[0.5, 0.65])
    np.testing.assert_array_equal(active.T, [[0, 1, 1, 1, 0], [0, 0, 1, 1, 0]])


def test_hysteresis_refuses_offset_above_onset():
    with pytest.raises(ValueError, match="offset"):
        binarize_hysteresis(column(0.1, 0.9), onset=0.5, offset=0.6)


def test_hysteresis_equals_frame_by_frame_reference():
    rng = np.random.default_rng(1)
    scores = rng.random((300, 3))
    onsets, offsets = np.array([0.6, 0.7, 0.5]), np.array([0.3, 0.7, 0.2])
    expected = np.zeros_like(scores, dtype=bool)
    for k in range(3):
        on = False
        for t in range(len(scores)):
            on = scores[t, k] > onsets[k] if not on else scores[t, k] > offsets[k]
            expected[t, k] = on
    np.testing.assert_array_equal(binarize_hysteresis(scores, onset=onsets, offset=offsets), expected)


# --- minimum durations -------------------------------------------------------------------


def test_min_duration_off_fills_short_gaps_only_between_events():
    active = column(1, 1, 0, 1, 0, 0, 0, 1, 1, 1).astype(bool)
    filled = apply_min_durations(active, frame_step=0.1, min_duration_off=0.2)
    np.testing.assert_array_equal(filled[:, 0], [1, 1, 1, 1, 0, 0, 0, 1, 1, 1])
    edges = column(0, 1, 1, 0).astype(bool)  # gaps at the file's start and end have one neighbour
    np.testing.assert_array_equal(apply_min_durations(edges, frame_step=0.1, min_duration_off=1.0), edges)


def test_min_durations_fill_gaps_before_removing_short_events():
    active = column(1, 1, 0, 1, 0, 0, 0, 1, 1, 1).astype(bool)
    result = apply_min_durations(active, frame_step=0.1, min_duration_off=0.2, min_duration_on=0.35)
    # the 2 + 1 frame events merged (0.4 s) survive; the 0.3 s one does not
    np.testing.assert_array_equal(result[:, 0], [1, 1, 1, 1, 0, 0, 0, 0, 0, 0])


def test_min_duration_on_keeps_an_event_of_exactly_that_duration():
    active = column(0, 1, 1, 1, 0, 1, 1, 0).astype(bool)
    result = apply_min_durations(active, frame_step=0.1, min_duration_on=0.3)
    np.testing.assert_array_equal(result[:, 0], [0, 1, 1, 1, 0, 0, 0, 0])


def test_min_durations_per_class():
    active = np.repeat(column(1, 0, 1, 1, 0, 0, 1).astype(bool), 2, axis=1)
    result = apply_min_durations(active, frame_step=0.1, min_duration_on=[0.0, 0.2], min_duration_off=[0.15, 0.0])
    np.testing.assert_array_equal(result.T, [[1, 1, 1, 1, 0, 0, 1], [0, 0, 1, 1, 0, 0, 0]])


def test_min_durations_equal_run_by_run_reference():
    rng = np.random.default_rng(2)
    active = rng.random((200, 2)) > 0.5
    result = apply_min_durations(active, frame_step=0.1, min_duration_on=0.25, min_duration_off=0.25)
    for k in range(2):
        expected = active[:, k].copy()
        runs = _runs(expected)
        for value, start, end in runs:
            if not value and start > 0 and end < len(expected) and end - start < 2.5:
                expected[start:end] = True
        for value, start, end in _runs(expected):
            if value and end - start < 2.5:
                expected[start:end] = False
        np.testing.assert_array_equal(result[:, k], expected)


def _runs(values):
    runs, start = [], 0
    for t in range(1, len(values) + 1):
        if t == len(values) or values[t] != values[start]:
            runs.append((values[start], start, t))
            start = t
    return runs


# --- events ------------------------------------------------------------------------------


def test_active_to_events_uses_frame_edges_and_sorts():
    active = np.array([[0, 1], [1, 0], [1, 0], [0, 1]], dtype=bool)
    events = active_to_events(active, frames=FRAMES, classes=["a", "b"])
    assert events == [(0.0, 0.1, "b"), (0.1, 0.3, "a"), (0.3, 0.4, "b")]


def test_active_to_events_with_overlapping_frames_uses_centres():
    frames = SlidingWindow(start=1.0, duration=0.5, step=0.1)  # centres 1.25, 1.35, ...
    active = column(0, 1, 1, 0).astype(bool)
    assert active_to_events(active, frames=frames, classes=["a"]) == [(1.3, 1.5, "a")]


def test_active_to_events_checks_class_names():
    with pytest.raises(ValueError, match="class names"):
        active_to_events(np.zeros((3, 2), bool), frames=FRAMES, classes=["a"])


def test_scores_to_events_whole_chain():
    data = np.array([
        [0.9, 0.0],
        [0.2, 0.0],  # one-frame dip: median filter fills it
        [0.8, 0.6],
        [0.7, 0.6],
        [0.1, 0.0],
        [0.1, 0.9],  # one-frame class-b event: removed by min_duration_on
        [0.1, 0.0],
        [0.1, 0.0],
    ])
    scores = SlidingWindowFeature(data, FRAMES, labels=["Dog", "Speech"])
    events = scores_to_events(scores, onset=0.5, median_filter_length=[0.3, 0.0], min_duration_on=0.15)
    assert events == [(0.0, 0.4, "Dog"), (0.2, 0.4, "Speech")]
    assert scores_to_events(scores, onset=0.95) == []


def test_scores_to_events_class_names_from_argument_or_labels():
    scores = SlidingWindowFeature(column(0.0, 0.9, 0.0), FRAMES)
    assert scores_to_events(scores, classes=["Cat"]) == [(0.1, 0.2, "Cat")]
    with pytest.raises(ValueError, match="classes="):
        scores_to_events(scores)


def test_scores_to_events_of_one_window_covers_the_window():
    # a 2-s file scored by a 2-s chunk model, hop 0.2 s: one window, the whole file
    scores = SlidingWindowFeature(np.array([[0.9, 0.1]]), SlidingWindow(start=0.0, duration=2.0, step=0.2),
                                  labels=["Dog", "Speech"])
    assert scores_to_events(scores) == [(0.0, 2.0, "Dog")]
    assert scores_to_events(scores, end=2.0) == [(0.0, 2.0, "Dog")]


def test_scores_to_events_of_overlapping_windows_uses_cell_means_and_end():
    # 2-s windows every second, [0, 2), [1, 3), [2, 4), over a 3.5-s file; cell means:
    # Dog 0.9, 0.9, 0.5, 0.1 and Speech 0.1, 0.15, 0.55, 0.9 (onset 0.5 is strict)
    data = np.array([[0.9, 0.1], [0.9, 0.2], [0.1, 0.9]])
    scores = SlidingWindowFeature(data, SlidingWindow(start=0.0, duration=2.0, step=1.0), labels=["Dog", "Speech"])
    assert scores_to_events(scores) == [(0.0, 2.0, "Dog"), (2.0, 4.0, "Speech")]
    # the file ends at 3.5 s: the last cell is cut there
    assert scores_to_events(scores, end=3.5) == [(0.0, 2.0, "Dog"), (2.0, 3.5, "Speech")]
    # ... and at 2 s, cells from 2 s on are gone
    assert scores_to_events(scores, end=2.0) == [(0.0, 2.0, "Dog")]
    # post-processing runs on the cells: 2 cells of 1 s are a 2-s event
    assert scores_to_events(scores, min_duration_on=2.5) == []
    assert scores_to_events(scores, min_duration_on=2.0) == [(0.0, 2.0, "Dog"), (2.0, 4.0, "Speech")]


def test_scores_to_events_end_cuts_frame_scores_too():
    scores = SlidingWindowFeature(column(0.0, 0.9, 0.9, 0.9, 0.9), FRAMES, labels=["Dog"])
    assert scores_to_events(scores) == [(0.1, 0.5, "Dog")]
    assert scores_to_events(scores, end=0.35) == [(0.1, 0.35, "Dog")]
    with pytest.raises(ValueError, match="end"):
        scores_to_events(scores, end=0.0)


def test_events_to_annotation():
    annotation = events_to_annotation([(0.0, 1.5, "Dog"), (1.0, 2.0, "Dog"), (3.0, 4.0, "Cat")], "clip")
    assert annotation.uri == "clip"
    assert sorted(annotation.labels()) == ["Cat", "Dog"]
    assert annotation.label_timeline("Dog").support() == Timeline([Segment(0.0, 2.0)])
    assert list(annotation.itertracks(yield_label=True))[0] == (Segment(0.0, 1.5), 0, "Dog")
    assert len(annotation) == 3
