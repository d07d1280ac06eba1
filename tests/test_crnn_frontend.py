"""The CRNN's log-mel normalisation: per batch, or per example ("instance")."""

import pytest
import torch

from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.models import CRNN

SMALL = dict(channels=[4, 8, 8], hidden_size=8, n_mels=32)


def frame_crnn(**options) -> CRNN:
    torch.manual_seed(0)
    model = CRNN(**SMALL, **options)
    model.attach_specifications(Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME, duration=2.0,
                                               classes=["a", "b"]))
    return model


def test_instance_normalisation_is_per_example_and_per_band():
    model = frame_crnn(normalization="instance").train()
    features = torch.randn(3, 32, 50) + torch.arange(32.0)[None, :, None] + torch.tensor([0.0, 5.0, -7.0])[:, None, None]
    normalised = model.normalize.batch.eval()(features - features.mean(dim=2, keepdim=True))
    assert torch.allclose(model.normalize.eval()(features), normalised)
    # each example's bands are centred on their own means, whatever the example's offset
    centred = model.normalize(features) - model.normalize.batch.bias[None, :, None]
    assert centred.mean(dim=2).abs().max() < 1e-4


def test_an_instance_normalised_crnn_ignores_the_recording_level_the_batch_one_does_not():
    waveforms = 0.3 * torch.randn(2, 1, 32000)
    instance, batch = frame_crnn(normalization="instance").eval(), frame_crnn().eval()
    with torch.no_grad():
        assert torch.allclose(instance(waveforms), instance(0.05 * waveforms), atol=1e-4)  # 26 dB quieter
        assert not torch.allclose(batch(waveforms), batch(0.05 * waveforms), atol=1e-2)


def test_an_instance_normalised_crnn_does_not_split_into_encode_and_decode():
    """A per-example mean reads every frame of the window: inference scores windows whole."""
    assert frame_crnn().encoder_context is not None
    assert frame_crnn(normalization="instance").encoder_context is None


def test_an_instance_normalised_crnn_saves_and_loads(tmp_path):
    model = frame_crnn(normalization="instance").eval()
    model.save_pretrained(tmp_path / "model")
    loaded = CRNN.from_pretrained(tmp_path / "model").eval()
    waveforms = torch.randn(1, 1, 32000)
    with torch.no_grad():
        assert torch.equal(model(waveforms), loaded(waveforms))


def test_an_unknown_normalisation_is_refused_by_name():
    with pytest.raises(ValueError, match="'layer'"):
        CRNN(normalization="layer")


def test_inference_and_streaming_score_an_instance_normalised_crnn_window_by_window(tmp_path):
    import numpy as np
    import soundfile

    from audiotask import Inference

    model = frame_crnn(normalization="instance").eval()
    path = tmp_path / "clip.wav"
    soundfile.write(path, (0.1 * np.random.default_rng(0).standard_normal(16000 * 5)).astype(np.float32), 16000)
    scores = Inference(model)(path)
    assert scores.data.shape[1] == 2 and np.isfinite(scores.data).all()
    stream = Inference(model).stream(16000)
    samples = soundfile.read(path, dtype="float32")[0]
    pieces = [stream.push(samples[k: k + 7000]) for k in range(0, len(samples), 7000)] + [stream.close()]
    streamed = np.concatenate([piece.data for piece in pieces if piece is not None and len(piece.data)])
    assert np.allclose(streamed, scores.data, atol=1e-5)
