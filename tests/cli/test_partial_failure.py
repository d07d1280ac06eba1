"""The command line with bad inputs: what works is done, what fails is named in one line each.

`apply` and `evaluate` go on past a file they cannot process and exit with status 1; a user's
error (missing or malformed file, a model that does not load or does not fit) is one line
`audiotask VERB: error: ...`, exit status 2, and `--debug` shows its traceback instead.
"""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile
import torch

from audiotask.cli.common import CommandError, audio_extensions, find_audio_files
from audiotask.cli.main import error_message, main
from helpers import saved_debug_frame_model, stderr_lines

SAMPLE_RATE = 16000
CLASSES = ["Cat", "Dog"]


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def without_pkg_resources(text):
    return [line for line in text.splitlines() if line.strip() and "pkg_resources" not in line]


def noise(seconds, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SAMPLE_RATE))).astype(np.float32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return saved_debug_frame_model(tmp_path_factory.mktemp("model"), CLASSES)


@pytest.fixture
def mixed_folder(tmp_path):
    """A good file, an empty one, random bytes named .wav, and files with a NaN and an infinite sample."""
    folder = tmp_path / "audio"
    folder.mkdir()
    soundfile.write(folder / "good.wav", noise(3.0), SAMPLE_RATE)
    soundfile.write(folder / "empty.wav", np.zeros(0, np.float32), SAMPLE_RATE)
    (folder / "corrupt.wav").write_bytes(np.random.default_rng(1).bytes(4000))
    for name, value in (("nan.wav", np.nan), ("infinite.flac.wav", np.inf)):
        samples = noise(3.0, seed=2)
        samples[1000:1010] = value
        soundfile.write(folder / name, samples, SAMPLE_RATE, subtype="FLOAT")
    return folder


# ---- apply: every file it can --------------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True], ids=["offline", "stream"])
def test_apply_writes_the_files_it_can_and_names_each_one_it_cannot(model, mixed_folder, tmp_path, capsys, stream):
    out, alone = tmp_path / "out", tmp_path / "alone"
    # streamed in blocks of 0.5 s: the bad samples (1000 to 1010) are in the first block
    arguments = ["--onset", "0.3", "--no-progress"] + ["--stream"] * stream
    assert main(["apply", str(model), str(mixed_folder), "--output", str(out), *arguments]) == 1
    errors = stderr_lines(capsys)
    non_finite = "samples 0-8000 of the stream: 10 of 8000" if stream else "10 of 48000"
    expected = {
        "corrupt.wav": "Cannot decode audio file",
        "empty.wav": "empty audio file",
        "nan.wav": f"{non_finite} samples are NaN or infinite",
        "infinite.flac.wav": f"{non_finite} samples are NaN or infinite",
    }
    for name, problem in expected.items():
        [line] = [line for line in errors if str(mixed_folder / name) in line]
        assert line.startswith("audiotask apply: failed: ") and problem in line, line
    assert errors[-1] == "audiotask apply: 4 of 5 files failed; outputs written for the other 1"
    assert len(errors) == 5 and not any("Traceback" in line for line in errors)
    # the good file's outputs are those it gets alone
    assert main(["apply", str(model), str(mixed_folder / "good.wav"), "--output", str(alone), *arguments]) == 0
    assert [p.name for p in (out / "scores").iterdir()] == ["good.tsv"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "scores" / "good.tsv", sep="\t"),
                                  pd.read_csv(alone / "scores" / "good.tsv", sep="\t"))
    rows = read_tsv(out / "detections.tsv")
    assert rows == read_tsv(alone / "detections.tsv") and len(rows) > 1
    assert {row[0] for row in rows[1:]} == {"good.wav"}


def test_apply_writes_nothing_when_every_file_fails(model, mixed_folder, tmp_path, capsys):
    (mixed_folder / "good.wav").unlink()
    assert main(["apply", str(model), str(mixed_folder), "--output", str(tmp_path / "out"), "--no-progress"]) == 1
    assert stderr_lines(capsys)[-1] == "audiotask apply: 4 of 4 files failed; nothing written"
    assert not (tmp_path / "out").exists()


def test_inference_refuses_empty_and_non_finite_waveforms_naming_them(model):
    from audiotask.core.audio import AudioError
    from audiotask.inference.inference import Inference

    inference = Inference(model)
    with pytest.raises(AudioError, match="^empty audio file: in-memory waveform$"):
        inference({"waveform": torch.zeros(1, 0), "sample_rate": SAMPLE_RATE})
    waveform = torch.from_numpy(noise(1.0))[None]
    waveform[0, 5] = float("nan")
    waveform[0, 7] = float("-inf")
    with pytest.raises(AudioError, match="^in-memory waveform: 2 of 16000 samples are NaN or infinite$"):
        inference({"waveform": waveform, "sample_rate": SAMPLE_RATE})


# ---- folder scans: every format soundfile decodes ------------------------------------------
def test_folder_scan_takes_every_format_soundfile_decodes(tmp_path):
    from audiotask.cli.common import FORMAT_EXTENSIONS

    extensions = audio_extensions()
    for name in soundfile.available_formats():
        assert set(FORMAT_EXTENSIONS.get(name, (f".{name.lower()}",))) <= set(extensions), name
    assert {".wav", ".flac", ".ogg", ".opus", ".aiff", ".aif", ".caf", ".au", ".w64"} <= set(extensions)
    assert ".raw" not in extensions  # header-less: soundfile cannot decode it unaided
    for name in ("a.caf", "b.AU", "c.w64", "d.txt", "e.raw"):
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in find_audio_files([tmp_path])] == ["a.caf", "b.AU", "c.w64"]


def write_ogg_and_mp3(folder, ogg_stem, mp3_stem):
    """``ogg_stem.ogg`` (Vorbis) and, where libsndfile writes MP3, ``mp3_stem.mp3``; their names."""
    folder.mkdir(exist_ok=True)
    soundfile.write(folder / f"{ogg_stem}.ogg", noise(2.5, seed=3), SAMPLE_RATE, format="OGG", subtype="VORBIS")
    if "MP3" not in soundfile.available_formats():
        return [f"{ogg_stem}.ogg"]
    soundfile.write(folder / f"{mp3_stem}.mp3", noise(2.5, seed=4), SAMPLE_RATE, format="MP3")
    return [f"{mp3_stem}.mp3", f"{ogg_stem}.ogg"]


def test_ogg_and_mp3_found_in_a_folder_are_applied(model, tmp_path, capsys):
    names = write_ogg_and_mp3(tmp_path / "audio", "x", "y")
    assert [path.name for path in find_audio_files([tmp_path / "audio"])] == sorted(names)
    assert main(["apply", str(model), str(tmp_path / "audio"), "--output", str(tmp_path / "out"),
                 "--onset", "0", "--no-progress"]) == 0
    uris = sorted(name.rsplit(".", 1)[0] for name in names)
    assert sorted(path.stem for path in (tmp_path / "out" / "scores").iterdir()) == uris
    # onset 0: every class is one event over each whole file
    rows = read_tsv(tmp_path / "out" / "detections.tsv")[1:]
    assert sorted((row[0], row[3]) for row in rows) == sorted((name, label) for name in names for label in CLASSES)
    assert all(float(row[2]) == pytest.approx(2.5, abs=0.02) for row in rows)


def test_two_files_of_one_uri_are_a_one_line_error_naming_both(model, tmp_path, capsys):
    folder = tmp_path / "audio"
    names = write_ogg_and_mp3(folder, "x", "x")
    if len(names) == 1:  # no MP3 here: a FLAC of the same name stem clashes alike
        soundfile.write(folder / "x.flac", noise(1.0), SAMPLE_RATE)
        names.append("x.flac")
    out = tmp_path / "out"
    assert main(["apply", str(model), str(folder), "--output", str(out), "--no-progress"]) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask apply: error: ") and "same uri 'x'" in line
    assert all(str(folder / name) in line for name in names)
    assert not out.exists()
    with pytest.raises(CommandError, match="same uri"):
        find_audio_files([folder])


# ---- one line per error, a traceback with --debug -------------------------------------------
@pytest.fixture
def broken_models(model, tmp_path):
    """Model folders that do not load: invalid JSON, an unknown architecture, a missing field."""
    manifest = json.loads((model / "audiotask.json").read_text())
    folders = {}
    for name, text in (
        ("json", "{not json"),
        ("architecture", json.dumps({**manifest, "architecture": "Nope"})),
        ("field", json.dumps({key: value for key, value in manifest.items() if key != "specifications"})),
    ):
        folders[name] = tmp_path / name
        shutil.copytree(model, folders[name])
        (folders[name] / "audiotask.json").write_text(text)
    return folders


@pytest.mark.parametrize("broken, message", [
    ("json", "audiotask.json: invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2"),
    ("architecture", "Unknown model architecture 'Nope'"),
    ("field", "missing key 'specifications'"),
])
def test_a_model_that_does_not_load_is_one_line_naming_it(broken_models, mixed_folder, tmp_path, capsys, broken,
                                                          message):
    arguments = ["apply", str(broken_models[broken]), str(mixed_folder / "good.wav"), "--output", str(tmp_path / "o")]
    assert main(arguments) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask apply: error: ") and message in line and str(broken_models[broken]) in line
    with pytest.raises(ValueError, match="cannot load the model|invalid JSON"):
        main(["--debug", *arguments])
    with pytest.raises(ValueError):  # --debug after the verb too
        main([*arguments, "--debug"])


@pytest.mark.slow
def test_debug_prints_the_traceback_from_the_command_line(broken_models, mixed_folder, tmp_path):
    arguments = ["apply", str(broken_models["json"]), str(mixed_folder / "good.wav"), "--output", str(tmp_path / "o")]
    command = [sys.executable, "-m", "audiotask.cli.main"]
    plain = subprocess.run([*command, *arguments], capture_output=True, text=True, timeout=120)
    debug = subprocess.run([*command, "--debug", *arguments], capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and len(plain.stderr.strip().splitlines()) == 1
    assert "Traceback" not in plain.stderr and "invalid JSON" in plain.stderr
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "json.decoder.JSONDecodeError" in debug.stderr and "ValueError: " in debug.stderr


def test_malformed_tsv_is_one_line_naming_file_and_line(tmp_path, capsys):
    reference = tmp_path / "reference.tsv"
    reference.write_text("filename\tonset\toffset\tevent_label\na.wav\t0.0\t1.0\tDog\na.wav\tsoon\t2.0\tCat\n")
    arguments = ["evaluate", str(reference), str(reference)]
    assert main(arguments) == 2
    assert stderr_lines(capsys) == [f"audiotask evaluate: error: {reference}, line 3: onset/offset are not numbers: "
                                    "['a.wav', 'soon', '2.0', 'Cat']"]
    with pytest.raises(ValueError, match="line 3"):
        main(["--debug", *arguments])


def test_non_utf8_files_are_errors_naming_file_and_line(tmp_path, capsys):
    from audiotask.inference.formats import read_events_tsv
    from audiotask.metrics.events import read_durations
    from audiotask.protocols.dcase import read_dcase_tsv

    good = tmp_path / "good.tsv"
    good.write_text("filename\tonset\toffset\tevent_label\na.wav\t0.0\t1.0\tDog\n")
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"filename\tonset\toffset\tevent_label\na.wav\t0.0\t1.0\tDog\nb\xe9.wav\t0.0\t1.0\tDog\n")
    message = f"{bad}, line 3: not UTF-8 text (byte 0xe9): save the file as UTF-8"
    for read in (read_dcase_tsv, read_events_tsv, read_durations):
        with pytest.raises(ValueError) as error:
            read(bad)
        assert str(error.value) == message
    assert main(["evaluate", str(bad), str(good)]) == 2
    assert stderr_lines(capsys) == [f"audiotask evaluate: error: {message}"]
    rttm = tmp_path / "bad.rttm"
    rttm.write_bytes(b"SPEAKER a 1 0.0 1.0 <NA> <NA> sp\xff <NA> <NA>\n")
    assert main(["evaluate", "--task", "vad", str(rttm), str(rttm)]) == 2
    assert stderr_lines(capsys) == [f"audiotask evaluate: error: {rttm}, line 1: not UTF-8 text (byte 0xff): "
                                    "save the file as UTF-8"]


def test_errors_of_dataloader_workers_and_state_dicts_are_one_line():
    import argparse

    worker = ValueError("Caught ValueError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
                        "last):\n  File \"x.py\", line 1, in f\n    g()\nValueError: labels.tsv, line 4: bad row\n")
    assert error_message(worker, argparse.Namespace()) == "labels.tsv, line 4: bad row"
    mismatch = RuntimeError("Error(s) in loading state_dict for Debug:\n\tsize mismatch for a: x.\n\tsize mismatch "
                            "for b: y.\n\tsize mismatch for c: z.")
    assert error_message(mismatch, argparse.Namespace()) == (
        "Error(s) in loading state_dict for Debug: size mismatch for a: x. (and 2 more)")
    assert error_message(KeyError("uri"), argparse.Namespace()) == "missing key 'uri'"
    assert error_message(FileNotFoundError("Could not find file:\n - a.wav"), argparse.Namespace()) == (
        "Could not find file: - a.wav")


# ---- train: a bad protocol, a checkpoint of another model ----------------------------------
PROTOCOL = "Tiny.SpeakerDiarization.Events"


def train_arguments(database, output, *options):
    return ["train", "--database", str(database), "--protocol", PROTOCOL, "--task", "sed", "--resolution", "frame",
            "--model", "Debug", "--duration", "2", "--batch-size", "4", "--max-steps", "2", "--num-workers", "0",
            "--cache", str(output / "cache"), "--output", str(output), "--no-progress", *options]


@pytest.fixture(scope="module")
def protocol(tmp_path_factory):
    from audiotask.testing.dummies import make_sound_event_protocol

    root = tmp_path_factory.mktemp("protocol")
    return make_sound_event_protocol(root / "data", name="Tiny", files_per_subset=(2, 1, 1), seed=3)


@pytest.fixture
def lightning_quiet_into_capsys(capsys):
    """Lightning's loggers at WARNING, writing to the captured stderr.

    Its handlers keep the stream they were made with, which under pytest is an earlier test's
    capture; its INFO lines (seed, accelerators) are progress, not errors.
    """
    import logging

    saved = []
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        streams = [(h, h.stream) for h in logger.handlers if isinstance(h, logging.StreamHandler)]
        saved.append((logger, logger.level, streams))
        logger.setLevel(logging.WARNING)
        for handler, _ in saved[-1][2]:
            handler.stream = sys.stderr  # not setStream: it flushes the old, closed stream
    yield
    for logger, level, streams in saved:
        logger.setLevel(level)
        for handler, stream in streams:
            handler.stream = stream


def test_train_on_a_malformed_or_incomplete_protocol_is_one_line(protocol, tmp_path, capsys,
                                                                 lightning_quiet_into_capsys):
    malformed, incomplete = tmp_path / "malformed", tmp_path / "incomplete"
    for copy in (malformed, incomplete):
        shutil.copytree(protocol.parent, copy)
    with open(malformed / "train.tsv", "a") as handle:
        handle.write("train00.wav\tsoon\t1.0\tDog\n")
    (incomplete / "audio" / "train01.wav").unlink()
    lines = len(read_tsv(protocol.parent / "train.tsv")) + 1
    for database, message in (
        (malformed, f"{malformed / 'train.tsv'}, line {lines}: onset/offset are not numbers"),
        (incomplete, f"{incomplete / 'audio' / 'train01.wav'}"),
    ):
        capsys.readouterr()
        arguments = train_arguments(database / "database.yml", tmp_path / f"run-{database.name}")
        assert main(arguments) == 2
        [line] = stderr_lines(capsys)
        assert line.startswith("audiotask train: error: ") and message in line, line
        with pytest.raises((ValueError, OSError)):
            main(["--debug", *arguments])


def test_resuming_with_other_model_options_names_the_option(protocol, tmp_path, capsys, lightning_quiet_into_capsys):
    first = tmp_path / "first"
    assert main(train_arguments(protocol, first, "--model-option", "hidden_size=8")) == 0
    checkpoint = first / "checkpoints" / "last.ckpt"
    capsys.readouterr()
    arguments = train_arguments(protocol, tmp_path / "second", "--model-option", "hidden_size=16", "--resume",
                                str(checkpoint), "--max-steps", "4")
    assert main(arguments) == 2
    assert stderr_lines(capsys) == [
        f"audiotask train: error: {checkpoint} was saved from a Debug with other arguments (hidden_size=8 there, "
        "16 here): resume with --model-option hidden_size=8"
    ]
    # refused before any weight is loaded (engine.resume.check_resumed_manifest): its traceback with --debug
    with pytest.raises(ValueError, match="hidden_size=8 there, 16 here"):
        main(["--debug", *arguments])


# ---- evaluate: unknown labels, score files that cannot be read -------------------------------
REFERENCE = {"a.wav": [(1.0, 3.0, "Dog"), (3.5, 4.5, "Cat")], "b.wav": [(0.5, 2.0, "Cat"), (4.0, 5.0, "Dog")]}


@pytest.fixture
def evaluation(tmp_path):
    """A reference, its durations, detections equal to it, and scores 1 exactly over its events."""
    from audiotask.inference.formats import write_events_tsv, write_scores
    from audiotask.metrics.events import events_to_scores

    write_events_tsv(tmp_path / "reference.tsv", REFERENCE)
    (tmp_path / "durations.tsv").write_text("filename\tduration\na.wav\t6.0\nb.wav\t6.0\n")
    write_scores(tmp_path / "scores", {name: events_to_scores(events, end=6.0, classes=CLASSES)
                                       for name, events in REFERENCE.items()})
    return tmp_path


def evaluate(root, detections, *options):
    return main(["evaluate", str(root / "reference.tsv"), str(detections), "--durations", str(root / "durations.tsv"),
                 "--json", *options])


def test_evaluate_warns_of_a_predicted_label_the_reference_never_uses(evaluation, capsys):
    from audiotask.inference.formats import write_events_tsv

    predictions = evaluation / "predictions.tsv"
    # the reference with one Dog event misspelt, and one more event of that label
    write_events_tsv(predictions, {"a.wav": [(1.0, 3.0, "Dgo"), (3.5, 4.5, "Cat"), (5.0, 5.5, "Dgo")],
                                   "b.wav": REFERENCE["b.wav"]})
    # an error by default (tests/cli/test_evaluate_unknown_classes.py); left out when asked
    assert evaluate(evaluation, predictions, "--unknown-classes", "ignore") == 0
    captured = capsys.readouterr()
    assert without_pkg_resources(captured.err) == [
        f"audiotask evaluate: warning: {predictions} has label(s) that {evaluation / 'reference.tsv'} has no event "
        "of: Dgo (2 events, e.g. in a.wav), not evaluated (neither true nor false positives: --unknown-classes ignore)"
    ]
    results = json.loads(captured.out)
    # as sed_scores_eval defines it: Dgo counts nowhere; 3 detections, all right, of 4 reference events
    assert results["event_f1_micro"] == pytest.approx(2 * 3 / (3 + 4))
    per_class = results["details"]["event_f1"]["per_class"]
    assert per_class.keys() == set(CLASSES)
    assert (per_class["Dog"]["tp"], per_class["Dog"]["fp"], per_class["Dog"]["n_ref"]) == (1, 0, 2)


def test_evaluate_scores_the_files_it_can_and_names_the_score_file_it_cannot(evaluation, capsys):
    broken = evaluation / "scores" / "b.tsv"
    frame = pd.read_csv(broken, sep="\t")
    frame.loc[1, "Cat"] = np.nan
    frame.to_csv(broken, sep="\t", index=False)
    assert evaluate(evaluation, evaluation / "reference.tsv", "--scores", str(evaluation / "scores")) == 1
    captured = capsys.readouterr()
    assert without_pkg_resources(captured.err) == [
        f"audiotask evaluate: failed: {broken}: 1 NaN or infinite value(s)",
        "audiotask evaluate: 1 score file(s) failed: the results leave out 1 file(s) of the evaluation",
    ]
    results = json.loads(captured.out)
    assert results["failed"] == {str(broken): f"{broken}: 1 NaN or infinite value(s)"}
    # a.wav alone, whose scores are perfect
    assert results["psds1"] == pytest.approx(1.0) and results["event_f1"] == pytest.approx(1.0)
    assert results["details"]["psds1"]["per_class"] == {"Cat": pytest.approx(1.0), "Dog": pytest.approx(1.0)}
    assert results["details"]["event_f1"]["per_class"]["Cat"]["n_ref"] == 1  # b.wav's Cat left out


def test_read_scores_names_the_file_it_cannot_read(evaluation):
    from audiotask.inference.formats import read_score_files, read_scores

    (evaluation / "scores" / "b.tsv").write_bytes(b"onset\toffset\tCat\tDog\n0.0\t\xff\t1\t0\n")
    (evaluation / "scores" / "notes.txt").write_text("hello")
    scores, failed = read_score_files(evaluation / "scores")
    assert list(scores) == ["a"]
    assert failed == {
        evaluation / "scores" / "b.tsv": f"{evaluation / 'scores' / 'b.tsv'}, line 2: not UTF-8 text (byte 0xff): "
                                         "save the file as UTF-8",
        evaluation / "scores" / "notes.txt": f"{evaluation / 'scores' / 'notes.txt'}: not a score file (uri.tsv)",
    }
    with pytest.raises(ValueError, match=r"b\.tsv, line 2: not UTF-8 .* \(and 1 more\)$"):
        read_scores(evaluation / "scores")


def test_cli_warnings_are_one_line(evaluation, capsys):
    from audiotask.inference.formats import write_events_tsv

    # overlapping reference events of one class are merged, with a warning
    write_events_tsv(evaluation / "reference.tsv", {**REFERENCE, "a.wav": [(1.0, 3.0, "Dog"), (2.0, 4.0, "Dog")]})
    assert evaluate(evaluation, evaluation / "reference.tsv") == 0
    assert stderr_lines(capsys) == [
        "audiotask evaluate: warning: overlapping or touching reference events of the same class were merged in "
        "1 file(s), e.g. a.wav"
    ]
