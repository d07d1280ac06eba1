"""core/frames.py is the one place that turns seconds into frames, cells and chunk offsets."""

import numpy as np
import pytest
from pyannote.core import SlidingWindow

from audiotask.core import frames as conversions
from audiotask.core.frames import (
    Frames,
    cell_boundaries,
    cell_edges,
    chunk_starts,
    first_cell_start,
    frame_offsets,
    num_cells_before,
    warm_up_mask,
)
from audiotask.inference import aggregation, postprocessing

FRAMES = Frames(step=0.1, duration=0.1, hop_samples=1600)


def test_warm_up_mask_keeps_frames_whose_centre_is_in_the_trusted_region():
    # centres 0.05, 0.15, ..., 0.95 of a 1-s chunk; trusted region [0.2, 0.9)
    mask = warm_up_mask(FRAMES, 10, duration=1.0, warm_up=(0.2, 0.1))
    assert mask.dtype == bool and mask.shape == (10,)
    assert mask.tolist() == [False, False, True, True, True, True, True, True, True, False]
    assert warm_up_mask(FRAMES, 10, duration=1.0, warm_up=(0.0, 0.0)).all()
    with pytest.raises(ValueError, match="non-negative"):
        warm_up_mask(FRAMES, 10, duration=1.0, warm_up=(-0.1, 0.0))


def test_frame_weights_down_weight_exactly_the_frames_outside_the_warm_up_mask():
    frames = Frames(step=0.02, duration=0.05, hop_samples=320, start=0.01)
    mask = warm_up_mask(frames, 50, duration=1.0, warm_up=(0.13, 0.27))
    weights = aggregation.frame_weights(50, frames=frames, duration=1.0, warm_up=(0.13, 0.27))
    np.testing.assert_array_equal(weights[mask], np.hamming(50)[mask])
    np.testing.assert_array_equal(weights[~mask], np.hamming(50)[~mask] * aggregation.WARM_UP_EPSILON)


def test_cells_are_centred_on_frames():
    window = SlidingWindow(start=0.1, duration=0.3, step=0.1)  # centres 0.25, 0.35, ...
    assert first_cell_start(window) == pytest.approx(0.2)
    np.testing.assert_allclose(cell_boundaries(window, 3), [0.2, 0.3, 0.4, 0.5])
    np.testing.assert_allclose(cell_edges(window, np.array([0, 2, 5])), [0.2, 0.4, 0.7])
    # Frames and SlidingWindow are the same grid
    assert first_cell_start(Frames(step=0.1, duration=0.3, hop_samples=1, start=0.1)) == first_cell_start(window)


@pytest.mark.parametrize(
    "end, expected",
    [(0.05, 2), (0.2, 3), (0.2 + 1e-12, 3), (0.21, 4), (1.0, 11), (-0.1 + 1e-12, 1)],
)
def test_num_cells_before_counts_cells_starting_before_the_end(end, expected):
    # cells [-0.1, 0.0), [0.0, 0.1), ...: a cell starting at the end (up to float error) is
    # not before it, and a file ending inside cell 0 still has that cell
    assert num_cells_before(end, first_start=-0.1, step=0.1) == expected


def test_num_cells_before_needs_an_end_after_the_first_cell():
    with pytest.raises(ValueError, match="end"):
        num_cells_before(0.0, first_start=0.0, step=0.1)


def test_frame_offsets_of_chunks_on_the_grid():
    np.testing.assert_array_equal(frame_offsets([0.0, 0.3, 1.2], frames=FRAMES), [0, 3, 12])
    with pytest.raises(ValueError, match="frame step"):
        frame_offsets([0.05], frames=FRAMES)


def test_moved_functions_keep_their_old_import_paths():
    assert aggregation.chunk_starts is chunk_starts is conversions.chunk_starts
    assert aggregation.frame_offsets is frame_offsets
    assert postprocessing.first_cell_start is first_cell_start
    np.testing.assert_allclose(chunk_starts(5.0, duration=2.0, step=1.0), [0.0, 1.0, 2.0, 3.0])
