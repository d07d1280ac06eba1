"""PANNs CNN14 / CNN10 imported as audiotask models: the front end against librosa, the tags and
frame scores against the published forward pass, the checkpoint's layout and the command line."""

import pickle
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.core.specifications import Resolution, Specifications
from audiotask.models.panns import PANNs, mel_filterbank, stft_kernels
from audiotask.pretrained.panns import import_panns, read_labels
from audiotask.testing.panns_layout import PANNS_LAYOUTS, random_panns_checkpoint

librosa = pytest.importorskip("librosa")

SECOND = 32000


# ---- the published forward pass, written again from audioset_tagging_cnn's pytorch/models.py
# (Cnn14, Cnn10, ConvBlock, Cnn14_DecisionLevelMax) and torchlibrosa/stft.py, in eval mode ----
def torchlibrosa_logmel(state, waveforms):
    """Spectrogram(n_fft=1024, hop_length=320, center=True, pad_mode='reflect') then
    LogmelFilterBank(ref=1.0, amin=1e-10, top_db=None): (batch, samples) -> (batch, 1, frames, 64)."""
    x = F.pad(waveforms[:, None, :], pad=(1024 // 2, 1024 // 2), mode="reflect")
    real = F.conv1d(x, state["spectrogram_extractor.stft.conv_real.weight"], stride=320)
    imag = F.conv1d(x, state["spectrogram_extractor.stft.conv_imag.weight"], stride=320)
    real, imag = real[:, None, :, :].transpose(2, 3), imag[:, None, :, :].transpose(2, 3)
    spectrogram = real ** 2 + imag ** 2
    mel_spectrogram = torch.matmul(spectrogram, state["logmel_extractor.melW"])
    log_spec = 10.0 * torch.log10(torch.clamp(mel_spectrogram, min=1e-10, max=np.inf))
    log_spec -= 10.0 * torch.log10(torch.max(torch.tensor(1e-10), torch.tensor(1.0)))
    return log_spec


def batch_norm(x, state, name):
    return F.batch_norm(x, state[f"{name}.running_mean"], state[f"{name}.running_var"], state[f"{name}.weight"],
                        state[f"{name}.bias"], training=False, eps=1e-5)


def conv_block(x, state, name, pool_size):
    x = F.relu_(batch_norm(F.conv2d(x, state[f"{name}.conv1.weight"], stride=1, padding=1), state, f"{name}.bn1"))
    x = F.relu_(batch_norm(F.conv2d(x, state[f"{name}.conv2.weight"], stride=1, padding=1), state, f"{name}.bn2"))
    return F.avg_pool2d(x, kernel_size=pool_size)  # pool_type='avg'


def published_features(state, waveforms):
    """Cnn14.forward / Cnn10.forward up to ``x = torch.mean(x, dim=3)``: (batch, channels, frames)."""
    x = torchlibrosa_logmel(state, waveforms)
    x = x.transpose(1, 3)
    x = batch_norm(x, state, "bn0")
    x = x.transpose(1, 3)
    blocks = 6 if "conv_block6.conv1.weight" in state else 4
    for index in range(1, blocks + 1):
        x = conv_block(x, state, f"conv_block{index}", (1, 1) if index == 6 else (2, 2))
    return torch.mean(x, dim=3)


def published_clipwise_output(state, waveforms):
    x = published_features(state, waveforms)
    (x1, _) = torch.max(x, dim=2)
    x2 = torch.mean(x, dim=2)
    x = x1 + x2
    x = F.relu_(F.linear(x, state["fc1.weight"], state["fc1.bias"]))
    return torch.sigmoid(F.linear(x, state["fc_audioset.weight"], state["fc_audioset.bias"]))


def published_segmentwise_output(state, waveforms):
    """Cnn14_DecisionLevelMax's segmentwise_output (before its interpolation to 10-ms frames)."""
    x = published_features(state, waveforms)
    x1 = F.max_pool1d(x, kernel_size=3, stride=1, padding=1)
    x2 = F.avg_pool1d(x, kernel_size=3, stride=1, padding=1)
    x = (x1 + x2).transpose(1, 2)
    x = F.relu_(F.linear(x, state["fc1.weight"], state["fc1.bias"]))
    return torch.sigmoid(F.linear(x, state["fc_audioset.weight"], state["fc_audioset.bias"]))


# ---- helpers -----------------------------------------------------------------------------------
def sounds(seconds, batch=2, seed=0):
    """(batch, 1, samples): noise bursts and tones at 32 kHz."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SECOND)) / SECOND
    rows = [0.3 * np.sin(2 * np.pi * rng.uniform(100, 4000) * t) * (t % 0.25 < 0.1) + 0.05 * rng.standard_normal(t.size)
            for _ in range(batch)]
    return torch.from_numpy(np.stack(rows).astype(np.float32))[:, None, :]


def saved_checkpoint(tmp_path, variant="cnn10", seed=0, name="Cnn10_mAP=0.380.pth"):
    checkpoint = random_panns_checkpoint(variant, seed)
    torch.save(checkpoint, tmp_path / name)
    return checkpoint, tmp_path / name


def scores(model, waveforms):
    with torch.no_grad():
        return model.default_activation(model(waveforms))


def assert_tags_as_published(model, state, waveforms):
    ours = scores(model, waveforms)
    with torch.no_grad():
        theirs = published_clipwise_output(state, waveforms[:, 0])
    assert ours.shape == theirs.shape == (len(waveforms), 527)
    assert theirs.std() > 0.01  # the random network's scores are not all 0 or 1
    assert (ours - theirs).abs().max() < 1e-4


# ---- the front end -------------------------------------------------------------------------------
def test_the_front_end_is_torchlibrosas_and_librosas():
    melW = librosa.filters.mel(sr=32000, n_fft=1024, n_mels=64, fmin=50, fmax=14000).T
    assert np.abs(mel_filterbank() - melW).max() < 1e-7
    # torchlibrosa's STFT kernels: the DFT matrix np.power(omega, x * y) times the periodic Hann window
    x, y = np.meshgrid(np.arange(1024), np.arange(1024))
    window = librosa.filters.get_window("hann", 1024, fftbins=True)
    W = np.power(np.exp(-2 * np.pi * 1j / 1024), x * y)[:, :513] * window[:, None]
    real, imag = stft_kernels()
    assert real.shape == imag.shape == (513, 1, 1024)
    assert np.abs(real[:, 0] - np.real(W).T).max() < 1e-6 and np.abs(imag[:, 0] - np.imag(W).T).max() < 1e-6

    model = PANNs(variant="cnn10")
    wav = sounds(1.0, batch=1)[0, 0].numpy()
    with torch.no_grad():
        power = model.spectrogram_extractor(torch.from_numpy(wav)[None])[0].numpy()
        log_mel = model.log_mel(torch.from_numpy(wav).view(1, 1, -1))[0].numpy()
    stft = librosa.stft(wav.astype(np.float64), n_fft=1024, hop_length=320, window="hann", center=True,
                        pad_mode="reflect")
    assert power.shape == (101, 513)  # 1 + samples // 320 frames
    assert np.abs(power - np.abs(stft.T) ** 2).max() < 1e-4 * np.abs(stft).max() ** 2
    expected = librosa.power_to_db(np.abs(stft.T) ** 2 @ melW, ref=1.0, amin=1e-10, top_db=None)
    assert np.abs(log_mel - expected).max() < 1e-3


# ---- the published tags and frame scores -------------------------------------------------------------
def test_a_cnn10_checkpoint_tags_as_published(tmp_path):
    checkpoint, path = saved_checkpoint(tmp_path, "cnn10")
    model = Model.from_pretrained(import_panns(tmp_path / "model", weights=path))
    assert isinstance(model, PANNs) and model.variant == "cnn10"
    specifications = model.specifications
    assert specifications.task_name == "audio-tagging" and specifications.resolution is Resolution.CHUNK
    assert specifications.classes[:2] == ["audioset_000", "audioset_001"] and len(specifications.classes) == 527
    for seconds in (1.0, 0.7):
        assert_tags_as_published(model, checkpoint["model"], sounds(seconds))


def test_the_front_end_is_the_checkpoints_own(tmp_path):
    """The STFT kernels and mel filters are the checkpoint's tensors, not values made again."""
    checkpoint = random_panns_checkpoint("cnn10", seed=3)
    generator = torch.Generator().manual_seed(0)
    state = checkpoint["model"]
    state["logmel_extractor.melW"] = state["logmel_extractor.melW"] * (0.5 + torch.rand(513, 64, generator=generator))
    state["spectrogram_extractor.stft.conv_imag.weight"] = 0.8 * state["spectrogram_extractor.stft.conv_imag.weight"]
    torch.save(checkpoint, tmp_path / "changed.pth")
    model = Model.from_pretrained(import_panns(tmp_path / "model", weights=tmp_path / "changed.pth"))
    assert_tags_as_published(model, state, sounds(1.0))


def test_a_cnn14_checkpoint_tags_as_published(tmp_path):
    checkpoint, path = saved_checkpoint(tmp_path, "cnn14", name="Cnn14_mAP=0.431.pth")
    model = Model.from_pretrained(import_panns(tmp_path / "model", weights=path))
    assert model.variant == "cnn14"
    assert (model.embedding_dimension, model.embedding_hop, model.frame_hop) == (2048, 10240, 10240)
    waveforms = sounds(1.0, batch=1)
    assert_tags_as_published(model, checkpoint["model"], waveforms)
    with torch.no_grad():
        embeddings = model.frame_embeddings(waveforms)
        expected = published_features(checkpoint["model"], waveforms[:, 0]).transpose(1, 2)
    assert embeddings.shape == (1, 3, 2048)  # 1 + 32000 // 320 = 101 STFT frames, pooled by 32
    assert (embeddings - expected).abs().max() < 1e-4 * expected.abs().max()


def test_a_frame_model_scores_frames_as_the_decision_level_network():
    """At FRAME resolution, fc_audioset scores each frame, as Cnn14_DecisionLevelMax does
    (whose checkpoint has the same keys)."""
    state = random_panns_checkpoint("cnn10", seed=1)["model"]
    model = PANNs(variant="cnn10")
    model.attach_specifications(Specifications(problem="multi_label_classification", resolution="frame",
                                               duration=10.0, classes=[f"c{i}" for i in range(527)]))
    model.load_state_dict(state)
    model.eval()
    waveforms = sounds(1.0)
    ours = scores(model, waveforms)
    with torch.no_grad():
        theirs = published_segmentwise_output(state, waveforms[:, 0])
    assert ours.shape == (2, 32000 // 5120, 527) == (2, 6, 527) and theirs.shape == (2, 6, 527)
    assert (ours - theirs).abs().max() < 1e-4


def test_frame_embeddings_have_one_frame_per_hop():
    model = PANNs(variant="cnn10").eval()
    assert (model.embedding_dimension, model.embedding_hop) == (512, 5120)
    # the centred STFT makes one more network frame when a chunk ends within 320 samples of a whole frame
    for samples, frames in ((5120, 1), (3 * 5120 - 320, 2), (3 * 5120 - 1, 2), (3 * 5120, 3), (32000, 6)):
        with torch.no_grad():
            embeddings = model.frame_embeddings(torch.zeros(1, 1, samples))
        assert embeddings.shape == (1, frames, 512) and frames == model.num_frames(samples)
    with pytest.raises(ValueError, match="at least 4800 samples"):
        model.frame_embeddings(torch.zeros(1, 1, 4000))


# ---- the checkpoint's layout -------------------------------------------------------------------------
def test_the_layout_is_the_models_state():
    for variant, layout in PANNS_LAYOUTS.items():
        model = PANNs(variant=variant)
        model.attach_specifications(Specifications(problem="multi_label_classification", resolution="chunk",
                                                   duration=10.0, classes=[f"c{i}" for i in range(527)]))
        assert {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()} == layout
    assert len(PANNS_LAYOUTS["cnn14"]) - len(PANNS_LAYOUTS["cnn10"]) == 2 * 12


def test_a_checkpoint_that_does_not_fit_is_refused_naming_its_key(tmp_path, capsys):
    checkpoint = random_panns_checkpoint("cnn10")
    checkpoint["model"]["conv_block3.conv2.weight"] = torch.zeros(256, 256, 5, 5)
    torch.save(checkpoint, tmp_path / "wrong.pth")
    with pytest.raises(ValueError) as error:
        import_panns(tmp_path / "model", weights=tmp_path / "wrong.pth")
    message = str(error.value)
    assert "\n" not in message and "wrong.pth" in message and "conv_block3.conv2.weight" in message
    del checkpoint["model"]["fc1.bias"]
    checkpoint["model"]["conv_block3.conv2.weight"] = torch.zeros(256, 256, 3, 3)
    torch.save(checkpoint, tmp_path / "missing.pth")
    assert main(["import", "panns", "--output", str(tmp_path / "m"), "--weights", str(tmp_path / "missing.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.pth" in err and "fc1.bias" in err
    torch.save({"model": {"conv1.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=r"other.pth: not a PANNs CNN14 or CNN10 checkpoint \(no conv_block4"):
        import_panns(tmp_path / "model", weights=tmp_path / "other.pth")
    assert not (tmp_path / "model").exists()


class Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, capsys):
    with open(tmp_path / "evil.pth", "wb") as handle:
        pickle.dump({"model": Payload()}, handle)
    with pytest.raises(ValueError, match="evil.pth: not a checkpoint of tensors"):
        import_panns(tmp_path / "model", weights=tmp_path / "evil.pth")
    assert "unpickled code ran" not in capsys.readouterr().out


def test_a_training_checkpoint_with_the_samplers_numpy_state_loads(tmp_path):
    """pytorch/main.py saves {"iteration", "model", "sampler"}, the sampler's state of numpy
    arrays; files of 2020 name numpy 1's module (numpy.core.multiarray)."""
    checkpoint = random_panns_checkpoint("cnn10", seed=2)
    checkpoint["sampler"] = {"indexes_per_class": [np.arange(5), np.arange(3)], "queue": [np.int64(4)],
                             "pointers_of_classes": [0, 1]}
    torch.save(checkpoint, tmp_path / "new.pth")
    with zipfile.ZipFile(tmp_path / "new.pth") as new, zipfile.ZipFile(tmp_path / "old.pth", "w") as old:
        for entry in new.infolist():
            data = new.read(entry.filename)
            old.writestr(entry, data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
                         if entry.filename.endswith("data.pkl") else data)
    for name in ("new.pth", "old.pth"):
        model = Model.from_pretrained(import_panns(tmp_path / name.replace(".", "_"), weights=tmp_path / name))
        assert_tags_as_published(model, checkpoint["model"], sounds(0.5, batch=1))


# ---- the command line and the model folder -----------------------------------------------------------
def test_the_command_line_imports_a_checkpoint_and_the_folder_round_trips(tmp_path, capsys):
    checkpoint, path = saved_checkpoint(tmp_path, "cnn10")
    torch.save(checkpoint["model"], tmp_path / "bare.pth")  # a bare state dict imports too
    assert main(["import", "panns", "--weights", str(tmp_path / "bare.pth"), "--output", str(tmp_path / "model")]) == 0
    assert "model:" in capsys.readouterr().out
    model = Model.from_pretrained(tmp_path / "model")
    waveforms = sounds(1.0)
    assert_tags_as_published(model, checkpoint["model"], waveforms)
    again = Model.from_pretrained(model.save_pretrained(tmp_path / "again"))
    assert again.manifest()["arguments"]["variant"] == "cnn10"
    assert torch.equal(scores(again, waveforms), scores(model, waveforms))
    assert all(torch.equal(again.state_dict()[name], tensor) for name, tensor in model.state_dict().items())


def test_without_weights_the_source_says_what_to_give(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"panns: give --weights FILE \(the published checkpoint, e.g. Cnn14"):
        import_panns(tmp_path / "model")
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        import_panns(tmp_path / "model", weights=tmp_path / "absent.pth")


# ---- AudioSet's class names ------------------------------------------------------------------------
def write_labels(path, names):
    with open(path, "w", newline="") as handle:
        handle.write("index,mid,display_name\n")
        for index, name in enumerate(names):
            handle.write(f'{index},/m/{index:05d},"{name}"\n')
    return path


def test_the_class_names_are_read_from_audiosets_csv(tmp_path):
    names = ["Speech", "Chirp, tweet", *[f"Sound {index}" for index in range(2, 527)]]
    names[300] = "Speech"  # a shared name is told apart by its mid
    labels = write_labels(tmp_path / "class_labels_indices.csv", names)
    assert read_labels(labels)[:3] == ["Speech (/m/00000)", "Chirp, tweet", "Sound 2"]
    assert read_labels(labels)[300] == "Speech (/m/00300)"
    _, path = saved_checkpoint(tmp_path, "cnn10")
    model = Model.from_pretrained(import_panns(tmp_path / "model", weights=path, labels=labels))
    assert model.specifications.classes[1] == "Chirp, tweet" and len(model.specifications.classes) == 527
    with pytest.raises(ValueError, match="short.csv: 3 classes, the checkpoint has 527"):
        read_labels(write_labels(tmp_path / "short.csv", ["a", "b", "c"]))
    (tmp_path / "other.csv").write_text("name\nSpeech\n")
    with pytest.raises(ValueError, match="other.csv: not AudioSet's class_labels_indices.csv"):
        read_labels(tmp_path / "other.csv")
