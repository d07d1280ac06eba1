"""ONNX export: onnxruntime's scores equal PyTorch's within 1e-4, through Inference and the CLI too."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

pytest.importorskip("onnxruntime")

from audiotask.cli.main import main  # noqa: E402
from audiotask.core.specifications import Problem, Resolution, Specifications  # noqa: E402
from audiotask.inference.inference import Inference  # noqa: E402
from audiotask.inference.onnx import DECODER_GRAPH, ENCODER_GRAPH, GRAPH, OnnxModel  # noqa: E402
from audiotask.inference.onnx_export import dft_basis, dft_log_mel_spectrogram, export_onnx  # noqa: E402
from audiotask.models import CRNN  # noqa: E402
from audiotask.models.features import LogMel  # noqa: E402
from audiotask.testing.dummies import make_clip  # noqa: E402

SAMPLE_RATE = 16000
TOLERANCE = 1e-4
#: the two kinds of model exported: sound event detection (frames) and clip classification
SPECIFICATIONS = {
    "sed": Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME, 2.0, warm_up=0.1,
                          classes=["Dog", "Speech", "Cat"]),
    "classification": Specifications(Problem.MONO_LABEL_CLASSIFICATION, Resolution.CHUNK, 1.5,
                                      classes=["a", "b", "c", "d"], extra={"task": "audio-classification"}),
}


def small_crnn(kind: str, seed: int = 0) -> CRNN:
    """A CRNN of a few thousand parameters, its batch norms given non-trivial statistics."""
    torch.manual_seed(seed)
    model = CRNN(n_fft=512, hop_length=160, n_mels=32, channels=(8, 16), time_pooling=(2, 2), hidden_size=8)
    model.attach_specifications(SPECIFICATIONS[kind])
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module", params=sorted(SPECIFICATIONS))
def exported(request, tmp_path_factory):
    """(PyTorch model, its export folder), exported once per kind."""
    model = small_crnn(request.param)
    folder = tmp_path_factory.mktemp(f"onnx-{request.param}")
    model.save_pretrained(folder / "model")
    export_onnx(model, folder / "export")
    return model, folder / "export"


@pytest.fixture
def recording(tmp_path):
    """A 6.3 s file with two tone events over noise (not a whole number of chunks)."""
    samples = make_clip([(0.5, 1.8, "Dog"), (3.0, 4.6, "Speech")], duration=6.3, sample_rate=SAMPLE_RATE, seed=3)
    path = tmp_path / "recording.wav"
    soundfile.write(path, samples, SAMPLE_RATE, subtype="FLOAT")
    return path


def test_dft_front_end_equals_torch_stft_log_mel():
    log_mel = LogMel(SAMPLE_RATE, n_fft=512, hop_length=160, n_mels=32)
    waveforms = torch.randn(3, 1, 16123, generator=torch.Generator().manual_seed(0))
    expected = log_mel(waveforms)
    computed = dft_log_mel_spectrogram(waveforms.mean(dim=1), dft_basis(log_mel.window), log_mel.filterbank,
                                       hop_length=160)
    assert computed.shape == expected.shape == (3, 16123 // 160, 32)
    torch.testing.assert_close(computed, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("seconds", [1.5, 2.73])
def test_onnxruntime_matches_pytorch_for_any_batch_size_and_length(exported, batch_size, seconds):
    model, folder = exported
    waveforms = torch.randn(batch_size, 1, int(seconds * SAMPLE_RATE), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model.default_activation(model(waveforms)).numpy()
    scores = OnnxModel(folder, num_threads=1)(waveforms).numpy()
    assert scores.shape == expected.shape
    assert np.abs(scores - expected).max() < TOLERANCE


def test_encoder_and_decoder_graphs_match_the_model_halves(exported):
    model, folder = exported
    waveforms = torch.randn(2, 1, int(3.1 * SAMPLE_RATE), generator=torch.Generator().manual_seed(2))
    onnx_model = OnnxModel(folder, num_threads=1)
    assert onnx_model.encoder_context == model.encoder_context
    with torch.inference_mode():
        features = model.encode(waveforms)
        expected = model.default_activation(model.decode(features)).numpy()
    encoded = onnx_model.encode(waveforms)
    assert encoded.shape == features.shape
    torch.testing.assert_close(encoded, features, atol=TOLERANCE, rtol=0)
    assert np.abs(onnx_model.decode(features).numpy() - expected).max() < TOLERANCE


def test_export_writes_the_manifest_with_an_onnx_entry(exported):
    model, folder = exported
    manifest = json.loads((folder / "audiotask.json").read_text())
    assert manifest["onnx"]["opset"] == 17 and manifest["onnx"]["activated"] is True
    assert manifest["onnx"]["frame_hop"] == model.frame_hop == 640
    assert manifest["specifications"] == model.specifications.to_dict()
    loaded = OnnxModel(folder)
    assert loaded.specifications == model.specifications
    assert loaded.frames == model.frames


def test_inference_on_an_export_gives_pytorch_inference_scores(exported, recording, monkeypatch):
    model, folder = exported
    expected = Inference(model, batch_size=4)(str(recording))

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    inference = Inference(folder, batch_size=4)
    assert isinstance(inference.model, OnnxModel)
    scores = inference(str(recording))
    assert scores.data.shape == expected.data.shape
    window, expected_window = scores.sliding_window, expected.sliding_window
    assert (window.start, window.step, window.duration) == (expected_window.start, expected_window.step,
                                                            expected_window.duration)
    assert np.abs(scores.data - expected.data).max() < TOLERANCE


def test_onnx_model_refuses_waveforms_of_the_wrong_rank(exported):
    _, folder = exported
    with pytest.raises(ValueError, match=r"\(batch, 1, samples\)"):
        OnnxModel(folder)(torch.zeros(1, 16000))


def test_export_and_apply_from_the_command_line(tmp_path, recording, capsys):
    model = small_crnn("sed")
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "postprocessing.json").write_text("{}")
    assert main(["export", str(tmp_path / "model"), "--format", "onnx", "--output", str(tmp_path / "export")]) == 0
    assert "opset 17" in capsys.readouterr().out
    assert sorted(path.name for path in (tmp_path / "export").iterdir()) == [
        "audiotask.json", DECODER_GRAPH, ENCODER_GRAPH, GRAPH, "postprocessing.json"]

    for name in ("model", "export"):
        assert main(["apply", str(tmp_path / name), str(recording), "--output", str(tmp_path / f"out-{name}"),
                     "--no-tuned", "--no-progress"]) == 0
    torch_scores = pd.read_csv(tmp_path / "out-model" / "scores" / "recording.tsv", sep="\t")
    onnx_scores = pd.read_csv(tmp_path / "out-export" / "scores" / "recording.tsv", sep="\t")
    assert list(onnx_scores.columns) == list(torch_scores.columns)
    assert np.abs(onnx_scores.to_numpy() - torch_scores.to_numpy()).max() < TOLERANCE


def test_apply_an_exported_classifier(tmp_path, recording):
    model = small_crnn("classification")
    model.save_pretrained(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), "--output", str(tmp_path / "export")]) == 0
    for name in ("model", "export"):
        assert main(["apply", str(tmp_path / name), str(recording), "--output", str(tmp_path / f"out-{name}"),
                     "--no-progress"]) == 0
    expected = pd.read_csv(tmp_path / "out-model" / "predictions.csv")
    predictions = pd.read_csv(tmp_path / "out-export" / "predictions.csv")
    assert list(predictions["label"]) == list(expected["label"])
    columns = ["a", "b", "c", "d"]
    assert np.abs(predictions[columns].to_numpy() - expected[columns].to_numpy()).max() < 1e-5  # 6 decimals


def test_exporting_a_folder_that_is_no_model_fails_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--output", str(tmp_path / "export")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "audiotask export: error:" in error and "audiotask.json is missing" in error
    assert not (tmp_path / "export").exists()


def test_exporting_an_export_fails_in_one_line(exported, tmp_path, capsys):
    _, folder = exported
    assert main(["export", str(folder), "--output", str(tmp_path / "again")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "already an ONNX export" in error


def test_an_unknown_export_format_is_refused_in_one_line(tmp_path, capsys):
    small_crnn("sed").save_pretrained(tmp_path / "model")
    with pytest.raises(SystemExit) as exit_:
        main(["export", str(tmp_path / "model"), "--format", "tflite", "--output", str(tmp_path / "export")])
    assert exit_.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    # argparse quotes the choices or not depending on the Python version
    assert last.startswith("audiotask export: error: argument --format: invalid choice: 'tflite' (choose from")
    assert "onnx" in last
    assert not (tmp_path / "export").exists()


@pytest.mark.slow
def test_inference_on_an_export_imports_neither_the_models_nor_lightning(exported, recording):
    """An export's point is to run without the training stack: seconds of start-up, ~200 MB."""
    import subprocess
    import sys

    _, folder = exported
    code = ("import sys; from audiotask.inference.inference import Inference; "
            f"Inference({str(folder)!r})({str(recording)!r}); "
            "print(sorted(m for m in ('lightning', 'audiotask.core.model', 'audiotask.models') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
