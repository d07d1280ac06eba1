"""Every error on a model or checkpoint file is one line naming the file: a truncated or
corrupt model.safetensors, a manifest that is not JSON, a pickled checkpoint (refused, without
torch's advice to unpickle it), a truncated checkpoint, and a write that fails (a full disk, a
folder without write permission, a read-only file system)."""

import errno
import json
import os
import shutil

import numpy as np
import pytest
import soundfile
import torch

from audiotask.cli.main import main
from audiotask.core.model import Model, load_checkpoint
from helpers import saved_debug_frame_model, stderr_lines

CLASSES = ["Cat", "Dog"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return saved_debug_frame_model(tmp_path_factory.mktemp("model"), CLASSES)


@pytest.fixture
def audio(tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(path, (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32), 16000)
    return path


def copy_of(model, tmp_path, name="copy"):
    return shutil.copytree(model, tmp_path / name)


def apply_error(folder_or_file, audio, tmp_path, capsys) -> str:
    """The one line of ``audiotask apply MODEL`` that fails (exit status 2)."""
    capsys.readouterr()
    assert main(["apply", str(folder_or_file), str(audio), "--output", str(tmp_path / "out"), "--no-progress"]) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask apply: error: ")
    return line


# ---- reading ---------------------------------------------------------------------------------
@pytest.mark.parametrize("keep", [4, 20, -10])  # header too small, invalid header length, data cut short
def test_a_truncated_safetensors_file_is_one_line_naming_it(model, tmp_path, audio, capsys, keep):
    folder = copy_of(model, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:keep])
    with pytest.raises(ValueError) as caught:
        Model.from_pretrained(folder)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{weights}: not a readable safetensors file, truncated or corrupt")
    assert str(weights) in apply_error(folder, audio, tmp_path, capsys)


def test_missing_weights_are_named(model, tmp_path, audio, capsys):
    folder = copy_of(model, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors: missing"):
        Model.from_pretrained(folder)
    assert str(folder / "model.safetensors") in apply_error(folder, audio, tmp_path, capsys)


@pytest.mark.parametrize("text, reason", [
    ('{"architecture": "Debug", "argu', "invalid JSON: Unterminated string starting at: line 1 column 27"),
    ("[1, 2]", "not an audiotask manifest (a JSON list, not an object)"),
    ('{"architecture": "Debug"}', "not an audiotask manifest: missing key 'arguments', 'specifications'"),
])
def test_a_manifest_that_is_not_one_is_one_line_naming_it(model, tmp_path, audio, capsys, text, reason):
    folder = copy_of(model, tmp_path)
    (folder / "audiotask.json").write_text(text)
    with pytest.raises(ValueError) as caught:
        Model.from_pretrained(folder)
    assert str(caught.value).startswith(f"{folder / 'audiotask.json'}: {reason}")
    assert f"{folder / 'audiotask.json'}: {reason}" in apply_error(folder, audio, tmp_path, capsys)


class Payload:
    """What a malicious checkpoint unpickles into: running a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def pickled_checkpoint(model, path, marker):
    """A Lightning-like checkpoint of ``model`` with a pickled object that runs code when loaded."""
    state = Model.from_pretrained(model).state_dict()
    torch.save({"state_dict": state, "global_step": 3, "audiotask": {}, "callbacks": Payload(marker)}, path)
    return path


def test_a_pickled_checkpoint_is_refused_in_one_line_without_advice_to_unpickle_it(model, tmp_path, audio, capsys):
    marker = tmp_path / "pwned"
    checkpoint = pickled_checkpoint(model, tmp_path / "evil.ckpt", marker)
    with pytest.raises(ValueError) as caught:
        load_checkpoint(checkpoint)
    message = str(caught.value)
    assert message == (f"{checkpoint}: refused: it holds Python objects that only running code could rebuild (Trying "
                       "to load unsupported GLOBAL posix.system whose module posix is blocked); audiotask reads "
                       "checkpoints as data only")
    line = apply_error(checkpoint, audio, tmp_path, capsys)
    assert str(checkpoint) in line and "refused" in line
    assert "weights_only" not in line and "Re-running" not in line
    assert not marker.exists()


@pytest.mark.parametrize("share, reason", [
    (0, "not a readable checkpoint (empty or truncated)"),
    # torch's zip reader says "Invalid argument" or "failed finding central directory", by the size
    (0.5, "not a readable checkpoint, truncated or corrupt ("),
])
def test_a_truncated_checkpoint_is_one_line_naming_it(model, tmp_path, audio, capsys, share, reason):
    checkpoint = tmp_path / "cut.ckpt"
    torch.save({"state_dict": Model.from_pretrained(model).state_dict()}, checkpoint)
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: int(len(data) * share)])
    with pytest.raises(ValueError) as caught:
        load_checkpoint(checkpoint)
    assert str(caught.value).startswith(f"{checkpoint}: {reason}") and "\n" not in str(caught.value)
    assert f"{checkpoint}: {reason}" in apply_error(checkpoint, audio, tmp_path, capsys)


def test_a_corrupt_checkpoint_says_what_torch_found_in_its_first_sentence(tmp_path, monkeypatch):
    def corrupt(*args, **kwargs):
        raise RuntimeError("PytorchStreamReader failed reading zip archive: failed finding central directory. This "
                           "is an internal miniz error. If you are seeing this error, ...")

    monkeypatch.setattr(torch, "load", corrupt)
    with pytest.raises(ValueError) as caught:
        load_checkpoint(tmp_path / "x.ckpt")
    assert str(caught.value) == (f"{tmp_path / 'x.ckpt'}: not a readable checkpoint, truncated or corrupt "
                                 "(PytorchStreamReader failed reading zip archive: failed finding central directory)")


def test_weights_that_do_not_fit_name_the_file_and_the_first_weight(model, tmp_path):
    folder = copy_of(model, tmp_path)
    manifest = json.loads((folder / "audiotask.json").read_text())
    manifest["arguments"]["hidden_size"] = 4
    (folder / "audiotask.json").write_text(json.dumps(manifest))
    with pytest.raises(RuntimeError) as caught:
        Model.from_pretrained(folder)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{folder / 'audiotask.json'}: weights do not fit Debug: size mismatch for ")
    assert message.endswith("more)")


# ---- writing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_names_the_file_being_written(model, tmp_path, monkeypatch, code):
    import safetensors.torch

    def full_disk(tensors, filename, *args, **kwargs):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise OSError(code, os.strerror(code))  # as write() on a full disk: no file named

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    target = tmp_path / "saved"
    with pytest.raises(OSError) as caught:
        Model.from_pretrained(model).save_pretrained(target)
    assert caught.value.errno == code and caught.value.filename == str(target / "model.safetensors")
    assert str(caught.value) == f"[Errno {code}] {os.strerror(code)}: '{target / 'model.safetensors'}'"
    assert sorted(path.name for path in target.iterdir()) == []  # the partial file is removed


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_apply_on_a_full_disk_or_unwritable_folder_is_one_line_naming_the_file(model, audio, tmp_path, capsys,
                                                                               monkeypatch, code):
    import audiotask.inference.formats as formats

    def failing_open(path, mode="r", *args, **kwargs):
        if "w" not in mode:
            return open(path, mode, *args, **kwargs)
        if code != errno.ENOSPC:  # no write permission, a read-only file system: opening fails, naming it
            raise OSError(code, os.strerror(code), str(path))
        handle = open(path, mode, *args, **kwargs)

        class Full:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def write(self, text):
                raise OSError(code, os.strerror(code))  # a full disk names no file

            writelines = write

        return Full()

    monkeypatch.setattr(formats, "open", failing_open, raising=False)  # the RTTM writer's
    output = tmp_path / "out"
    arguments = ["apply", str(model), str(audio), "--output", str(output), "--format", "rttm", "--no-progress"]
    assert main(arguments) == 2
    [line] = [line for line in stderr_lines(capsys) if line.startswith("audiotask apply: error: ")]
    assert line == f"audiotask apply: error: {os.strerror(code)}: '{output / 'detections.rttm'}'"
    assert not list(output.rglob("*.partial"))


def test_a_failed_write_of_another_file_keeps_its_own_name(tmp_path):
    from audiotask.io import replaced_atomically

    other = tmp_path / "other.txt"
    with pytest.raises(PermissionError) as caught:
        with replaced_atomically(tmp_path / "target.txt"):
            raise PermissionError(errno.EACCES, "Permission denied", str(other))
    assert caught.value.filename == str(other)


def test_an_unnamed_write_error_names_the_output_folder_on_the_command_line(tmp_path):
    import argparse

    from audiotask.cli.main import error_message

    message = error_message(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), argparse.Namespace(output=tmp_path))
    assert message == f"No space left on device (while writing under {tmp_path})"


@pytest.fixture(scope="module")
def protocol_yml(tmp_path_factory):
    from audiotask.testing.dummies import make_sound_event_protocol

    root = tmp_path_factory.mktemp("protocol")
    return make_sound_event_protocol(root / "data", name="Tiny", files_per_subset=(1, 1, 0), duration=3.0)


def train_error(protocol_yml, tmp_path, capsys, *options) -> str:
    capsys.readouterr()
    arguments = ["train", "--database", str(protocol_yml), "--protocol", "Tiny.SpeakerDiarization.Events", "--task",
                 "sed", "--model", "Debug", "--duration", "2", "--batch-size", "2", "--num-workers", "0", "--max-steps",
                 "1", "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "run"), "--no-progress", *options]
    assert main(arguments) == 2
    line = stderr_lines(capsys)[-1]
    assert line.startswith("audiotask train: error: ")
    return line


def test_train_resume_refuses_a_pickled_checkpoint_in_one_line(model, protocol_yml, tmp_path, capsys):
    marker = tmp_path / "pwned"
    checkpoint = pickled_checkpoint(model, tmp_path / "evil.ckpt", marker)
    line = train_error(protocol_yml, tmp_path, capsys, "--resume", str(checkpoint))
    assert line.startswith(f"audiotask train: error: {checkpoint}: refused: it holds Python objects")
    assert "weights_only" not in line and not marker.exists()


def test_train_from_a_model_whose_weights_are_cut_short_is_one_line(model, protocol_yml, tmp_path, capsys):
    folder = copy_of(model, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    line = train_error(protocol_yml, tmp_path, capsys, "--from", str(folder), "--model", "CRNN")
    assert line.startswith(f"audiotask train: error: {weights}: not a readable safetensors file, truncated or corrupt")
