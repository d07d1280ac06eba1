"""Saved models are arguments plus weights; reloading gives identical outputs, no pickle."""

import dataclasses
import json
import pickle
import sys
import warnings
from importlib.metadata import EntryPoint

import pytest
import torch

from audiotask.core.model import Model
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.core import architectures as registry
from audiotask.models import CRNN, Debug
from helpers import quiet_trainer


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
    assert manifest["architecture"] == "CRNN"  # the registered name, not a module to import
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



def test_training_heads_train_and_checkpoint_but_are_not_saved_with_the_model(tmp_path):
    from safetensors.torch import load_file

    torch.manual_seed(0)
    model = CRNN(channels=(8, 16), time_pooling=(2, 2), hidden_size=8)
    model.attach_specifications(specifications(Resolution.CHUNK))
    model.add_training_head("classifier", torch.nn.Linear(4, 3))
    named = dict(model.named_parameters())
    assert "training_heads.classifier.weight" in named  # the optimiser gets it
    assert "training_heads.classifier.weight" in model.state_dict()  # so do Lightning checkpoints
    model.save_pretrained(tmp_path / "model")
    saved = load_file(tmp_path / "model" / "model.safetensors")
    assert not [name for name in saved if name.startswith("training_heads.")]
    assert set(saved) == set(model.inference_state_dict())
    # a checkpoint's state dict (training heads included) loads into a model without them
    loaded = Model.from_manifest(model.manifest(), model.state_dict())
    waveforms = torch.randn(2, 1, 32000)
    model.eval()
    assert torch.equal(loaded(waveforms), model(waveforms))
    assert not hasattr(loaded, "training_heads")

# ---- the architecture is looked up by name, never imported from a model file ------------
def saved_debug(directory, architecture=None):
    """A Debug model saved into ``directory``, its manifest's architecture replaced if given."""
    model = Debug()
    model.attach_specifications(specifications())
    model.save_pretrained(directory)
    if architecture is not None:
        manifest_path = directory / "audiotask.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["architecture"] = architecture
        manifest_path.write_text(json.dumps(manifest))
    return model


def test_a_manifest_naming_a_module_imports_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "this", raising=False)
    saved_debug(tmp_path / "model", architecture="this:X")
    with pytest.raises(ValueError, match=r"Unknown model architecture 'this:X' in .*audiotask\.json.*CRNN, Debug"):
        Model.from_pretrained(tmp_path / "model")
    assert "this" not in sys.modules
    assert "Zen of Python" not in capsys.readouterr().out


def test_a_package_shipped_beside_the_manifest_is_never_imported(tmp_path, monkeypatch):
    downloads = tmp_path / "downloads"
    folder = downloads / "model"
    saved_debug(folder, architecture="evilpkg.payload:Evil")
    marker = tmp_path / "payload-ran"
    (folder / "evilpkg").mkdir()
    (folder / "evilpkg" / "__init__.py").write_text("")
    (folder / "evilpkg" / "payload.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    # as when Python is started in the model folder (or with PYTHONPATH pointing into it)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.syspath_prepend(str(downloads))
    with pytest.raises(Exception) as raised:
        Model.from_pretrained(folder)
    assert not marker.exists(), "the model folder's package was imported"
    assert "evilpkg" not in sys.modules
    assert raised.type is ValueError and "Unknown model architecture 'evilpkg.payload:Evil'" in str(raised.value)


def test_manifests_naming_our_models_by_module_still_load(tmp_path):
    torch.manual_seed(0)
    model = saved_debug(tmp_path / "model", architecture="audiotask.models.debug:Debug").eval()
    loaded = Model.from_pretrained(tmp_path / "model")
    waveforms = torch.randn(1, 1, 32000)
    assert isinstance(loaded, Debug) and torch.equal(loaded(waveforms), model(waveforms))


class Declared(Debug):
    """Stands for an architecture that an installed package declares."""


def declaring(name, value):
    """``declared_entry_points`` as when one installed package declares ``name = value``."""
    point = EntryPoint(name=name, value=value, group=registry.ENTRY_POINT_GROUP)
    return lambda: [point]


def test_an_architecture_declared_by_an_installed_package_round_trips(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "declared_entry_points", declaring("Declared", f"{__name__}:Declared"))
    torch.manual_seed(0)
    model = Declared()
    model.attach_specifications(specifications())
    model.eval()
    model.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "audiotask.json").read_text())["architecture"] == "Declared"
    assert registry.known_architectures() == [*registry.BUILTIN, "Declared"]

    loaded = Model.from_pretrained(tmp_path / "model")
    waveforms = torch.randn(1, 1, 32000)
    assert type(loaded) is Declared and torch.equal(loaded(waveforms), model(waveforms))


def test_a_declared_architecture_is_loaded_only_when_a_manifest_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "declared_entry_points", declaring("Other", "evilpkg.payload:Evil"))
    saved_debug(tmp_path / "model")
    assert type(Model.from_pretrained(tmp_path / "model")) is Debug
    assert "evilpkg" not in sys.modules


def test_saving_an_unregistered_architecture_says_how_to_register_it(tmp_path):
    model = Declared()
    model.attach_specifications(specifications())
    with pytest.raises(ValueError, match="not a registered architecture.*'audiotask.models' entry-point group"):
        model.save_pretrained(tmp_path / "model")


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
    # the task's name is provenance, not shape (models saved before every task wrote it keep
    # their heads); the rest of extra is shape (an embedding's dimension)
    named = dataclasses.replace(base, extra={"task": "sound-event-detection"})
    assert base.head_changes(named) == {} and named.task_name == "sound-event-detection"
    assert base.task_name is None
    assert base.head_changes(dataclasses.replace(base, extra={"task": "x", "dimension": 8})) == {
        "extra": ({}, {"dimension": 8})}


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
    # a frame CRNN's clip output is part of its head too (one output per class)
    head = {name for name in after if name.startswith(("head.", "clip_head."))}
    assert {"head.weight", "head.bias"} <= head <= {"head.weight", "head.bias", "clip_head.attention.weight", "clip_head.attention.bias"}
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


def test_a_declared_entry_point_that_is_not_a_model_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "declared_entry_points", declaring("Declared", "json:dumps"))
    saved_debug(tmp_path / "model", architecture="Declared")
    with pytest.raises(TypeError, match="'Declared'.*not an audiotask Model"):
        Model.from_pretrained(tmp_path / "model")


@pytest.mark.slow
def test_the_core_registry_imports_no_model_until_one_is_named():
    import subprocess

    code = ("import sys, audiotask.core.architectures as a; assert 'audiotask.models.crnn' not in sys.modules; "
            "assert a.resolve_architecture('CRNN').__name__ == 'CRNN'")
    subprocess.run([sys.executable, "-c", code], check=True)
