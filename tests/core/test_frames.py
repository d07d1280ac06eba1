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


def test_whole_steps_absorbs_float_error_in_both_directions():
    from audiotask.core.frames import whole_steps

    assert whole_steps(0.3, 0.1) == 3 and whole_steps(0.3, 0.1, up=True) == 3  # 0.3 / 0.1 = 2.9999999999999996
    assert whole_steps(0.7, 0.1, up=True) == 7  # 0.7 / 0.1 = 6.999999999999999
    assert whole_steps(1.05, 0.5) == 2 and whole_steps(1.05, 0.5, up=True) == 3
    lengths = np.array([0.3, 0.35, 1.0])
    assert whole_steps(lengths, 0.1).tolist() == [3, 3, 10]
    assert whole_steps(lengths, 0.1, up=True).tolist() == [3, 4, 10]


def test_seconds_to_samples_rounds_numbers_and_arrays_alike():
    from audiotask.core.frames import seconds_to_samples

    times = [0.1, 1 / 3, 10.0]
    as_array = seconds_to_samples(np.array(times), 16000)
    assert as_array.dtype == np.int64
    assert as_array.tolist() == [seconds_to_samples(t, 16000) for t in times] == [1600, 5333, 160000]
    assert isinstance(seconds_to_samples(np.float64(0.5), 16000), int)


def test_time_arithmetic_has_one_tolerance_outside_core_frames():
    """Every seconds -> steps rounding goes through core.frames: no module keeps its own epsilon."""
    import re
    from pathlib import Path

    import audiotask

    package = Path(audiotask.__file__).parent
    offenders = [str(path.relative_to(package)) for path in package.rglob("*.py")
                 if path.name != "frames.py" and re.search(r"(np\.|math\.)(floor|ceil)\([^)]*[+-] *1e-9", path.read_text())]
    assert offenders == []
