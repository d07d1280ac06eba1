"""`audiotask check` and `task.check()`: every problem of every file, in one pass."""

import numpy as np
import pytest
import soundfile

from audiotask.cli.main import main
from audiotask.engine.checks import DROPPED, ERROR, WARNING, closest_uri, normalised
from audiotask.protocols.dcase import write_dcase_tsv
from audiotask.tasks import SoundEventDetection, VoiceActivityDetection
from audiotask.testing.dummies import load_protocol, write_database_yml
from helpers import prepared

SR = 16000


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.fixture
def faulty(tmp_path):
    """A protocol whose files each have one problem (and one good file)."""
    root = tmp_path / "data"
    root.mkdir()
    soundfile.write(root / "good.wav", noise(4.0), SR, subtype="PCM_16")
    soundfile.write(root / "short.wav", noise(1.0), SR, subtype="PCM_16")
    soundfile.write(root / "late.wav", noise(4.0), SR, subtype="PCM_16")
    soundfile.write(root / "cow.wav", noise(4.0), SR, subtype="PCM_16")
    soundfile.write(root / "trñ00.wav", noise(4.0), SR, subtype="PCM_16")
    soundfile.write(root / "empty.wav", np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    nan = noise(4.0)
    nan[100:110] = np.nan
    soundfile.write(root / "nan.wav", nan, SR, subtype="FLOAT")
    (root / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    uris = ["good", "short", "late", "cow", "trñ00", "empty", "nan", "corrupt", "missing"]
    (root / "files.lst").write_text("".join(f"{uri}\n" for uri in uris))
    rows = [(f"{uri}.wav", 0.5, 1.0, "Dog") for uri in uris if uri not in ("trñ00", "empty")]
    rows += [("late.wav", 3.0, 5.5, "Dog"), ("cow.wav", 1.0, 2.0, "Cow"), ("cow.wav", 2.0, 3.0, "Cow"),
             ("trn00.wav", 0.5, 1.0, "Dog")]
    write_dcase_tsv(root / "labels.tsv", rows)
    uem = "".join(f"{uri} 1 0.000 {4.0 if uri != 'short' else 1.0:.3f}\n" for uri in uris if uri not in ("trñ00", "late"))
    (root / "files.uem").write_text(uem + "trn00 1 0.000 4.000\nlate 1 0.000 6.000\n")
    subset = {"uri": "files.lst", "annotation": "labels.tsv", "annotated": "files.uem"}
    write_database_yml(root / "database.yml", "Faulty", "Events", {"train": subset}, audio="{uri}.wav")
    return root


def findings_by_uri(report):
    found = {}
    for finding in report.findings:
        found.setdefault(finding.uri, []).append((finding.severity, finding.problem))
    return found


def test_check_names_every_problem_of_every_file(faulty, tmp_path):
    protocol = load_protocol(faulty / "database.yml", "Faulty.SpeakerDiarization.Events")
    task = SoundEventDetection(protocol, classes=["Dog"], duration=2.0, cache=tmp_path / "cache")
    report = task.check()
    found = findings_by_uri(report)
    assert report.files == 9
    assert "good" not in found
    (severity, problem), = found["missing"]
    assert severity == ERROR and problem.startswith("audio file not found") and str(faulty / "missing.wav") in problem
    assert found["empty"] == [(ERROR, f"empty audio file (0 samples): {faulty / 'empty.wav'}")]
    assert found["nan"] == [(ERROR, f"10 NaN or infinite sample(s) in {faulty / 'nan.wav'}")]
    (severity, problem), = found["corrupt"]
    assert severity == ERROR and problem.startswith(f"cannot decode {faulty / 'corrupt.wav'}")
    assert found["short"] == [(WARNING, "shorter than a training chunk (1.000 s < 2 s): zero-padded")]
    assert found["late"] == [
        (WARNING, "1 annotation(s) end after the audio (4.000 s), e.g. [3.000, 5.500] 'Dog': clipped"),
        (WARNING, "1 annotated region(s) (UEM) end after the audio (4.000 s), e.g. [0.000, 6.000]: clipped"),
    ]
    assert found["cow"] == [(WARNING, "labels outside the classes, ignored: 'Cow' (2)")]
    assert found["trñ00"] == [(DROPPED, "no annotated region (UEM): never used; the annotation or UEM files name "
                                        "'trn00', which no listed file has: a different spelling?")]
    assert len(report.errors) == 4
    assert report.summary() == "9 file(s) checked: 4 error(s), 1 dropped, 4 warning(s)"


def test_check_reads_the_protocol_once(faulty, tmp_path, monkeypatch):
    protocol = load_protocol(faulty / "database.yml", "Faulty.SpeakerDiarization.Events")
    task = SoundEventDetection(protocol, classes=["Dog"], duration=2.0, cache=tmp_path / "cache")
    calls = []
    original = protocol.train_iter
    monkeypatch.setattr(protocol, "train_iter", lambda: calls.append(1) or original())
    task.check(["train"], scan=False)
    assert calls == [1]


def test_check_command_lists_problems_and_fails_on_errors(faulty, capsys):
    arguments = ["check", "--database", str(faulty / "database.yml"), "--protocol", "Faulty.SpeakerDiarization.Events",
                 "--task", "sed", "--classes", "Dog", "--duration", "2"]
    assert main(arguments) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "9 file(s) checked: 4 error(s), 1 dropped, 4 warning(s)"
    assert any(line.startswith("error    train  missing: audio file not found") for line in lines)
    # without the scan, the NaN file passes (its header is fine)
    assert main([*arguments, "--no-scan"]) == 1
    assert not any("NaN" in line for line in capsys.readouterr().out.splitlines())


def test_check_of_a_clean_protocol_exits_zero(tmp_path, capsys):
    from audiotask.testing.dummies import make_sound_event_protocol

    yml = make_sound_event_protocol(tmp_path / "data", name="Clean")
    assert main(["check", "--database", str(yml), "--protocol", "Clean.SpeakerDiarization.Events", "--task", "vad"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "does not define the 'scope'" not in line]
    assert lines == ["5 file(s) checked: 0 error(s), 0 dropped, 0 warning(s)"]


def test_training_stops_before_the_first_step_on_an_empty_file(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    soundfile.write(root / "good.wav", noise(4.0), SR, subtype="PCM_16")
    soundfile.write(root / "empty.wav", np.zeros(0, dtype=np.float32), SR, subtype="PCM_16")
    (root / "files.lst").write_text("good\nempty\n")
    write_dcase_tsv(root / "labels.tsv", [("good.wav", 0.5, 1.0, "Dog")])
    write_database_yml(root / "database.yml", "Empty", "Events", {"train": {"uri": "files.lst", "annotation": "labels.tsv"}},
                       audio="{uri}.wav")
    protocol = load_protocol(root / "database.yml", "Empty.SpeakerDiarization.Events")
    with pytest.raises(ValueError, match=r"1 train audio file\(s\) are empty \(0 samples\): 'empty' \(.*empty.wav\)"):
        prepared(VoiceActivityDetection(protocol, duration=2.0, num_workers=0, cache=tmp_path / "cache"))


def test_uris_are_compared_without_accents_and_case():
    assert normalised("trñ00") == normalised("TRN00") == "trn00"
    assert closest_uri("trñ00", ["trn00", "trn01"]) == "trn00"
    assert closest_uri("clip_001", ["clip_01"]) == "clip_01"
    assert closest_uri("abc", ["xyz"]) is None


@pytest.mark.parametrize("problem, match", [
    ("missing", r"missing"),
    ("corrupt", r"Cannot decode audio file .*corrupt\.wav"),
])
def test_training_stops_before_the_first_step_on_missing_or_undecodable_audio(tmp_path, problem, match):
    root = tmp_path / "data"
    root.mkdir()
    soundfile.write(root / "good.wav", noise(4.0), SR, subtype="PCM_16")
    if problem == "corrupt":
        (root / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(2000))
    (root / "files.lst").write_text(f"good\n{problem}\n")
    write_dcase_tsv(root / "labels.tsv", [("good.wav", 0.5, 1.0, "Dog")])
    write_database_yml(root / "database.yml", "Bad", "Events", {"train": {"uri": "files.lst", "annotation": "labels.tsv"}},
                       audio="{uri}.wav")
    protocol = load_protocol(root / "database.yml", "Bad.SpeakerDiarization.Events")
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        prepared(VoiceActivityDetection(protocol, duration=2.0, num_workers=0, cache=tmp_path / "cache"))
