"""resemblyzer's GE2E encoder imported as an audiotask model: its mel front end, its partial
utterances and its checkpoint, against the package's computation."""

import importlib.util
import pickle

import numpy as np
import pytest
import torch

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.models.resemblyzer import Resemblyzer, slaney_filterbank
from audiotask.pretrained.resemblyzer import import_resemblyzer
from audiotask.testing.pretrained_layouts import random_resemblyzer_checkpoint

librosa = pytest.importorskip("librosa")


def embed_utterance(state, wav):
    """resemblyzer's audio.normalize_volume (-30 dBFS, increase only), VoiceEncoder.embed_utterance
    (rate 1.3, coverage 0.75) and audio.wav_to_mel_spectrogram written again with librosa, as the
    package computes them."""
    wav_dbfs = 20 * np.log10(np.sqrt(np.mean((wav * 32767.0) ** 2)) / 32767.0)
    if -30.0 - wav_dbfs > 0:
        wav = wav * 10 ** ((-30.0 - wav_dbfs) / 20)
    lstm, linear = torch.nn.LSTM(40, 256, 3, batch_first=True), torch.nn.Linear(256, 256)
    lstm.load_state_dict({name[5:]: value for name, value in state.items() if name.startswith("lstm.")})
    linear.load_state_dict({name[7:]: value for name, value in state.items() if name.startswith("linear.")})
    n_frames, frame_step = int(np.ceil((len(wav) + 1) / 160)), int(np.round((16000 / 1.3) / 160))
    slices = [(i, i + 160) for i in range(0, max(1, n_frames - 160 + frame_step + 1), frame_step)]
    if (len(wav) - slices[-1][0] * 160) / (160 * 160) < 0.75 and len(slices) > 1:
        slices = slices[:-1]
    if slices[-1][1] * 160 >= len(wav):
        wav = np.pad(wav, (0, slices[-1][1] * 160 - len(wav)))
    mel = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160, n_mels=40).astype(np.float32).T
    with torch.no_grad():
        _, (hidden, _) = lstm(torch.from_numpy(np.array([mel[a:b] for a, b in slices])))
        partials = torch.relu(linear(hidden[-1]))
        partials = partials / partials.norm(dim=1, keepdim=True)
    mean = partials.numpy().mean(axis=0)
    return mean / np.linalg.norm(mean)


def speech_like(seconds, seed=0):
    from audiotask.testing.speakers import make_voices, turn

    rng = np.random.default_rng(seed)
    return (0.1 * turn(make_voices(2, seed=seed)[seed % 2], seconds, 16000, rng)).astype(np.float32)


def test_the_mel_front_end_is_librosas():
    assert np.abs(slaney_filterbank(16000, 400, 40) - librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)).max() < 1e-8
    wav = speech_like(2.0)
    ours = Resemblyzer().mel(torch.from_numpy(wav)[None])[0].numpy()
    theirs = librosa.feature.melspectrogram(y=wav, sr=16000, n_fft=400, hop_length=160, n_mels=40).T
    assert ours.shape == theirs.shape == (201, 40)
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


@pytest.mark.parametrize("seconds, gain", [(0.5, 1.0), (1.0, 1.0), (1.6, 0.01), (3.0, 1.0), (7.3, 0.03)])
def test_a_checkpoint_of_the_package_layout_embeds_as_the_package(tmp_path, seconds, gain):
    """At -20 dBFS and, raised to -30 dBFS first, at -40 and -30.5 dBFS."""
    checkpoint = random_resemblyzer_checkpoint()
    torch.save(checkpoint, tmp_path / "pretrained.pt")
    model = Model.from_pretrained(import_resemblyzer(tmp_path / "model", weights=tmp_path / "pretrained.pt"))
    assert isinstance(model, Resemblyzer) and model.specifications.task_name == "speaker-embedding"
    wav = gain * speech_like(seconds)
    with torch.no_grad():
        ours = model(torch.from_numpy(wav).view(1, 1, -1))[0].numpy()
    assert ours.shape == (256,)
    assert np.abs(ours - embed_utterance(checkpoint["model_state"], wav.copy())).max() < 1e-5


def test_the_package_encoder_gives_the_package_embeddings(tmp_path):
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer is not installed (make install installs it)")
    model = Model.from_pretrained(import_resemblyzer(tmp_path / "model"))
    state = torch.load(importlib.util.find_spec("resemblyzer").submodule_search_locations[0] + "/pretrained.pt",
                       map_location="cpu", weights_only=True)["model_state"]
    for seed, seconds in ((0, 1.0), (1, 4.0)):
        wav = speech_like(seconds, seed)
        with torch.no_grad():
            ours = model(torch.from_numpy(wav).view(1, 1, -1))[0].numpy()
        assert np.abs(ours - embed_utterance(state, wav.copy())).max() < 1e-4
    from audiotask.testing.speakers import make_voices, turn

    voices, rng = make_voices(2, seed=0), np.random.default_rng(5)
    utterances = [0.1 * turn(voices[k], 2.0, 16000, rng).astype(np.float32) for k in (0, 0, 1)]
    with torch.no_grad():  # two utterances of one voice closer than utterances of two voices
        a, a2, b = (model(torch.from_numpy(u).view(1, 1, -1))[0] for u in utterances)
    assert float(a @ a2) > float(a @ b)


class Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_a_checkpoint_that_would_run_code_is_refused_naming_it(tmp_path, capsys):
    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"model_state": Payload()}, handle)
    with pytest.raises(ValueError, match="evil.pt: not a checkpoint of tensors"):
        import_resemblyzer(tmp_path / "model", weights=tmp_path / "evil.pt")
    assert "unpickled code ran" not in capsys.readouterr().out
    torch.save({"step": 1}, tmp_path / "other.pt")
    assert main(["import", "resemblyzer", "--output", str(tmp_path / "m"), "--weights", str(tmp_path / "other.pt")]) == 2
    assert "other.pt: no 'model_state' state dict" in capsys.readouterr().err
