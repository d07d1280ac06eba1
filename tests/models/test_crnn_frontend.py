"""The CRNN's front end: log-mel normalisation per batch or per example ("instance"), and
frequency-dynamic convolutions."""

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


def test_a_frequency_dynamic_convolution_mixes_its_kernels_per_frequency_bin():
    from audiotask.models.crnn import FrequencyDynamicConv2d

    torch.manual_seed(0)
    layer = FrequencyDynamicConv2d(4, 6, num_bases=3, temperature=1.0).eval()
    inputs = torch.randn(2, 4, 10, 8)
    weights = layer.mixture(inputs)
    assert weights.shape == (2, 3, 8) and torch.allclose(weights.sum(dim=1), torch.ones(2, 8))
    assert not torch.allclose(weights[:, :, :1], weights)  # bins choose differently
    # the output at bin f is the kernels' outputs weighted by bin f's weights
    each = layer.bases(inputs).view(2, 3, 6, 10, 8)
    expected = sum(each[:, k] * weights[:, k, None, None, :] for k in range(3))
    assert torch.allclose(layer(inputs), expected, atol=1e-6)


def test_a_frequency_dynamic_crnn_has_dynamic_blocks_but_the_first_and_scores_windows_whole(tmp_path):
    from audiotask.models.crnn import FrequencyDynamicConv2d

    model = frame_crnn(convolution="frequency_dynamic").eval()
    kinds = [type(block[0]) for block in model.convolutions]
    assert kinds == [torch.nn.Conv2d, FrequencyDynamicConv2d, FrequencyDynamicConv2d]
    assert model.encoder_context is None
    waveforms = torch.randn(2, 1, 32000)
    with torch.no_grad():
        assert model(waveforms).shape == frame_crnn()(waveforms).shape
    model.save_pretrained(tmp_path / "model")
    loaded = CRNN.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        assert torch.equal(model(waveforms), loaded(waveforms))
    with pytest.raises(ValueError, match="'deformable'"):
        CRNN(convolution="deformable")


def test_the_command_line_sed_crnn_is_instance_normalised_unless_told_otherwise():
    import argparse

    from audiotask.cli.common import model_options

    def options(*given):
        return model_options(argparse.Namespace(model="CRNN", task="sed", model_option=list(given)))

    assert options()["normalization"] == "instance"
    assert options("normalization=batch")["normalization"] == "batch"
    assert CRNN(**options()).normalization == "instance"
    vad = model_options(argparse.Namespace(model="CRNN", task="vad", model_option=[]))
    assert "normalization" not in vad  # measured for SED only: other tasks keep the class's batch norm
