"""Sliding-window inference: aggregation by hand, whole file equals chunk by chunk."""

import numpy as np
import pytest
import soundfile
import torch
from pyannote.core import Segment, SlidingWindow, SlidingWindowFeature

from audiotask.core.frames import Frames
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.inference.aggregation import (
    WARM_UP_EPSILON,
    chunk_starts,
    coverage,
    frame_weights,
    is_per_window,
    overlap_add,
    windows_to_cells,
    windows_to_timeline,
)
from audiotask.inference.inference import Inference, default_step, step_in_samples
from audiotask.models.debug import Debug
from audiotask.testing.dummies import make_clip

SAMPLE_RATE = 16000
HOP = 320  # 20 ms frames: 2 s chunks have 100 frames, 0.5 s steps are 25 frames
CLASSES = ["a", "b"]
FRAMES = Frames(step=0.1, duration=0.1, hop_samples=1600)  # 10 frames per second, for hand-made scores


def debug_model(resolution=Resolution.FRAME, problem=Problem.MULTI_LABEL_CLASSIFICATION, warm_up=0.0, seed=0):
    torch.manual_seed(seed)
    model = Debug(sample_rate=SAMPLE_RATE, frame_hop=HOP)
    model.attach_specifications(
        Specifications(problem=problem, resolution=resolution, duration=2.0, warm_up=warm_up, classes=CLASSES)
    )
    return model.eval()


@pytest.fixture
def clip(tmp_path):
    """A 5.3 s file with two tone events over noise (not a whole number of chunks)."""
    samples = make_clip([(0.5, 1.8, "Dog"), (3.0, 4.6, "Speech")], duration=5.3, sample_rate=SAMPLE_RATE, seed=1)
    path = tmp_path / "clip.wav"
    soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    return path


def chunk_scores_by_hand(model, file, start):
    """Activated model output on one chunk read with the reader's own crop: (frames, classes) or (classes,)."""
    duration = model.specifications.duration
    waveform, _ = model.audio.crop(file, Segment(start, start + duration), fixed=duration)
    with torch.inference_mode():
        return model.default_activation(model(waveform[None]))[0].numpy()


# ---- aggregation: pure functions -------------------------------------------------------
def test_chunk_starts_cover_the_file():
    np.testing.assert_allclose(chunk_starts(5.0, duration=2.0, step=1.0), [0.0, 1.0, 2.0, 3.0])
    # 5.3 s needs a fifth chunk, ending at 6 s, past the end
    np.testing.assert_allclose(chunk_starts(5.3, duration=2.0, step=1.0), [0.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(chunk_starts(0.7, duration=2.0, step=0.5), [0.0])
    np.testing.assert_allclose(chunk_starts(2.0, duration=2.0, step=0.5), [0.0])
    with pytest.raises(ValueError, match="step"):
        chunk_starts(5.0, duration=2.0, step=0.0)


def test_frame_weights_window_and_warm_up():
    np.testing.assert_allclose(frame_weights(5, frames=FRAMES, duration=0.5, window="uniform"), np.ones(5))
    np.testing.assert_allclose(frame_weights(5, frames=FRAMES, duration=0.5), [0.08, 0.54, 1.0, 0.54, 0.08])
    # centres at 0.05 .. 0.95 s: left warm-up 0.2 s takes 2 frames, right warm-up 0.1 s takes 1
    weights = frame_weights(10, frames=FRAMES, duration=1.0, warm_up=(0.2, 0.1), window="uniform")
    np.testing.assert_allclose(weights, [WARM_UP_EPSILON] * 2 + [1.0] * 7 + [WARM_UP_EPSILON])
    with pytest.raises(ValueError, match="window"):
        frame_weights(10, frames=FRAMES, duration=1.0, window="hann")


def test_overlap_add_two_constant_chunks_half_overlap():
    # chunk 0 (frames 0-3) scores 0, chunk 1 (frames 2-5) scores 1: overlap frames average to 0.5
    scores = np.stack([np.zeros((4, 1)), np.ones((4, 1))])
    uniform = np.ones(4)
    output = overlap_add(scores, np.array([0.0, 0.2]), frames=FRAMES, weights=uniform, num_output_frames=6)
    np.testing.assert_allclose(output[:, 0], [0, 0, 0.5, 0.5, 1, 1])
    # weighted: frame 2 is chunk 0's frame 2 (w=3) and chunk 1's frame 0 (w=1) -> 1/4
    weights = np.array([1.0, 2.0, 3.0, 4.0])
    output = overlap_add(scores, np.array([0.0, 0.2]), frames=FRAMES, weights=weights, num_output_frames=6)
    np.testing.assert_allclose(output[:, 0], [0, 0, 1 / 4, 2 / 6, 1, 1])


def test_overlap_add_per_class_drops_padding_and_marks_uncovered():
    scores = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    starts = np.array([0.0, 0.5])  # frames 0-2 and 5-7; 3-4 uncovered; 7 past the end
    output = overlap_add(scores, starts, frames=FRAMES, weights=np.ones(3), num_output_frames=7)
    expected = np.array([[0, 1], [2, 3], [4, 5], [0, 0], [0, 0], [6, 7], [8, 9]], dtype=float)
    np.testing.assert_allclose(output, expected)
    mask = coverage(starts, num_frames=3, frames=FRAMES, weights=np.ones(3), num_output_frames=7)
    np.testing.assert_allclose(mask, [1, 1, 1, 0, 0, 1, 1])


def test_overlap_add_warm_up_frames_only_count_where_nothing_else_covers():
    # 1 s chunks every 0.5 s with 0.2 s warm-up either side; chunk c scores c everywhere
    weights = frame_weights(10, frames=FRAMES, duration=1.0, warm_up=(0.2, 0.2), window="uniform")
    scores = np.broadcast_to(np.arange(3.0)[:, None, None], (3, 10, 1))
    output = overlap_add(scores, np.array([0.0, 0.5, 1.0]), frames=FRAMES, weights=weights, num_output_frames=20)[:, 0]
    # chunk 0's centre is frames 2-7, chunk 1's is frames 7-12 (frames 5-6 are its left warm-up)
    np.testing.assert_allclose(output[5:7], 0.0, atol=1e-9)  # chunk 1's warm-up barely counts
    assert output[7] == pytest.approx(0.5)  # both centres: plain average
    assert output[8] == pytest.approx(1.0, abs=1e-9)  # chunk 0's warm-up, chunk 1's centre
    # the file's first and last frames are covered by warm-up only: they keep that chunk's value
    np.testing.assert_allclose(output[:2], 0.0, atol=1e-9)
    np.testing.assert_allclose(output[18:], 2.0)


def test_overlap_add_rejects_starts_off_the_frame_grid():
    with pytest.raises(ValueError, match="frame step"):
        overlap_add(np.zeros((2, 4, 1)), np.array([0.0, 0.15]), frames=FRAMES, weights=np.ones(4), num_output_frames=6)
    with pytest.raises(ValueError, match="chunks, frames, classes"):
        overlap_add(np.zeros((2, 4)), np.array([0.0, 0.1]), frames=FRAMES, weights=np.ones(4), num_output_frames=6)


# ---- per-window scores onto a timeline ---------------------------------------------------
def test_windows_to_cells_are_means_of_the_windows_covering_each_centre():
    # 1.5 s windows every 0.5 s: [0, 1.5), [0.5, 2), [1, 2.5); cells of 0.5 s up to 2.5 s
    scores = np.array([[0.9, 0.0], [0.3, 1.0], [0.6, 0.5]])
    cells = windows_to_cells(scores, duration=1.5, step=0.5)
    expected = [
        [0.9, 0.0],  # [0, 0.5): window 0
        [0.6, 0.5],  # [0.5, 1): windows 0, 1
        [0.6, 0.5],  # [1, 1.5): windows 0, 1, 2
        [0.45, 0.75],  # [1.5, 2): windows 1, 2
        [0.6, 0.5],  # [2, 2.5): window 2
    ]
    np.testing.assert_allclose(cells, expected, rtol=0, atol=1e-12)


def test_windows_to_cells_end_drops_cells_starting_at_or_after_it():
    scores = np.array([[0.9], [0.3], [0.6]])
    np.testing.assert_allclose(windows_to_cells(scores, duration=1.5, step=0.5, end=1.2)[:, 0], [0.9, 0.6, 0.6])
    np.testing.assert_allclose(windows_to_cells(scores, duration=1.5, step=0.5, end=1.0)[:, 0], [0.9, 0.6])
    # an end past the last window adds nothing: no window scores that time
    assert len(windows_to_cells(scores, duration=1.5, step=0.5, end=10.0)) == 5
    # cells are counted from the windows' start, not from 0
    assert len(windows_to_cells(scores, duration=1.5, step=0.5, start=1.0, end=2.2)) == 3
    with pytest.raises(ValueError, match="end"):
        windows_to_cells(scores, duration=1.5, step=0.5, start=1.0, end=1.0)


def test_windows_to_cells_window_not_a_whole_number_of_steps():
    # [0, 2.3) and [1, 3.3): the cell [3, 4) reaches the last window's end, but its centre
    # 3.5 is past it: it keeps the previous cell's score (window 1 alone)
    cells = windows_to_cells(np.array([[1.0], [2.0]]), duration=2.3, step=1.0)
    np.testing.assert_allclose(cells[:, 0], [1.0, 1.5, 2.0, 2.0])
    # [0, 2.7), [1, 3.7): centres 0.5 .. 3.5 all covered
    cells = windows_to_cells(np.array([[1.0], [2.0]]), duration=2.7, step=1.0)
    np.testing.assert_allclose(cells[:, 0], [1.0, 1.5, 1.5, 2.0])


@pytest.mark.parametrize("duration, step, windows", [(2.0, 0.2, 17), (2.0, 0.7, 6), (1.0, 1.0, 4), (0.9, 0.2, 9)])
def test_windows_to_cells_equals_cell_by_cell_reference(duration, step, windows):
    scores = np.random.default_rng(0).random((windows, 3))
    cells = windows_to_cells(scores, duration=duration, step=step, start=0.5)
    starts = 0.5 + step * np.arange(windows)
    expected = []
    for k in range(len(cells)):  # plain loop: the windows containing each cell's centre
        centre = 0.5 + (k + 0.5) * step
        covering = (starts <= centre + 1e-9) & (centre < starts + duration - 1e-9)
        expected.append(scores[covering].mean(axis=0) if covering.any() else expected[-1])
    assert starts[-1] + duration <= 0.5 + len(cells) * step < starts[-1] + duration + step  # reaches the last end
    np.testing.assert_allclose(cells, expected, rtol=0, atol=1e-12)


def test_windows_to_cells_checks_its_input():
    with pytest.raises(ValueError, match="windows, classes"):
        windows_to_cells(np.zeros(3), duration=2.0, step=0.5)
    with pytest.raises(ValueError, match="duration >= step"):
        windows_to_cells(np.zeros((3, 1)), duration=0.1, step=0.5)


def test_windows_to_timeline_keeps_labels_dtype_and_frames():
    windows = SlidingWindow(start=0.0, duration=2.0, step=0.5)
    scores = SlidingWindowFeature(np.array([[0.2, 0.8], [0.4, 0.6]], dtype=np.float32), windows, labels=CLASSES)
    assert is_per_window(windows) and not is_per_window(SlidingWindow(start=0, duration=0.02, step=320 / 16000))
    timeline = windows_to_timeline(scores, end=2.3)
    cells = timeline.sliding_window
    assert (cells.start, cells.duration, cells.step) == (0.0, 0.5, 0.5)
    assert timeline.labels == CLASSES and timeline.data.dtype == np.float32
    # cells [0, 0.5) .. [2, 2.5): window 0 alone, both, both, both, window 1 alone
    np.testing.assert_allclose(timeline.data[:, 0], [0.2, 0.3, 0.3, 0.3, 0.4], rtol=1e-6)
    # frames one step long come back as they are
    frames = SlidingWindowFeature(np.arange(6.0).reshape(3, 2), FRAMES.sliding_window(), labels=CLASSES)
    np.testing.assert_array_equal(windows_to_timeline(frames).data, frames.data)


def test_chunk_model_file_of_one_chunk_is_one_window_spread_over_it(tmp_path):
    model = debug_model(resolution=Resolution.CHUNK)
    path = tmp_path / "two-seconds.wav"
    soundfile.write(path, make_clip([(0.5, 1.5, "Dog")], duration=2.0, sample_rate=SAMPLE_RATE, seed=3), SAMPLE_RATE)
    scores = Inference(model)(path)
    assert scores.data.shape == (1, 2)  # the per-window output is kept
    timeline = windows_to_timeline(scores, end=2.0)
    assert timeline.data.shape == (10, 2) and timeline.sliding_window.step == pytest.approx(0.2)
    np.testing.assert_allclose(timeline.data, np.repeat(scores.data, 10, axis=0))


# ---- step ------------------------------------------------------------------------------
def test_default_step_and_frame_alignment():
    assert default_step(2.0) == pytest.approx(0.2)
    assert default_step(2.0, (0.95, 0.95)) == pytest.approx(0.1)  # at most the warm-up-free centre
    assert step_in_samples(0.2, sample_rate=16000, hop_samples=256, floor=True) == 3072  # 12 frames, not 12.5
    assert step_in_samples(0.22, sample_rate=16000, hop_samples=256, floor=True) == 3328  # 13 frames, not 13.75
    assert step_in_samples(0.22, sample_rate=16000, hop_samples=256) == 3584  # nearest: 14 frames
    assert step_in_samples(0.001, sample_rate=16000, hop_samples=256) == 256  # at least one frame
    assert Inference(debug_model()).step == pytest.approx(0.2)  # 10 frames of 20 ms
    with pytest.warns(UserWarning, match="frame grid"):
        assert Inference(debug_model(), step=0.51).step == pytest.approx(0.52)
    with pytest.raises(ValueError, match="step"):
        Inference(debug_model(), step=2.5)


# ---- whole file equals chunk by chunk -----------------------------------------------------
def test_frame_model_without_overlap_equals_concatenated_chunks(clip):
    model = debug_model()
    scores = Inference(model, step=2.0, batch_size=2)(clip)
    expected = np.concatenate([chunk_scores_by_hand(model, clip, start) for start in (0.0, 2.0, 4.0)])
    num_frames = int(5.3 * SAMPLE_RATE) // HOP
    assert isinstance(scores, SlidingWindowFeature) and scores.data.shape == (num_frames, 2)
    np.testing.assert_allclose(scores.data, expected[:num_frames], atol=1e-5)
    assert ((scores.data >= 0) & (scores.data <= 1)).all()


def test_frame_model_with_overlap_equals_hand_average(clip):
    model = debug_model()
    step = 0.5
    scores = Inference(model, step=step, window="uniform", batch_size=3)(clip)
    num_frames = int(5.3 * SAMPLE_RATE) // HOP
    total, count = np.zeros((num_frames + 200, 2)), np.zeros(num_frames + 200)
    start = 0.0
    while True:  # plain loop, in the chunk-by-chunk way
        offset = int(round(start / 0.02))
        total[offset : offset + 100] += chunk_scores_by_hand(model, clip, start)
        count[offset : offset + 100] += 1
        if start + 2.0 >= 5.3:
            break
        start += step
    expected = total[:num_frames] / count[:num_frames, None]
    np.testing.assert_allclose(scores.data, expected, atol=1e-5)


def test_frame_model_with_warm_up_ignores_warm_up_frames_where_covered(clip):
    # warm-up of 0.5 s, step 1 s: every interior frame lies in exactly one chunk centre
    model = debug_model(warm_up=0.5)
    scores = Inference(model, step=1.0)(clip)
    num_frames = int(5.3 * SAMPLE_RATE) // HOP
    expected = np.zeros((num_frames + 100, 2))
    for start in (0.0, 1.0, 2.0, 3.0, 4.0):
        offset = int(round(start / 0.02))
        expected[offset + 25 : offset + 75] = chunk_scores_by_hand(model, clip, start)[25:75]
    expected[:25] = chunk_scores_by_hand(model, clip, 0.0)[:25]  # the file start: first chunk's warm-up only
    np.testing.assert_allclose(scores.data, expected[:num_frames], atol=1e-5)


def test_chunk_model_rows_equal_cropped_chunks(clip):
    model = debug_model(resolution=Resolution.CHUNK, problem=Problem.MONO_LABEL_CLASSIFICATION)
    scores = Inference(model, step=0.7)(clip)
    starts = 0.7 * np.arange(6)  # the last one, 3.5 s, ends at 5.5 s >= 5.3 s
    assert scores.data.shape == (6, 2)
    for row, start in zip(scores.data, starts):
        np.testing.assert_allclose(row, chunk_scores_by_hand(model, clip, start), atol=1e-5)
    np.testing.assert_allclose(scores.data.sum(axis=1), 1.0, atol=1e-6)  # softmax
    window = scores.sliding_window
    assert (window.start, window.duration, window.step) == (0.0, 2.0, pytest.approx(0.7))
    assert window[5].start == pytest.approx(3.5)


# ---- edge cases and inputs -----------------------------------------------------------------
def test_file_shorter_than_a_chunk(clip, tmp_path):
    model = debug_model()
    short = tmp_path / "short.wav"
    soundfile.write(short, soundfile.read(clip, dtype="float32")[0][: int(0.7 * SAMPLE_RATE)], SAMPLE_RATE, subtype="FLOAT")
    scores = Inference(model)(short)
    assert scores.data.shape == (35, 2)
    np.testing.assert_allclose(scores.data, chunk_scores_by_hand(model, short, 0.0)[:35], atol=1e-5)
    # shorter than one frame: still one frame
    tiny = Inference(model)({"waveform": torch.zeros(1, 100), "sample_rate": SAMPLE_RATE})
    assert tiny.data.shape == (1, 2)


def test_in_memory_waveform_at_another_sample_rate():
    model = debug_model()
    waveform = torch.from_numpy(make_clip([(0.5, 1.5, "Dog")], duration=3.0, sample_rate=8000, seed=2))[None]
    scores = Inference(model)({"waveform": waveform, "sample_rate": 8000})
    assert scores.data.shape == (3 * SAMPLE_RATE // HOP, 2)  # 150 frames of 20 ms
    # same as the waveform resampled by the reader and given directly
    resampled, _ = model.audio({"waveform": waveform, "sample_rate": 8000})
    np.testing.assert_allclose(Inference(model).slide(resampled).data, scores.data)


def test_labels_and_frame_timing(clip, tmp_path):
    model = debug_model()
    model.save_pretrained(tmp_path / "model")
    scores = Inference(tmp_path / "model")({"audio": str(clip), "uri": "clip"})
    assert scores.labels == CLASSES
    window = scores.sliding_window
    assert window[0].middle == pytest.approx(0.01)
    assert window[100].middle == pytest.approx(100 * 0.02 + 0.01)
    assert window.duration == pytest.approx(0.02)
    # the reloaded model gives the same scores as the original
    np.testing.assert_allclose(scores.data, Inference(model)(clip).data, atol=1e-6)


def test_batch_size_does_not_change_scores(clip):
    model = debug_model()
    one = Inference(model, batch_size=1)(clip).data
    many = Inference(model, batch_size=64)(clip).data
    np.testing.assert_allclose(one, many, atol=1e-5)


# ---- shared encoder: each file encoded once, windows of encoded frames decoded ------------
def small_crnn(resolution=Resolution.FRAME, seed=0):
    from audiotask.models import CRNN

    torch.manual_seed(seed)
    model = CRNN(n_fft=512, hop_length=160, n_mels=32, channels=(8, 16), time_pooling=(2, 2), hidden_size=8)
    model.attach_specifications(
        Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION, resolution=resolution, duration=2.0, classes=CLASSES)
    )
    return model.eval()


@pytest.mark.parametrize("resolution", [Resolution.FRAME, Resolution.CHUNK])
def test_shared_encoder_equals_chunk_by_chunk_when_the_encoder_reads_its_own_frames(clip, resolution):
    model = debug_model(resolution)  # encoder_context 0: an encoded window is the chunk's, exactly
    shared = Inference(model, step=0.3, batch_size=3)
    assert shared.shared_encoder
    expected = Inference(model, step=0.3, batch_size=3, shared_encoder=False)(str(clip))
    np.testing.assert_allclose(shared(str(clip)).data, expected.data, atol=1e-5)


def test_encoding_in_blocks_equals_encoding_the_whole_waveform(monkeypatch):
    import audiotask.inference.inference as inference_module

    model = small_crnn()
    waveform = torch.randn(1, int(5.3 * SAMPLE_RATE), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        whole = model.encode(waveform[None])[0]
    monkeypatch.setattr(inference_module, "ENCODER_BLOCK_SECONDS", 0.7)  # 8 blocks, the last one partial
    blocks = Inference(model).encode(waveform)
    assert blocks.shape == whole.shape == (model.num_frames(waveform.shape[-1]), whole.shape[-1])
    torch.testing.assert_close(blocks, whole, atol=1e-5, rtol=0)


def test_encoded_windows_equal_encoded_chunks_but_at_their_edges(clip):
    model = small_crnn()
    inference = Inference(model, step=0.48)
    waveform, _ = model.audio(str(clip))
    starts = inference.chunk_starts(waveform)
    padded = inference.pad(waveform, len(starts))
    encoded = inference.encode(waveform, padded.shape[-1])
    torch.testing.assert_close(encoded, inference.encode(padded), atol=1e-5, rtol=0)
    chunks, _ = inference.chunks(waveform)
    window_frames, context = model.num_frames(inference.chunk_samples), model.encoder_context
    assert context == 2  # STFT 256 samples (2 frames of 160) + convolutions 1 + 2: 5 frames, pooled by 4
    with torch.inference_mode():
        for index, chunk in enumerate(chunks):
            first = round(starts[index] / model.frames.step)
            alone, shared = model.encode(chunk[None])[0], encoded[first : first + window_frames]
            torch.testing.assert_close(shared[context:-context], alone[context:-context], atol=1e-5, rtol=0)
            if 0 < index < len(chunks) - 1:  # inner chunk edges: real neighbours instead of padding
                assert not torch.allclose(shared[:1], alone[:1], atol=1e-5)
    # and the scores stay close to chunk-by-chunk ones: only the chunks' edge frames differ
    expected = Inference(model, step=0.48, shared_encoder=False)(str(clip)).data
    assert np.abs(inference(str(clip)).data - expected).max() < 0.05


def test_shared_encoder_needs_a_model_that_splits():
    model = debug_model()
    model.encoder_context = None
    with pytest.raises(ValueError, match="does not split"):
        Inference(model, shared_encoder=True)
    assert not Inference(model).shared_encoder
