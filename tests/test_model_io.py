"""Saved models are arguments plus weights; reloading gives identical outputs, no pickle."""

import json
import pickle

import pytest
import torch

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.models import CRNN, Debug
from conftest import quiet_trainer


def specifications(resolution=Resolution.FRAME):
    return Specifications(Problem.MULTI_LABEL_CLASSIFICATION, resolution, 2.0, classes=["Dog", "Cat"])


@pytest.mark.parametrize("resolution", [Resolution.FRAME, Resolution.CHUNK])
def test_save_and_load_give_identical_outputs(tmp_path, resolution):
    torch.manual_seed(0)
    model = CRNN(channels=(8, 16), time_pooling=(2, 2), hidden_size=8)
    model.attach_specifications(specifications(resolution))
    model.eval()
    waveforms = torch.randn(2, 1, 32000)
    expected = model(waveforms)
    model.save_pretrained(tmp_path / "model")

    manifest = json.loads((tmp_path / "model" / "audiotask.json").read_text())
    assert manifest["architecture"] == "audiotask.models.crnn:CRNN"
    assert manifest["arguments"]["channels"] == [8, 16]
    assert manifest["specifications"]["classes"] == ["Dog", "Cat"]
    assert set(manifest["versions"]) == {"audiotask", "torch"}

    loaded = Model.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, CRNN) and not loaded.training
    assert loaded.specifications == model.specifications
    assert torch.equal(loaded(waveforms), expected)


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model = Debug()
    model.attach_specifications(specifications())
    model.save_pretrained(tmp_path / "model")

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle used")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    Model.from_pretrained(tmp_path / "model")


def test_lightning_checkpoint_loads_with_weights_only(tiny_protocol, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    from audiotask.tasks import SoundEventDetection

    task = SoundEventDetection(tiny_protocol, duration=2.0, batch_size=4, num_workers=0, cache=tmp_path / "cache")
    model = Debug(task=task)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "checkpoints", filename="last")
    quiet_trainer(max_steps=2, enable_checkpointing=True, callbacks=[checkpoint], limit_val_batches=0).fit(model)
    path = tmp_path / "checkpoints" / "last.ckpt"
    torch.load(path, weights_only=True)  # would raise if the checkpoint needed unpickling code
    loaded = Model.from_pretrained(path)
    waveforms = torch.randn(1, 1, 32000)
    model.eval()
    assert torch.equal(loaded(waveforms), model(waveforms))


def test_loading_a_folder_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="audiotask.json"):
        Model.from_pretrained(tmp_path)


def test_model_without_specifications_says_what_to_do():
    with pytest.raises(RuntimeError, match="attach a task"):
        Debug().specifications
