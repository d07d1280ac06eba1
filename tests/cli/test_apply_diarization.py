"""``audiotask apply`` of a speaker diarization model: diarization.rttm, its options, its refusals."""

import numpy as np
import pytest
import soundfile
import torch
from pyannote.database.util import load_rttm

from audiotask.cli.main import main
from audiotask.core.powerset import Powerset
from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.models import Debug
from helpers import saved_debug_frame_model, stderr_lines

DURATION = 4.0


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A powerset diarization model that hears local speaker 1 everywhere (its head's bias
    says so), a speaker embedding model and a voice activity detector, all Debug models."""
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    powerset = Powerset(3, 2)
    diarization = Debug(hidden_size=8)
    diarization.attach_specifications(Specifications(
        Problem.MONO_LABEL_CLASSIFICATION, Resolution.FRAME, 2.0, classes=powerset.class_names,
        permutation_invariant=True, extra={"task": "speaker-diarization", "max_speakers_per_chunk": 3,
                                           "max_speakers_per_frame": 2, "powerset": True}))
    with torch.no_grad():
        diarization.head.bias[powerset.class_names.index("1")] += 20.0
    embedding = Debug(hidden_size=8)
    embedding.attach_specifications(Specifications(Problem.REPRESENTATION, Resolution.CHUNK, 1.0,
                                                   extra={"task": "speaker-embedding", "dimension": 8}))
    return {"diarization": diarization.save_pretrained(root / "diarization"),
            "embedding": embedding.save_pretrained(root / "embedding"),
            "vad": saved_debug_frame_model(root / "vad", ["speech"])}


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audio")
    rng = np.random.default_rng(0)
    for name in ("one", "two"):
        soundfile.write(folder / f"{name}.wav", (0.1 * rng.standard_normal(int(DURATION * 16000))).astype(np.float32),
                        16000, subtype="PCM_16")
    return folder


def apply(models, audio, output, *options):
    return main(["apply", str(models["diarization"]), str(audio), "--output", str(output), "--no-progress", *options])


def test_apply_writes_one_rttm_of_every_file(models, audio, tmp_path, capsys):
    assert apply(models, audio, tmp_path / "out", "--embedding", str(models["embedding"])) == 0
    annotations = load_rttm(str(tmp_path / "out" / "diarization.rttm"))
    assert sorted(annotations) == ["one", "two"]
    for annotation in annotations.values():
        # one local speaker everywhere: one speaker, talking from start to end
        assert annotation.labels() == ["SPEAKER_00"]
        assert abs(annotation.get_timeline().support().duration() - DURATION) < 0.05
    out = capsys.readouterr().out
    assert "2 speaker turns of 2 speakers in 2 files" in out and "diarization.rttm" in out


def test_apply_takes_the_number_of_speakers_and_min_durations(models, audio, tmp_path):
    assert apply(models, audio, tmp_path / "out", "--embedding", str(models["embedding"]), "--min-speakers", "1",
                 "--max-speakers", "2", "--min-duration-off", "0.5") == 0
    assert apply(models, audio, tmp_path / "fixed", "--embedding", str(models["embedding"]), "--num-speakers", "1") == 0
    annotations = load_rttm(str(tmp_path / "fixed" / "diarization.rttm"))
    assert all(annotation.labels() == ["SPEAKER_00"] for annotation in annotations.values())


def test_apply_keeps_going_past_a_bad_file(models, audio, tmp_path, capsys):
    folder = tmp_path / "audio"
    folder.mkdir()
    (folder / "one.wav").write_bytes((audio / "one.wav").read_bytes())
    (folder / "broken.wav").write_bytes(b"not a wav file at all")
    capsys.readouterr()
    assert apply(models, folder, tmp_path / "out", "--embedding", str(models["embedding"])) == 1
    assert sorted(load_rttm(str(tmp_path / "out" / "diarization.rttm"))) == ["one"]
    errors = stderr_lines(capsys)
    assert any("broken.wav" in line and line.startswith("audiotask apply: failed: ") for line in errors), errors


@pytest.mark.parametrize("model, options, message", [
    ("vad", ["--embedding", "{embedding}"], "--embedding does not apply to the detection model {vad}"),
    ("diarization", ["--embedding", "{vad}"], "--embedding {vad}: not a speaker embedding model"),
    ("diarization", ["--embedding", "{diarization}"], "--embedding {diarization}: not a speaker embedding model"),
    ("diarization", [], "{diarization} is a speaker diarization model: give --embedding EMBEDDING_MODEL"),
    ("diarization", ["--embedding", "{missing}"], "no such model: {missing}"),
    ("diarization", ["--embedding", "{embedding}", "--num-speakers", "2", "--max-speakers", "3"],
     "--num-speakers fixes the number of speakers"),
    ("diarization", ["--embedding", "{embedding}", "--min-speakers", "3", "--max-speakers", "2"],
     "--min-speakers (3) must not exceed --max-speakers (2)"),
    ("diarization", ["--embedding", "{embedding}", "--num-speakers", "0"], "--num-speakers must be at least 1"),
    ("diarization", ["--embedding", "{embedding}", "--format", "rttm"],
     "--format does not apply to the speaker-diarization model"),
], ids=["embedding-for-vad", "vad-as-embedding", "diarization-as-embedding", "no-embedding", "missing-embedding",
        "num-and-bounds", "crossed-bounds", "no-speaker", "format"])
def test_apply_refuses_in_one_line(models, audio, tmp_path, capsys, model, options, message):
    names = {**{key: str(path) for key, path in models.items()}, "missing": str(tmp_path / "none")}
    options = [option.format(**names) for option in options]
    capsys.readouterr()
    assert main(["apply", names[model], str(audio), "--output", str(tmp_path / "out"), "--no-progress",
                 *options]) == 2
    [line] = stderr_lines(capsys)
    assert line.startswith("audiotask apply: error: ") and message.format(**names) in line, line
    assert not (tmp_path / "out").exists()
