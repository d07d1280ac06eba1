"""The demo's per-file pictures: spectrogram over per-class score rows over event bars."""

import numpy as np
import pytest
import soundfile
from pyannote.core import SlidingWindow, SlidingWindowFeature

from audiotask.demo.plots import class_thresholds, plot_files, plot_scores, scores_figure

CLASSES = ["Cat", "Dog", "Speech"]
REFERENCE = [(0.5, 1.5, "Cat"), (1.0, 2.5, "Speech")]
DETECTIONS = [(0.6, 1.4, "Cat"), (1.2, 2.4, "Speech")]


@pytest.fixture
def audio(tmp_path):
    """A 3-s 16 kHz mono WAV: seeded noise with a 1 kHz tone from 0.5 to 1.5 s."""
    rate = 16000
    time = np.arange(3 * rate) / rate
    samples = 0.05 * np.random.default_rng(0).standard_normal(len(time))
    samples += 0.5 * np.sin(2 * np.pi * 1000 * time) * ((time >= 0.5) & (time < 1.5))
    path = tmp_path / "clip.wav"
    soundfile.write(path, samples.astype(np.float32), rate)
    return path


@pytest.fixture
def scores():
    """Scores of the 3 classes on 64-ms frames over 3 s, high where REFERENCE has events."""
    step = 4 * 256 / 16000
    centres = (np.arange(int(3 / step)) + 0.5) * step
    data = np.random.default_rng(1).uniform(0.0, 0.2, (len(centres), len(CLASSES)))
    for onset, offset, name in REFERENCE:
        data[(centres >= onset) & (centres < offset), CLASSES.index(name)] += 0.7
    return SlidingWindowFeature(data, SlidingWindow(start=0.0, duration=step, step=step), labels=CLASSES)


def test_with_audio_the_spectrogram_sits_above_one_score_row_per_class(tmp_path, audio, scores):
    png = plot_scores(tmp_path / "a.png", scores, REFERENCE, detections=DETECTIONS, audio=audio, thresholds=[0.4, 0.5, 0.6])
    assert png.stat().st_size > 10_000
    figure = scores_figure(scores, REFERENCE, detections=DETECTIONS, audio=audio, thresholds=[0.4, 0.5, 0.6])
    try:
        assert len(figure.axes) == len(CLASSES) + 3  # spectrogram, 3 rows, event bars, colour bar
        spectrogram, *rows, bars, colorbar = figure.axes
        # 48000 samples // hop 256 = 187 frames of 256 / 16000 s, from 0 s: the models' feature frames
        assert spectrogram.images[0].get_extent() == pytest.approx((0.0, 187 * 256 / 16000, -0.5, 63.5))
        assert spectrogram.images[0].get_cmap().name == "magma"
        assert [row.get_ylabel() for row in rows] == CLASSES
        dashed = [[line.get_ydata()[0] for line in row.lines if line.get_linestyle() == "--"] for row in rows]
        assert dashed == [[0.4], [0.5], [0.6]]
        assert len(rows[0].patches) == 1 and len(rows[1].patches) == 0  # Cat's detection is shaded, Dog has none
        # one time axis for all, spanning the cells of the scores' 46 frames
        for axis in (spectrogram, *rows, bars):
            assert axis.get_xlim() == pytest.approx((0.0, 46 * 4 * 256 / 16000))
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_without_audio_or_thresholds_only_scores_and_events_are_drawn(tmp_path, scores):
    png = plot_scores(tmp_path / "b.png", scores, REFERENCE)
    assert png.stat().st_size > 10_000
    figure = scores_figure(scores, REFERENCE)
    try:
        assert len(figure.axes) == len(CLASSES) + 1
        assert not any(axis.images for axis in figure.axes)
        assert not any(line.get_linestyle() == "--" for axis in figure.axes for line in axis.lines)
    finally:
        import matplotlib.pyplot as plt

        plt.close(figure)


def test_thresholds_are_one_for_all_one_per_class_or_by_class_name():
    assert class_thresholds(None, CLASSES) == [None, None, None]
    assert class_thresholds(0.5, CLASSES) == [0.5, 0.5, 0.5]
    assert class_thresholds(np.array([0.1, 0.2, 0.3]), CLASSES) == pytest.approx([0.1, 0.2, 0.3])
    assert class_thresholds({"Dog": 0.7}, CLASSES) == [None, 0.7, None]
    with pytest.raises(ValueError, match="2 thresholds for 3 classes"):
        class_thresholds([0.1, 0.2], CLASSES)


def test_plot_files_draws_the_spectrogram_of_the_files_given_audio(tmp_path, audio, scores):
    paths = plot_files(
        tmp_path / "plots", {"clip.wav": scores, "other.wav": scores}, {"clip.wav": REFERENCE},
        audio_by_file={"clip.wav": audio}, thresholds=0.5,
    )
    assert [path.name for path in paths] == ["clip.png", "other.png"]
    # the spectrogram makes the picture taller
    from PIL import Image

    assert Image.open(paths[0]).height > Image.open(paths[1]).height
