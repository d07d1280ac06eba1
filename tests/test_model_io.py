"""Saved models are arguments plus weights; reloading gives identical outputs, no pickle."""

import dataclasses
import json
import pickle
import warnings

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


# ---- fine-tuning: the head is rebuilt only when what shapes it changes -------------------
def trained_debug(protocol, cache):
    """A Debug model after two training steps of sound event detection on 2-s chunks."""
    from audiotask.tasks import SoundEventDetection

    torch.manual_seed(0)
    task = SoundEventDetection(protocol, duration=2.0, batch_size=4, num_workers=0, cache=cache)
    model = Debug(task=task)
    quiet_trainer(max_steps=2, limit_val_batches=0).fit(model)
    return model


def loaded_crnn(directory):
    """A CRNN saved and loaded back: its weights count as learned ones."""
    torch.manual_seed(0)
    model = CRNN(channels=(8, 16), time_pooling=(2, 2), hidden_size=8)
    model.attach_specifications(
        Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME, 2.0, classes=["Alarm", "Dog", "Speech"])
    )
    return Model.from_pretrained(model.save_pretrained(directory))


@pytest.fixture(params=["trained Debug", "loaded CRNN"])
def learned_model(request, tiny_protocol, tmp_path):
    if request.param == "trained Debug":
        return trained_debug(tiny_protocol, tmp_path / "cache")
    return loaded_crnn(tmp_path / "model")


def weights(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def attach_recording_warnings(model, specifications):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.attach_specifications(specifications)
    return [str(warning.message) for warning in caught if "head rebuilt" in str(warning.message)]


def test_head_fields_are_every_field_but_the_chunking_ones():
    assert Specifications.head_fields() == ("problem", "resolution", "classes", "permutation_invariant", "extra")
    base = specifications()
    assert base.head_changes(dataclasses.replace(base, duration=5.0, min_duration=1.0, warm_up=(0.1, 0.1))) == {}
    assert base.head_changes(dataclasses.replace(base, classes=["Dog"])) == {"classes": (["Dog", "Cat"], ["Dog"])}


def test_another_chunk_duration_keeps_every_weight_and_warns_nothing(learned_model):
    before = weights(learned_model)
    other = dataclasses.replace(learned_model.specifications, duration=3.0, min_duration=1.5, warm_up=(0.25, 0.25))
    assert attach_recording_warnings(learned_model, other) == []
    assert learned_model.specifications is other  # the new durations are the model's now
    after = weights(learned_model)
    assert after.keys() == before.keys()
    assert all(torch.equal(after[name], before[name]) for name in before)


def test_other_classes_reinitialise_the_head_only_and_say_so(learned_model):
    before = weights(learned_model)
    old_classes = learned_model.specifications.classes
    assert len(old_classes) == 3
    new_classes = old_classes + ["Cat"]
    messages = attach_recording_warnings(
        learned_model, dataclasses.replace(learned_model.specifications, classes=new_classes)
    )
    after = weights(learned_model)
    head = {name for name in after if name.startswith("head.")}
    assert head == {"head.weight", "head.bias"}
    for name in after.keys() - head:
        assert torch.equal(after[name], before[name]), name
    assert after["head.weight"].shape[0] == 4
    assert not torch.equal(after["head.weight"][:3], before["head.weight"])  # fresh, not copied
    assert len(messages) == 1
    assert "re-initialised head.weight, head.bias" in messages[0]
    assert f"classes changed from {old_classes} to {new_classes}" in messages[0]


def test_another_resolution_rebuilds_the_crnn_head_and_keeps_its_body(tmp_path):
    model = loaded_crnn(tmp_path / "model")
    before = weights(model)
    messages = attach_recording_warnings(model, dataclasses.replace(model.specifications, resolution=Resolution.CHUNK))
    after = weights(model)
    assert sorted(name for name in after if name.startswith("head.")) == [
        "head.attention.bias", "head.attention.weight", "head.classifier.bias", "head.classifier.weight",
    ]
    assert all(torch.equal(after[name], before[name]) for name in after if not name.startswith("head."))
    assert len(messages) == 1 and "resolution changed from frame to chunk" in messages[0]
    assert model(torch.randn(1, 1, 32000)).shape == (1, 3)


def test_renamed_classes_keep_the_weights_that_fit_but_say_so(tmp_path):
    model = loaded_crnn(tmp_path / "model")
    before = weights(model)
    messages = attach_recording_warnings(model, dataclasses.replace(model.specifications, classes=["a", "b", "c"]))
    assert all(torch.equal(tensor, before[name]) for name, tensor in weights(model).items())
    assert len(messages) == 1 and "kept every weight although classes changed" in messages[0]


def test_a_head_nobody_trained_is_rebuilt_silently():
    model = Debug()
    model.attach_specifications(specifications())
    messages = attach_recording_warnings(model, dataclasses.replace(specifications(), classes=["Dog", "Cat", "Cow"]))
    assert messages == [] and model.head.out_features == 3
