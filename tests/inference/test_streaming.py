"""Streaming inference: blocks pushed one by one give offline inference's scores, with the documented latency."""

import numpy as np
import pytest
import torch

from audiotask.core.audio import AudioError
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.inference.inference import Inference
from audiotask.inference.streaming import concatenate
from audiotask.models import CRNN
from audiotask.models.debug import Debug

SAMPLE_RATE = 16000
CLASSES = ["a", "b"]


def attach(model, resolution, warm_up=0.0):
    model.attach_specifications(Specifications(problem=Problem.MULTI_LABEL_CLASSIFICATION, resolution=resolution,
                                               duration=2.0, warm_up=warm_up, classes=CLASSES))
    return model.eval()


def debug_model(resolution=Resolution.FRAME, warm_up=0.0):
    torch.manual_seed(0)
    return attach(Debug(sample_rate=SAMPLE_RATE, frame_hop=320), resolution, warm_up)


def small_crnn(resolution=Resolution.FRAME):
    torch.manual_seed(0)
    model = CRNN(n_fft=512, hop_length=160, n_mels=32, channels=(8, 16), time_pooling=(2, 2), hidden_size=8)
    return attach(model, resolution)


def waveform(seconds, seed=0):
    return 0.1 * torch.randn(1, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(seed))


def streamed(inference, samples, block_sizes, sample_rate=None):
    """The stream's pieces of ``samples`` pushed in blocks of the given sizes (cycled), concatenated."""
    stream = inference.stream(sample_rate)
    pieces, position, index = [], 0, 0
    while position < samples.shape[-1]:
        size = block_sizes[index % len(block_sizes)]
        pieces.append(stream.push(samples[:, position : position + size]))
        position, index = position + size, index + 1
    pieces.append(stream.close())
    return concatenate(pieces), pieces


@pytest.mark.parametrize("make_model", [debug_model, small_crnn], ids=["debug", "crnn"])
@pytest.mark.parametrize("shared_encoder", [True, False], ids=["shared-encoder", "chunk-by-chunk"])
@pytest.mark.parametrize("seconds", [7.37, 1.3])  # several windows, and a stream shorter than one window
def test_stream_equals_offline_inference_whatever_the_blocks(make_model, shared_encoder, seconds):
    inference = Inference(make_model(), step=0.4, batch_size=4, shared_encoder=shared_encoder)
    samples = waveform(seconds)
    expected = inference.slide(samples)
    for block_sizes in ([1600], [17, 4000, 333, 12000], [10 * SAMPLE_RATE]):
        scores, _ = streamed(inference, samples, block_sizes)
        assert scores.data.shape == expected.data.shape
        assert scores.sliding_window.start == expected.sliding_window.start
        assert scores.sliding_window.step == expected.sliding_window.step
        np.testing.assert_allclose(scores.data, expected.data, atol=1e-5)


def test_stream_of_a_model_with_warm_up_equals_offline():
    inference = Inference(debug_model(warm_up=0.2), step=0.2)
    samples = waveform(4.1)
    scores, _ = streamed(inference, samples, [2500])
    np.testing.assert_allclose(scores.data, inference.slide(samples).data, atol=1e-5)


def test_chunk_model_streams_its_windows_rows():
    inference = Inference(small_crnn(Resolution.CHUNK), step=0.48)
    samples = waveform(5.2)
    expected = inference.slide(samples)
    scores, pieces = streamed(inference, samples, [3000])
    np.testing.assert_allclose(scores.data, expected.data, atol=1e-5)
    starts = [piece.sliding_window.start for piece in pieces if len(piece.data)]
    assert starts == sorted(starts) and starts[0] == 0.0


def test_frames_come_out_within_the_latency_and_no_sooner_than_their_last_window():
    inference = Inference(small_crnn(), step=0.48)
    stream = inference.stream()
    samples, hop = waveform(6.0), inference.model.frame_hop
    emitted_at = []  # samples received when each frame came out
    for position in range(0, samples.shape[-1], hop):  # one frame of audio per block
        piece = stream.push(samples[:, position : position + hop])
        emitted_at += [position + hop] * len(piece.data)
    delays = [(received - (frame + 1) * hop) / SAMPLE_RATE for frame, received in enumerate(emitted_at)]
    assert len(delays) > 50
    assert max(delays) == pytest.approx(stream.latency)
    # the latency is about the window: every score waits for the last window that covers its frame
    assert stream.latency == pytest.approx(2.0 - 0.04 + 2 * 0.04)
    assert min(delays) >= stream.latency - inference.step - 1e-9


def test_stream_at_another_sample_rate_is_resampled_as_files_are():
    inference = Inference(debug_model(), step=0.4)
    rate = 22050
    samples = 0.1 * torch.randn(1, int(4.5 * rate), generator=torch.Generator().manual_seed(1))
    expected = inference({"waveform": samples, "sample_rate": rate})
    scores, _ = streamed(inference, samples, [2205], sample_rate=rate)
    assert scores.data.shape == expected.data.shape
    np.testing.assert_allclose(scores.data, expected.data, atol=1e-3)


def test_stereo_blocks_are_averaged_like_files():
    inference = Inference(debug_model(), step=0.4)
    stereo = torch.cat([waveform(3.0, seed=1), waveform(3.0, seed=2)])
    scores, _ = streamed(inference, stereo, [4000])
    np.testing.assert_allclose(scores.data, inference.slide(stereo.mean(dim=0, keepdim=True)).data, atol=1e-5)


def test_stream_refuses_bad_use():
    inference = Inference(debug_model())
    stream = inference.stream()
    with pytest.raises(AudioError, match="empty stream"):
        stream.close()
    stream = inference.stream()
    with pytest.raises(AudioError, match="samples 0-2 of the stream: 1 of 2 samples are NaN or infinite"):
        stream.push(np.array([0.0, np.nan], dtype=np.float32))
    stream.push(np.zeros(100, dtype=np.float32))
    stream.close()
    with pytest.raises(RuntimeError, match="after close"):
        stream.push(np.zeros(100, dtype=np.float32))
    with pytest.raises(ValueError, match="block must be"):
        inference.stream().push(np.zeros((1, 2, 3)))
