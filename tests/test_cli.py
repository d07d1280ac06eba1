"""The ``audiotask`` command line, end to end on a tiny generated protocol."""

import csv
import json
import subprocess
import sys

import pytest

from audiotask.cli.common import CommandError, parse_options
from audiotask.cli.main import main

PROTOCOL = "Tiny.SpeakerDiarization.Events"
CLASSES = ["Alarm_bell_ringing", "Dog", "Speech"]  # sorted labels of make_sound_event_protocol
DURATION = 6.0  # of every generated file


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny protocol, a model trained on it with `audiotask train`, and its `apply` outputs."""
    from audiotask.testing.dummies import make_sound_event_protocol

    root = tmp_path_factory.mktemp("cli")
    # seed 3: no two events of one class overlap in the test files, which sed_scores_eval refuses
    database = make_sound_event_protocol(root / "data", name="Tiny", files_per_subset=(3, 1, 3), seed=3)
    durations = root / "durations.tsv"
    durations.write_text("filename\tduration\n" + "".join(f"test{i:02d}.wav\t{DURATION}\n" for i in range(3)))
    train = [
        "train", "--database", str(database), "--protocol", PROTOCOL, "--task", "sed", "--resolution", "frame",
        "--model", "Debug", "--model-option", "hidden_size=8", "--duration", "2", "--batch-size", "4",
        "--max-steps", "3", "--num-workers", "0", "--cache", str(root / "cache"), "--output", str(root / "run"),
        "--no-progress",
    ]
    assert main(train) == 0
    test_audio = root / "audio-test"
    test_audio.mkdir()
    for i in range(3):  # apply walks folders: give it the test files only
        (test_audio / f"test{i:02d}.wav").symlink_to(root / "data" / "audio" / f"test{i:02d}.wav")
    # a low threshold: the barely trained model still detects events, so rows can be checked
    apply = ["apply", str(root / "run" / "model"), str(test_audio), "--output", str(root / "out"),
             "--onset", "0.05", "--median-filter", "0.2", "--no-progress"]
    assert main(apply) == 0
    return {"root": root, "reference": root / "data" / "test.tsv", "durations": durations}


def test_train_writes_a_loadable_model_checkpoints_and_metrics(workdir):
    from audiotask.core.model import Model

    run = workdir["root"] / "run"
    model = Model.from_pretrained(run / "model")
    assert type(model).__name__ == "Debug"
    assert model.hidden_size == 8
    assert model.specifications.classes == CLASSES
    assert model.specifications.resolution.value == "frame"
    assert model.specifications.duration == 2.0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    header = read_tsv(run / "metrics.csv")[0][0].split(",")
    assert {"epoch", "step", "train/loss_epoch", "val/loss"} <= set(header)


def test_apply_writes_dcase_detections_and_scores(workdir):
    out = workdir["root"] / "out"
    rows = read_tsv(out / "detections.tsv")
    assert rows[0] == ["filename", "onset", "offset", "event_label"]
    assert len(rows) > 1
    for filename, onset, offset, label in rows[1:]:
        assert filename in {"test00.wav", "test01.wav", "test02.wav"}
        assert 0.0 <= float(onset) < float(offset) <= DURATION + 0.1
        assert label in CLASSES
    assert sorted(p.stem for p in (out / "scores").iterdir()) == ["test00", "test01", "test02"]


def test_apply_rttm_names_files_by_uri(workdir, tmp_path):
    root = workdir["root"]
    apply = ["apply", str(root / "run" / "model"), str(root / "audio-test" / "test00.wav"), "--output", str(tmp_path),
             "--onset", "0.05", "--format", "rttm", "--no-progress"]
    assert main(apply) == 0
    lines = (tmp_path / "detections.rttm").read_text().splitlines()
    assert lines and all(line.split()[0] == "SPEAKER" and line.split()[1] == "test00" for line in lines)
    assert {line.split()[7] for line in lines} <= set(CLASSES)


def test_evaluate_prints_json_metrics_in_unit_range(workdir, capsys):
    detections = workdir["root"] / "out" / "detections.tsv"
    arguments = ["evaluate", str(workdir["reference"]), str(detections), "--durations", str(workdir["durations"]),
                 "--scores", str(workdir["root"] / "out" / "scores"), "--json"]
    capsys.readouterr()
    assert main(arguments) == 0
    results = json.loads(capsys.readouterr().out)
    for key in ("psds1", "psds2", "event_f1", "segment_f1", "intersection_f1"):
        assert key in results, sorted(results)
        assert 0.0 <= results[key] <= 1.0


def test_evaluate_reference_against_itself_is_perfect(workdir, capsys):
    reference = str(workdir["reference"])
    capsys.readouterr()
    # durations read from the audio files this time
    assert main(["evaluate", reference, reference, "--audio", str(workdir["root"] / "data" / "audio"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["event_f1"] == pytest.approx(1.0)
    assert results["segment_f1"] == pytest.approx(1.0)
    assert results["intersection_f1"] == pytest.approx(1.0)


def test_evaluate_without_durations_fails_clearly(workdir, capsys):
    reference = str(workdir["reference"])
    assert main(["evaluate", reference, reference]) == 2
    assert "--durations" in capsys.readouterr().err


def test_train_refuses_options_that_do_not_apply(workdir, capsys):
    arguments = ["train", "--database", str(workdir["root"] / "data" / "database.yml"), "--protocol", PROTOCOL,
                 "--task", "vad", "--classes", "Dog", "--output", str(workdir["root"] / "unused")]
    assert main(arguments) == 2
    assert "--task sed" in capsys.readouterr().err


def test_model_options_are_read_as_json():
    assert parse_options(["hidden_size=8", "channels=[4, 8]", "name=abc", "dropout=0.5"]) == {
        "hidden_size": 8, "channels": [4, 8], "name": "abc", "dropout": 0.5,
    }
    with pytest.raises(CommandError):
        parse_options(["hidden_size"])


def test_learning_rate_option_sets_the_optimiser():
    from audiotask.models import Debug
    from audiotask.training import make_trainer, set_learning_rate

    model = Debug()
    set_learning_rate(model, 0.01)
    assert model.configure_optimizers().param_groups[0]["lr"] == 0.01
    with pytest.raises(ValueError):
        make_trainer("unused")  # neither epochs nor steps: training would never stop


def test_help_does_not_import_torch():
    probe = "import audiotask.cli.main as m, sys; m.build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("verb", ["", "train", "apply", "evaluate", "demo"])
def test_every_command_has_help(verb):
    command = [sys.executable, "-m", "audiotask.cli.main", *([verb] if verb else []), "--help"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stdout.startswith(f"usage: audiotask {verb}".rstrip())
    if not verb:
        assert all(name in result.stdout for name in ("train", "apply", "evaluate", "demo"))


def test_demo_quick_runs_end_to_end(tmp_path):
    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output), "--quick", "--no-progress"]) == 0
    from audiotask.core.model import Model

    model = Model.from_pretrained(output / "model")
    from audiotask.tasks.sound_event_detection import DCASE_CLASSES

    assert model.specifications.classes == DCASE_CLASSES
    assert read_tsv(output / "detections.tsv")[0] == ["filename", "onset", "offset", "event_label"]
    results = json.loads((output / "results.json").read_text())
    assert 0.0 <= results["psds1"] <= 1.0 and 0.0 <= results["event_f1"] <= 1.0
    assert (output / "results.txt").read_text().strip()
    assert len(list((output / "plots").glob("*.png"))) >= 1
    assert len(list((output / "scores").iterdir())) == 3


def test_evaluate_vad_detection_error_rate_inside_the_uem(tmp_path, capsys):
    # speech [1, 5), detected [2, 7); evaluated region [0, 6): miss 1 s, false alarm 1 s
    # (the false alarm in [6, 7) is outside the UEM), over 4 s of speech
    reference, hypothesis, uem = tmp_path / "ref.rttm", tmp_path / "hyp.rttm", tmp_path / "file.uem"
    reference.write_text("SPEAKER clip 1 1.0 4.0 <NA> <NA> A <NA> <NA>\n")
    hypothesis.write_text("SPEAKER clip 1 2.0 5.0 <NA> <NA> speech <NA> <NA>\n")
    uem.write_text("clip 1 0.0 6.0\n")
    assert main(["evaluate", "--task", "vad", str(reference), str(hypothesis), "--uem", str(uem), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["components"] == pytest.approx({"miss": 1.0, "false alarm": 1.0, "total": 4.0})
    assert results["detection_error_rate"] == pytest.approx(0.5)
    # without the UEM, the false alarm in [6, 7) counts too
    assert main(["evaluate", "--task", "vad", str(reference), str(hypothesis), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["detection_error_rate"] == pytest.approx(0.75)
    assert main(["evaluate", "--task", "vad", str(reference), str(hypothesis), "--uem", str(tmp_path / "none.uem")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_train_resumes_from_a_checkpoint(workdir, capsys):
    import torch

    last = workdir["root"] / "run" / "checkpoints" / "last.ckpt"
    resumed = workdir["root"] / "resumed"
    arguments = [
        "train", "--database", str(workdir["root"] / "data" / "database.yml"), "--protocol", PROTOCOL,
        "--task", "sed", "--resolution", "frame", "--model", "Debug", "--model-option", "hidden_size=8",
        "--duration", "2", "--batch-size", "4", "--num-workers", "0", "--cache", str(workdir["root"] / "cache"),
        "--no-progress", "--output", str(resumed), "--max-steps", "6",
    ]
    assert main([*arguments, "--resume", str(last)]) == 0
    # the first run's last checkpoint is its epoch-end one, at step 2 of 2-step epochs: the
    # resumed run trains epochs 1 and 2 only (Lightning's own file, read in the test only)
    assert torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 6
    with open(resumed / "metrics.csv", newline="") as handle:
        assert {int(row["epoch"]) for row in csv.DictReader(handle)} == {1, 2}
    assert main([*arguments, "--resume", str(resumed / "missing.ckpt")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
