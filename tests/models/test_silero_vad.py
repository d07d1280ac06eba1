"""Silero VAD imported as an audiotask model: its layouts converted, its network reproduced."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.models.silero_vad import SileroVAD
from audiotask.pretrained.silero_vad import ONNX_KEYS, import_silero_vad
from audiotask.testing.pretrained_layouts import random_silero_vad_state as random_layout

def tinygrad_reference(state, waveform):
    """tinygrad_model.py's __call__ and its documented loop, chunk by chunk, written again
    with torch's functions: the network the imported model must reproduce."""
    samples = F.pad(waveform, (64, 0))
    cell = torch.nn.LSTMCell(128, 128)
    cell.load_state_dict({name.removeprefix("lstm_cell."): value for name, value in state.items()
                          if name.startswith("lstm_cell.")})
    hidden, probabilities = None, []
    for start in range(64, samples.shape[-1] - 512 + 1, 512):
        x = F.pad(samples[None, start - 64:start + 512], (0, 64), mode="reflect").unsqueeze(1)
        x = F.conv1d(x, state["stft_conv.weight"], stride=128)
        x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
        for name, stride in (("conv1", 1), ("conv2", 2), ("conv3", 2), ("conv4", 1)):
            x = torch.relu(F.conv1d(x, state[f"{name}.weight"], state[f"{name}.bias"], stride=stride, padding=1))
        hidden = cell(x.squeeze(-1), hidden)
        x = F.conv1d(torch.relu(hidden[0]).unsqueeze(-1), state["final_conv.weight"], state["final_conv.bias"])
        probabilities.append(torch.sigmoid(x).squeeze())
    return torch.stack(probabilities)


def test_a_safetensors_file_of_the_tinygrad_layout_imports_as_that_network(tmp_path):
    from safetensors.torch import save_file

    state = random_layout()
    save_file(state, tmp_path / "weights.safetensors")
    model = Model.from_pretrained(import_silero_vad(tmp_path / "model", weights=tmp_path / "weights.safetensors"))
    assert isinstance(model, SileroVAD) and model.specifications.classes == ["speech"]
    assert model.specifications.task_name == "voice-activity-detection"
    waveform = 0.3 * torch.randn(16000 + 300, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = torch.sigmoid(model(waveform.view(1, 1, -1)))[0, :, 0]
        expected = tinygrad_reference(state, waveform)
    assert ours.shape == (31,) == expected.shape  # 32-ms frames; the last partial chunk left out
    assert torch.allclose(ours, expected, atol=1e-5)
    # encoded once, decoded per window: the frames of a window but its first equal the file's
    features = model.encode(waveform.view(1, 1, -1))
    window = model.encode(waveform[512 * 10:512 * 20].view(1, 1, -1))
    assert torch.allclose(window[0, 1:], features[0, 11:20], atol=1e-5)


def test_the_onnx_export_layout_maps_onto_the_same_names(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    state = random_layout(2)
    by_tinygrad_name = {**{value: key for key, value in ONNX_KEYS.items()},
                        **{f"lstm.{kind}_l0": f"model.decoder.rnn.{kind}" for kind in
                           ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}}
    renamed = {name.replace("lstm_cell.", "lstm.") + ("_l0" if name.startswith("lstm_cell.") else ""): value
               for name, value in state.items()}
    initializers = [numpy_helper.from_array(value.numpy(), by_tinygrad_name[name]) for name, value in renamed.items()]
    graph = helper.make_graph([], "silero", [], [], initializer=initializers)
    onnx.save(helper.make_model(graph), tmp_path / "silero.onnx")
    model = Model.from_pretrained(import_silero_vad(tmp_path / "model", weights=tmp_path / "silero.onnx"))
    assert all(torch.equal(model.state_dict()[name], value) for name, value in renamed.items())


def test_weights_of_another_layout_are_refused_naming_file_and_keys(tmp_path):
    from safetensors.torch import save_file

    state = random_layout()
    del state["conv4.bias"]
    state["conv1.weight"] = torch.zeros(3, 3)
    save_file(state, tmp_path / "other.safetensors")
    with pytest.raises(ValueError) as refusal:
        import_silero_vad(tmp_path / "model", weights=tmp_path / "other.safetensors")
    message = str(refusal.value)
    # one line: the file, the first mismatching key, the counts
    assert "\n" not in message and message.startswith(f"{tmp_path / 'other.safetensors'}: not Silero VAD's 16 kHz network: ")
    assert "'conv1.weight' has shape (3, 3), Silero VAD's 16 kHz network has (128, 129, 3)" in message
    assert "(1 missing, 0 unexpected, 1 of another shape)" in message
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(ValueError, match="junk.safetensors: not a safetensors file"):
        import_silero_vad(tmp_path / "model", weights=tmp_path / "junk.safetensors")


def test_the_import_verb_writes_a_model_folder_and_refuses_to_overwrite_one(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file(random_layout(), tmp_path / "weights.safetensors")
    arguments = ["import", "silero-vad", "--output", str(tmp_path / "model"), "--weights", str(tmp_path / "weights.safetensors")]
    assert main(arguments) == 0
    assert (tmp_path / "model" / "audiotask.json").is_file() and (tmp_path / "model" / "model.safetensors").is_file()
    assert main(arguments) == 2
    assert "already holds a model" in capsys.readouterr().err
    assert main(["import", "silero-vad", "--output", str(tmp_path / "m2"), "--weights", str(tmp_path / "none.onnx")]) == 2
    assert "no such weights file" in capsys.readouterr().err


def test_the_imported_package_network_gives_the_package_own_probabilities(tmp_path):
    """silero-vad's load_silero_vad() (its TorchScript network, chunk by chunk, state carried)
    against the model imported from its ONNX export: within 1e-4."""
    pytest.importorskip("onnx")
    silero_vad = pytest.importorskip("silero_vad")
    from audiotask.testing.speakers import make_voices, turn

    reference = silero_vad.load_silero_vad()
    model = Model.from_pretrained(import_silero_vad(tmp_path / "model"))
    rng = np.random.default_rng(0)
    speech = 0.1 * turn(make_voices(1)[0], 3.0, 16000, rng)
    audio = np.concatenate([0.001 * rng.standard_normal(32000), speech, 0.001 * rng.standard_normal(16000)]).astype(np.float32)
    reference.reset_states()
    with torch.no_grad():
        expected = torch.cat([reference(torch.from_numpy(audio[i:i + 512]).unsqueeze(0), 16000)
                              for i in range(0, len(audio) - 511, 512)], dim=1)[0, :]
        ours = torch.sigmoid(model(torch.from_numpy(audio).view(1, 1, -1)))[0, :, 0]
    assert ours.shape == expected.shape
    assert float((ours - expected).abs().max()) < 1e-4
    assert float(expected.max() - expected.min()) > 0.1  # the audio is not all one decision
