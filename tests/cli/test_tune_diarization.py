"""``audiotask tune`` of a speaker diarization model: MODEL/diarization.json, and apply reading it.

The models are the oracles of ``tests/inference/test_diarization_pipeline.py`` (a segmentation
model that knows the reference, an embedding model that hears each speaker's tone band), put
behind real model folders: ``apply_steps.load_model``, which tune and apply load every model
with, gives the oracle for those folders. The development protocol is one tone conversation
of three speakers (RTTM reference, UEM), written to disk.
"""

import json

import pytest
import soundfile
import torch
from pyannote.database.util import load_rttm

import audiotask.cli.apply_steps as apply_steps
from audiotask.cli.main import main
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.inference.diarization import TUNED_FILENAME, load_tuned_parameters
from audiotask.inference.formats import write_rttm
from audiotask.models import Debug
from audiotask.testing.dummies import write_database_yml
from helpers import saved_debug_frame_model, stderr_lines
from inference.test_diarization_pipeline import (
    DURATION, SAMPLE_RATE, BandEmbedding, OracleSegmentation, der, tone_conversation,
)

PROTOCOL = "Talks.SpeakerDiarization.Tones"
#: a threshold that merges the three speakers into one (DER above 30 %)
BAD_THRESHOLD = 1.9


def saved_placeholder(folder, specifications):
    """A Debug model saved in ``folder`` with ``specifications``: the folder tune and apply are given."""
    torch.manual_seed(0)
    model = Debug(hidden_size=8)
    model.attach_specifications(specifications)
    return model.save_pretrained(folder)


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """``(paths, reference)``: the model folders, the audio, the database.yml; the oracles
    behind the diarization and embedding folders."""
    file, reference, activity = tone_conversation()
    data = tmp_path / "data"
    data.mkdir()
    soundfile.write(data / "talk.wav", file["waveform"][0].numpy(), SAMPLE_RATE, subtype="FLOAT")
    write_rttm(data / "talk.rttm", [reference])
    (data / "talk.uem").write_text(f"talk 1 0.000 {DURATION:.3f}\n")
    (data / "dev.lst").write_text("talk\n")
    subset = {"uri": "dev.lst", "annotation": "talk.rttm", "annotated": "talk.uem"}
    write_database_yml(data / "database.yml", "Talks", "Tones", {"development": subset}, audio="{uri}.wav")

    oracle = OracleSegmentation()
    oracle.listen(str(data / "talk.wav"), activity)
    paths = {
        "diarization": saved_placeholder(tmp_path / "diarization", oracle.specifications),
        "embedding": saved_placeholder(tmp_path / "embedding", Specifications(
            Problem.REPRESENTATION, Resolution.CHUNK, 1.0, extra={"task": "speaker-embedding", "dimension": 8})),
        "vad": saved_debug_frame_model(tmp_path / "vad", ["speech"]),
        "audio": data / "talk.wav", "database": data / "database.yml",
    }
    oracles = {paths["diarization"]: oracle, paths["embedding"]: BandEmbedding()}
    real_load_model = apply_steps.load_model
    monkeypatch.setattr(apply_steps, "load_model", lambda path: oracles.get(path) or real_load_model(path))
    return paths, reference


def tune(paths, *options, model="diarization"):
    return main(["tune", str(paths[model]), "--database", str(paths["database"]), "--protocol", PROTOCOL,
                 "--no-progress", *options])


def apply(paths, output, *options):
    code = main(["apply", str(paths["diarization"]), str(paths["audio"]), "--output", str(output), "--no-progress",
                 *options])
    return code, (load_rttm(str(output / "diarization.rttm"))["talk"] if code == 0 else None)


def write_tuned(model, parameters, **details):
    (model / TUNED_FILENAME).write_text(json.dumps({"format": 1, "parameters": parameters, **details}))


def test_tune_beats_a_bad_threshold_and_apply_uses_it(setup, tmp_path, capsys):
    paths, reference = setup
    model = paths["diarization"]
    # a deliberately bad threshold, stored as tune would: apply uses it, and says so
    write_tuned(model, {"threshold": BAD_THRESHOLD, "min_duration_off": 0.01}, embedding=str(paths["embedding"]))
    code, bad = apply(paths, tmp_path / "bad", "--embedding", str(paths["embedding"]))
    assert code == 0
    bad_der = der(reference, bad)
    assert bad_der > 0.3 and len(bad.labels()) == 1
    assert f"diarization: tuned parameters of {model / TUNED_FILENAME} (threshold 1.9)" in capsys.readouterr().out

    # tune starts from it (its embedding model too), and finds better
    assert tune(paths) == 0
    out = capsys.readouterr().out
    tuned = load_tuned_parameters(model)
    assert tuned["der"] < 1e-6 and tuned["ders"]["1.9"] == pytest.approx(bad_der)
    assert tuned["embedding"] == str(paths["embedding"]) and tuned["protocol"] == PROTOCOL
    parameters = tuned["parameters"]
    assert parameters["method"] == "centroid" and parameters["min_duration_off"] == 0.01  # kept
    assert parameters["threshold"] < BAD_THRESHOLD
    # one line per threshold tried (0.1 ... 1.5 and the one before), then the chosen one
    assert f"starting from the parameters of {model / TUNED_FILENAME}" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [float(row[0]) for row in rows] == [*(round(0.1 * k, 2) for k in range(1, 16)), BAD_THRESHOLD]
    assert rows[-1][2:] == ["(before)"] and float(rows[-1][1]) > 30
    assert f"chosen threshold: {parameters['threshold']:g} (DER 0.00 %; before: 1.9, {100 * bad_der:.2f} %)" in out
    assert f"diarization parameters: {model / TUNED_FILENAME}" in out
    assert not list(model.glob("*.partial"))

    # apply now finds the tuned threshold, and the embedding model it was tuned with
    code, good = apply(paths, tmp_path / "good")
    assert code == 0 and der(reference, good) < 1e-6 and len(good.labels()) == 3
    out = capsys.readouterr().out
    assert f"(threshold {parameters['threshold']:g}, DER 0.00 % on {PROTOCOL})" in out


def test_the_number_of_speakers_and_the_durations_given_still_apply(setup, tmp_path):
    paths, reference = setup
    # tuned: one speaker for three, and turns shorter than 1.5 s dropped (two of the six)
    write_tuned(paths["diarization"], {"threshold": BAD_THRESHOLD, "min_duration_on": 1.5})
    code, tuned = apply(paths, tmp_path / "tuned", "--embedding", str(paths["embedding"]), "--num-speakers", "3")
    assert code == 0 and len(tuned.labels()) == 3 and len(tuned) == 4
    # the command line's durations replace the tuned ones
    code, given = apply(paths, tmp_path / "given", "--embedding", str(paths["embedding"]), "--num-speakers", "3",
                        "--min-duration-on", "0")
    assert code == 0 and der(reference, given) < 1e-6


def test_apply_warns_when_the_embedding_model_is_not_the_tuned_one(setup, tmp_path, capsys):
    paths, _ = setup
    write_tuned(paths["diarization"], {"threshold": 0.5}, embedding=str(tmp_path / "another"))
    capsys.readouterr()
    assert apply(paths, tmp_path / "out", "--embedding", str(paths["embedding"]))[0] == 0
    [line] = stderr_lines(capsys)
    assert "was tuned with the embedding model" in line and str(tmp_path / "another") in line


@pytest.mark.parametrize("content, message", [
    ("{not json", "invalid JSON"),
    ('{"format": 1, "parameters": {"thresold": 0.5}}', "unknown parameter(s) thresold"),
    ('{"format": 1, "parameters": {"threshold": -1}}', "threshold must be a non-negative number"),
    ('{"format": 7, "parameters": {}}', "unknown format 7"),
    ('[1, 2]', "expected a JSON object"),
], ids=["json", "unknown", "negative", "format", "list"])
def test_a_malformed_file_is_one_line_naming_it(setup, tmp_path, capsys, content, message):
    paths, _ = setup
    (paths["diarization"] / TUNED_FILENAME).write_text(content)
    capsys.readouterr()
    assert apply(paths, tmp_path / "out", "--embedding", str(paths["embedding"]))[0] == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask apply: error: ") and str(paths["diarization"] / TUNED_FILENAME) in line, line
    assert message in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model, options, message", [
    ("vad", ["--embedding", "{embedding}"], "--embedding applies to speaker diarization models only, not to {vad}"),
    ("diarization", [], "{diarization} is a speaker diarization model: give --embedding EMBEDDING_MODEL"),
    ("diarization", ["--embedding", "{vad}"], "--embedding {vad}: not a speaker embedding model"),
], ids=["embedding-for-vad", "no-embedding", "vad-as-embedding"])
def test_tune_refuses_in_one_line(setup, capsys, model, options, message):
    paths, _ = setup
    names = {key: str(path) for key, path in paths.items()}
    capsys.readouterr()
    assert tune(paths, *[option.format(**names) for option in options], model=model) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask tune: error: ") and message.format(**names) in line, line
    assert not (paths["diarization"] / TUNED_FILENAME).exists()


def test_tune_with_saved_models(setup, tmp_path, capsys, monkeypatch):
    """No oracle, no diarization.json: the Debug models saved in the folders, loaded from disk,
    tuned from the pipeline's defaults, and applied."""
    paths, _ = setup
    monkeypatch.undo()
    with torch.no_grad():  # one local speaker everywhere, as tests/cli/test_apply_diarization.py's model
        model = apply_steps.load_model(paths["diarization"])
        model.head.bias[model.specifications.classes.index("1")] += 20.0
        model.save_pretrained(paths["diarization"])
    assert tune(paths, "--embedding", str(paths["embedding"])) == 0
    out = capsys.readouterr().out
    assert "starting from" not in out and "0.70" in next(line for line in out.splitlines() if "(before" in line)
    tuned = load_tuned_parameters(paths["diarization"])
    assert 0.0 <= tuned["der"] == min(tuned["ders"].values()) and len(tuned["ders"]) == 15
    code, hypothesis = apply(paths, tmp_path / "out")
    assert code == 0 and hypothesis.labels()
