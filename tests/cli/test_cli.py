"""The ``audiotask`` command line, end to end on a tiny generated protocol."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from audiotask.cli.common import CommandError, parse_options
from audiotask.cli.evaluate import NO_DURATIONS_NOTE
from audiotask.cli.main import main

PROTOCOL = "Tiny.SpeakerDiarization.Events"
CLASSES = ["Alarm_bell_ringing", "Dog", "Speech"]  # sorted labels of make_sound_event_protocol
DURATION = 6.0  # of every generated file


def read_tsv(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))


def as_rows(filename, events):
    """Events as `audiotask apply` writes them to detections.tsv (times at 3 decimals)."""
    return [[filename, f"{onset:.3f}", f"{offset:.3f}", label] for onset, offset, label in events]


def train_arguments(root, resolution, output):
    return [
        "train", "--database", str(root / "data" / "database.yml"), "--protocol", PROTOCOL, "--task", "sed",
        "--resolution", resolution, "--model", "Debug", "--model-option", "hidden_size=8", "--duration", "2",
        "--batch-size", "4", "--max-steps", "3", "--num-workers", "0", "--cache", str(root / "cache"),
        "--output", str(output), "--no-progress",
    ]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A tiny protocol, a model trained on it with `audiotask train`, and its `apply` outputs."""
    from audiotask.testing.dummies import make_sound_event_protocol

    root = tmp_path_factory.mktemp("cli")
    # seed 3: no two events of one class overlap in the test files, which sed_scores_eval refuses
    database = make_sound_event_protocol(root / "data", name="Tiny", files_per_subset=(3, 1, 3), seed=3)
    durations = root / "durations.tsv"
    durations.write_text("filename\tduration\n" + "".join(f"test{i:02d}.wav\t{DURATION}\n" for i in range(3)))
    assert database == root / "data" / "database.yml"
    assert main(train_arguments(root, "frame", root / "run")) == 0
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


def test_evaluate_without_durations_computes_what_needs_none(workdir, tmp_path, capsys):
    from audiotask.inference.formats import read_events_tsv, write_events_tsv

    reference = str(workdir["reference"])
    # detections: the reference less every other event, so that micro F1 is 2K / (K + N) exactly
    events = read_events_tsv(workdir["reference"])
    kept = {name: file_events[::2] for name, file_events in events.items()}
    write_events_tsv(tmp_path / "detections.tsv", kept)
    detections = str(tmp_path / "detections.tsv")
    found, total = sum(map(len, kept.values())), sum(map(len, events.values()))
    assert 0 < found < total
    capsys.readouterr()
    assert main(["evaluate", reference, reference, "--json"]) == 0
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert results["event_f1"] == pytest.approx(1.0) and results["intersection_f1"] == pytest.approx(1.0)
    assert not {"segment_f1", "psds1", "psds2"} & set(results)
    assert NO_DURATIONS_NOTE in captured.err.splitlines()
    # event- and intersection-based F1 do not depend on durations: same values as with them
    assert main(["evaluate", reference, detections, "--json"]) == 0
    without = json.loads(capsys.readouterr().out)
    assert main(["evaluate", reference, detections, "--durations", str(workdir["durations"]), "--json"]) == 0
    with_durations = json.loads(capsys.readouterr().out)
    for key in ("event_f1", "event_f1_micro", "intersection_f1", "intersection_f1_micro"):
        assert without[key] == with_durations[key], key
    assert without["details"]["event_f1"]["per_class"] == with_durations["details"]["event_f1"]["per_class"]
    assert without["event_f1_micro"] == pytest.approx(2 * found / (found + total))
    assert without["intersection_f1_micro"] == pytest.approx(2 * found / (found + total))
    # the table has the two columns
    assert main(["evaluate", reference, detections]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert "event F1" in header and "intersection F1" in header and "segment F1" not in header


def test_evaluate_scores_without_durations_fails_clearly(workdir, capsys):
    reference, scores = str(workdir["reference"]), str(workdir["root"] / "out" / "scores")
    assert main(["evaluate", reference, reference, "--scores", scores]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--scores" in error[0] and "--durations" in error[0]


def test_apply_equals_inference_and_scores_to_events(workdir, tmp_path):
    from audiotask.inference.inference import Inference
    from audiotask.inference.postprocessing import scores_to_events

    model, path = workdir["root"] / "run" / "model", workdir["root"] / "audio-test" / "test01.wav"
    scores = Inference(model, step=0.512)(str(path))  # 32 frames of 16 ms
    # thresholds inside the barely trained model's score range, so that events come and go
    onset, offset = (float(np.quantile(scores.data, q)) for q in (0.6, 0.4))
    options = dict(onset=onset, offset=offset, median_filter_length=0.1, min_duration_on=0.1, min_duration_off=0.06)
    expected = scores_to_events(scores, **options)
    assert len(expected) > 1 and expected != scores_to_events(scores, onset=onset)  # the options matter
    apply = ["apply", str(model), str(path), "--output", str(tmp_path), "--step", "0.512", "--onset", repr(onset),
             "--offset", repr(offset), "--median-filter", "0.1", "--min-duration-on", "0.1",
             "--min-duration-off", "0.06", "--no-progress"]
    assert main(apply) == 0
    assert read_tsv(tmp_path / "detections.tsv")[1:] == as_rows("test01.wav", expected)


@pytest.mark.parametrize("options, message", [
    (["--onset", "0.3", "--offset", "0.5"], "--offset (0.5) must not exceed --onset (0.3)"),
    (["--onset", "1.5"], "--onset must be a score threshold in [0, 1]"),
    (["--median-filter", "-0.1"], "--median-filter must be a non-negative"),
    (["--min-duration-off", "nan"], "--min-duration-off must be a non-negative"),
    (["--step", "0"], "step must be in (0, 2.0]"),
])
def test_apply_refuses_bad_options_in_one_line_before_running(workdir, tmp_path, capsys, options, message):
    path = workdir["root"] / "audio-test" / "test00.wav"
    output = tmp_path / "out"
    assert main(["apply", str(workdir["root"] / "run" / "model"), str(path), "--output", str(output), *options]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and message in error[0], error
    assert not output.exists()  # nothing ran


def test_apply_checks_postprocessing_options_before_loading_the_model(tmp_path, capsys):
    assert main(["apply", str(tmp_path / "no-model"), str(tmp_path), "--output", str(tmp_path / "out"),
                 "--onset", "0.3", "--offset", "0.5"]) == 2
    assert "--offset" in capsys.readouterr().err


@pytest.fixture(scope="module")
def chunk_model(workdir):
    """A chunk-level Debug model (one score per 2-s window) trained with `audiotask train`."""
    root = workdir["root"]
    assert main(train_arguments(root, "chunk", root / "chunk-run")) == 0
    return root / "chunk-run" / "model"


def test_apply_chunk_model_spreads_windows_up_to_the_file_end(chunk_model, tmp_path):
    import soundfile

    from audiotask.inference.aggregation import windows_to_timeline
    from audiotask.inference.formats import read_scores
    from audiotask.inference.inference import Inference
    from audiotask.inference.postprocessing import scores_to_events
    from audiotask.testing.dummies import make_clip

    audio = tmp_path / "audio"
    audio.mkdir()
    durations = {"two.wav": 2.0, "odd.wav": 5.3}  # one window; windows past the end (5.3 s is no whole step)
    for seed, (name, seconds) in enumerate(durations.items()):
        samples = make_clip([(0.5, 1.5, "Dog")], duration=seconds, sample_rate=16000, seed=seed)
        soundfile.write(audio / name, samples, 16000)
    inference = Inference(chunk_model)
    windows = {name: inference(str(audio / name)) for name in durations}
    assert windows["two.wav"].data.shape == (1, len(CLASSES))  # per-window output, kept by Inference
    timelines = {name: windows_to_timeline(windows[name], end=durations[name]) for name in durations}
    onset = float(np.median(windows["odd.wav"].data))
    assert main(["apply", str(chunk_model), str(audio), "--output", str(tmp_path / "out"), "--onset", repr(onset),
                 "--no-progress"]) == 0

    scores = read_scores(tmp_path / "out" / "scores")
    # cells of one step (0.2 s) from 0 to the file's end: 10 cells for 2 s, 27 for 5.3 s (the last one cut)
    np.testing.assert_allclose(scores["two"]["onset"], 0.2 * np.arange(10), atol=1e-6)
    np.testing.assert_allclose(scores["odd"]["onset"], 0.2 * np.arange(27), atol=1e-6)
    assert scores["two"]["offset"].iloc[-1] == pytest.approx(2.0)
    assert scores["odd"]["offset"].iloc[-1] == pytest.approx(5.3)
    for name, uri in (("two.wav", "two"), ("odd.wav", "odd")):
        np.testing.assert_allclose(scores[uri][CLASSES].to_numpy(), timelines[name].data, atol=1e-6)
    # a 2-s file is one window: every class above the threshold is one event over the whole file
    assert [label for label in CLASSES if windows["two.wav"].data[0, CLASSES.index(label)] > onset]
    rows = read_tsv(tmp_path / "out" / "detections.tsv")[1:]
    expected = {name: scores_to_events(timelines[name], onset=onset, end=durations[name]) for name in durations}
    assert expected["two.wav"] == [(0.0, 2.0, label) for label in CLASSES
                                   if windows["two.wav"].data[0, CLASSES.index(label)] > onset]
    assert rows == as_rows("odd.wav", expected["odd.wav"]) + as_rows("two.wav", expected["two.wav"])
    assert expected["odd.wav"] and max(float(row[2]) for row in rows if row[0] == "odd.wav") <= 5.3


def test_evaluate_chunk_model_scores_gives_psds(chunk_model, workdir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["apply", str(chunk_model), str(workdir["root"] / "audio-test"), "--output", str(out),
                 "--onset", "0.3", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(workdir["reference"]), str(out / "detections.tsv"), "--durations",
                 str(workdir["durations"]), "--scores", str(out / "scores"), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert 0.0 <= results["psds1"] <= 1.0 and 0.0 <= results["psds2"] <= 1.0
    assert results["details"]["psds1"]["per_class"].keys() == set(CLASSES)


def test_train_refuses_options_that_do_not_apply(workdir, capsys):
    arguments = ["train", "--database", str(workdir["root"] / "data" / "database.yml"), "--protocol", PROTOCOL,
                 "--task", "vad", "--classes", "Dog", "--output", str(workdir["root"] / "unused")]
    assert main(arguments) == 2
    assert "--task sed" in capsys.readouterr().err


def test_an_unknown_model_is_one_line_naming_the_registered_ones(workdir, tmp_path, capsys):
    arguments = train_arguments(workdir["root"], "frame", tmp_path / "run")
    arguments[arguments.index("Debug")] = "Transformer"
    assert main(arguments) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "'Transformer'" in error and "CRNN, Debug" in error


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


@pytest.mark.slow
def test_demo_quick_runs_end_to_end(tmp_path):
    output = tmp_path / "demo"
    assert main(["demo", "--output", str(output), "--quick", "--no-progress"]) == 0
    from audiotask.core.model import Model

    model = Model.from_pretrained(output / "model")
    from audiotask.tasks.sed import DCASE_CLASSES

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


def test_evaluate_names_a_detected_file_missing_from_the_reference(workdir, tmp_path, capsys):
    detections = tmp_path / "detections.tsv"
    detections.write_text("filename\tonset\toffset\tevent_label\nnowhere.wav\t0.0\t1.0\tDog\n")
    assert main(["evaluate", str(workdir["reference"]), str(detections), "--durations", str(workdir["durations"])]) == 2
    error = capsys.readouterr().err.strip()
    assert "nowhere.wav" in error and len(error.splitlines()) == 1


# ---- the task registry and the commands built from it ------------------------------------
def test_registry_resolves_names_and_aliases_to_one_entry():
    from audiotask.tasks import registry

    assert registry.names() == [
        "sound-event-detection", "sed", "voice-activity-detection", "vad",
        "overlapped-speech-detection", "osd", "multi-label-segmentation", "mls",
        "audio-classification", "classification", "audio-tagging", "tagging",
        "snr-estimation", "snr", "speaker-embedding", "embedding", "speaker-diarization", "diarization",
    ]
    for name, alias, target in [
        ("sound-event-detection", "sed", "audiotask.tasks.sed:SoundEventDetection"),
        ("voice-activity-detection", "vad", "audiotask.tasks.voice_activity_detection:VoiceActivityDetection"),
        ("overlapped-speech-detection", "osd", "audiotask.tasks.overlapped_speech_detection:OverlappedSpeechDetection"),
        ("multi-label-segmentation", "mls", "audiotask.tasks.multilabel_segmentation:MultiLabelSegmentation"),
        ("audio-classification", "classification", "audiotask.tasks.audio_classification:AudioClassification"),
        ("audio-tagging", "tagging", "audiotask.tasks.audio_tagging:AudioTagging"),
        ("snr-estimation", "snr", "audiotask.tasks.snr_estimation:SNREstimation"),
        ("speaker-embedding", "embedding", "audiotask.tasks.speaker_embedding:SpeakerEmbedding"),
        ("speaker-diarization", "diarization", "audiotask.tasks.speaker_diarization:SpeakerDiarization"),
    ]:
        assert registry.resolve(alias) is registry.resolve(name)
        assert registry.resolve(name).target == target and registry.resolve(name).short_name == alias
    # the task-specific options each task takes, on top of the engine's
    assert [e.short_name for e in registry.accepting("classes")] == ["sed", "mls", "classification", "tagging"]
    assert [e.short_name for e in registry.accepting("resolution")] == ["sed"]
    assert [e.short_name for e in registry.accepting("fold")] == ["classification", "tagging"]
    assert [e.short_name for e in registry.accepting("noise")] == ["snr"]
    assert [e.short_name for e in registry.accepting("margin")] == ["embedding"]
    assert len(registry.accepting("duration")) == len(registry.accepting("batch_size")) == 9


def test_every_registered_task_writes_its_registry_name_into_its_specifications():
    """``apply`` tells saved models apart by ``specifications.extra["task"]``: each task class
    names itself as its entry does."""
    from audiotask.tasks import registry

    assert {entry.name: entry.load().task_name for entry in registry.TASKS} == {
        entry.name: entry.name for entry in registry.TASKS}


def test_registry_loads_classes_on_use():
    from audiotask.tasks import registry
    from audiotask.tasks.sed import SoundEventDetection
    from audiotask.tasks.voice_activity_detection import VoiceActivityDetection

    assert registry.load("sed") is SoundEventDetection
    assert registry.load("voice-activity-detection") is VoiceActivityDetection


def test_unknown_task_name_lists_the_names():
    from audiotask.tasks import registry

    with pytest.raises(ValueError, match="unknown task 'separation'") as error:
        registry.resolve("separation")
    for name in registry.names():
        assert name in str(error.value)


def option_action(verb, dest):
    from audiotask.cli.main import build_parser

    subparsers = next(a for a in build_parser()._actions if a.dest == "command")
    return next(a for a in subparsers.choices[verb]._actions if a.dest == dest)


def test_train_task_choices_and_help_come_from_the_registry():
    from audiotask.tasks import registry

    task = option_action("train", "task")
    assert task.choices == registry.names()
    for entry in registry.TASKS:
        assert f"{entry.short_name} ({entry.name}): {entry.help}" in task.help
    assert option_action("evaluate", "task").choices == [
        "sound-event-detection", "sed", "voice-activity-detection", "vad", "overlapped-speech-detection", "osd",
        "multi-label-segmentation", "mls", "audio-classification", "classification", "audio-tagging", "tagging",
        "speaker-embedding", "embedding", "speaker-diarization", "diarization", "verification",
    ]


def parse_train(*options):
    from audiotask.cli.main import build_parser

    return build_parser().parse_args(["train", "--protocol", "P", "--output", "unused", *options])


@pytest.mark.parametrize("task, options, message", [
    ("vad", ["--classes", "Dog"], "--classes applies to --task sed, mls, classification, tagging only, not to --task vad"),
    ("osd", ["--resolution", "frame"], "--resolution applies to --task sed only, not to --task osd"),
    ("mls", ["--resolution", "frame", "--classes", "a,b"], "--resolution applies to --task sed only, not to --task mls"),
    ("overlapped-speech-detection", ["--classes", "a", "--resolution", "chunk"],
     "--classes applies to --task sed, mls, classification, tagging only; --resolution applies to --task sed only, "
     "not to --task osd"),
])
def test_train_refuses_each_option_its_task_does_not_take(task, options, message):
    from audiotask.cli.train import make_task

    with pytest.raises(CommandError) as error:
        make_task(parse_train("--task", task, *options), protocol=None)
    assert str(error.value) == message


@pytest.mark.parametrize("task, options, expected", [
    ("sed", ["--classes", "Dog, Cat", "--resolution", "frame"], {"classes": ["Dog", "Cat"], "resolution": "frame", "duration": 10.0}),
    ("sed", [], {"resolution": "frame", "duration": 10.0}),  # the command line's DCASE recipe
    ("sed", ["--resolution", "chunk", "--duration", "5"], {"resolution": "chunk", "duration": 5.0}),
    ("sed", ["--no-mean-teacher", "--select-by", "loss", "--kind-proportions", "strong=1,none=1"],
     {"resolution": "frame", "duration": 10.0, "mean_teacher": False, "select_by": "loss",
      "kind_proportions": {"strong": 1.0, "none": 1.0}}),
    ("vad", ["--num-workers", "2"], {"num_workers": 2}),
    ("osd", ["--duration", "3"], {"duration": 3.0}),
    ("mls", ["--classes", "a,b"], {"classes": ["a", "b"]}),
])
def test_make_task_passes_each_registered_task_its_options(monkeypatch, task, options, expected):
    from audiotask.cli import train
    from audiotask.tasks import registry

    built = {}

    def fake_task(protocol, **options):
        built.update(protocol=protocol, options=options)
        return "task"

    monkeypatch.setattr(registry.TaskEntry, "load", lambda entry: fake_task)
    assert train.make_task(parse_train("--task", task, "--batch-size", "4", *options), protocol="protocol") == "task"
    assert built == {"protocol": "protocol", "options": {"batch_size": 4, "cache": None, **expected}}



def test_no_mean_teacher_reads_false_and_its_absence_none():
    """``args.mean_teacher`` says what the run does: False with --no-mean-teacher (it once
    read True there), None without it (the task's default)."""
    from audiotask.cli.main import build_parser

    parser = build_parser()
    common = ["train", "--database", "db.yml", "--protocol", "X", "--task", "sed", "--output", "run"]
    assert parser.parse_args(common + ["--no-mean-teacher"]).mean_teacher is False
    assert parser.parse_args(common).mean_teacher is None


#: a command-line value for every task option of the registry, and the task it applies to
EVERY_TASK_OPTION = {
    "classes": ("sed", "a,b"), "resolution": ("sed", "frame"), "kind_proportions": ("sed", "strong=1"),
    "augmentation": ("sed", "none=true"), "mean_teacher": ("sed", None), "consistency_ramp_up": ("sed", "10"),
    "mixing": ("sed", "events=clips"), "select_by": ("sed", "loss"), "fold": ("classification", "1"),
    "noise": ("snr", "noise"), "snr_range": ("snr", "0,10"), "loss": ("snr", "mse"),
    "speakers_per_batch": ("embedding", "2"), "margin": ("embedding", "0.1"), "scale": ("embedding", "10"),
    "dimension": ("embedding", "8"), "max_speakers_per_chunk": ("diarization", "2"),
    "max_speakers_per_frame": ("diarization", "1"), "powerset": ("diarization", None),
}


@pytest.mark.parametrize("keyword", sorted(EVERY_TASK_OPTION))
def test_every_task_option_reaches_the_task(monkeypatch, tmp_path, keyword):
    """Each task option's flag lands in its constructor keyword. (--augmentation-option and
    --mixing-option were once parsed into argparse's default dests and silently ignored: the
    "plain recipe" of a benchmark then trained with mixup and FilterAugment.)"""
    from audiotask.cli import train
    from audiotask.tasks import registry

    assert set(EVERY_TASK_OPTION) == set(registry.task_options())
    task, value = EVERY_TASK_OPTION[keyword]
    flag = registry.task_options()[keyword].flag
    if keyword == "noise":
        (tmp_path / "noise").mkdir()
        value = str(tmp_path / "noise")
    if keyword == "mixing":
        (tmp_path / "clips").mkdir()
        value = f"events={tmp_path / 'clips'}"
    built = {}
    monkeypatch.setattr(registry.TaskEntry, "load", lambda entry: lambda protocol, **options: built.update(options))
    train.make_task(parse_train("--task", task, flag, *([] if value is None else [value])), protocol=None)
    assert keyword in built, f"{flag} did not reach the task's {keyword!r}"


def test_augmentation_none_reaches_the_task_as_no_augmentation(monkeypatch):
    from audiotask.augmentation.recipe import DetectionAugmentation
    from audiotask.cli import train
    from audiotask.tasks import registry

    built = {}
    monkeypatch.setattr(registry.TaskEntry, "load", lambda entry: lambda protocol, **options: built.update(options))
    train.make_task(parse_train("--augmentation-option", "none=true"), protocol=None)
    assert built["augmentation"] == DetectionAugmentation.none()
    train.make_task(parse_train("--augmentation-option", "mixup=0.25"), protocol=None)
    assert built["augmentation"].mixup == 0.25 and built["augmentation"].filter_augment

# overlap of the speakers in REFERENCE: [5, 6] (A, B), [7, 8] (B, C), [8.5, 9] (B, C) in
# clip, 2.5 s; none in other, whose two turns of A overlap, as do those of A in [3, 4) in clip
OSD_REFERENCE = """\
SPEAKER clip 1 0.0 4.0 <NA> <NA> A <NA> <NA>
SPEAKER clip 1 3.0 3.0 <NA> <NA> A <NA> <NA>
SPEAKER clip 1 5.0 3.0 <NA> <NA> B <NA> <NA>
SPEAKER clip 1 7.0 2.0 <NA> <NA> C <NA> <NA>
SPEAKER clip 1 8.5 1.0 <NA> <NA> B <NA> <NA>
SPEAKER other 1 0.0 2.0 <NA> <NA> A <NA> <NA>
SPEAKER other 1 1.0 2.0 <NA> <NA> A <NA> <NA>
"""
# detected: [3, 4] (false alarm 1 s: one speaker only), [5.5, 6.5] (0.5 s found, 0.5 s missed,
# 0.5 s false alarm), [7, 8] (found); [8.5, 9] missed (0.5 s); in other, [1, 2] (false alarm 1 s)
OSD_DETECTIONS = [("clip", 3.0, 4.0), ("clip", 5.5, 6.5), ("clip", 7.0, 8.0), ("other", 1.0, 2.0)]


def test_evaluate_osd_scores_detected_overlap_against_distinct_speakers(tmp_path, capsys):
    reference, rttm, tsv = tmp_path / "reference.rttm", tmp_path / "detections.rttm", tmp_path / "detections.tsv"
    durations = tmp_path / "durations.tsv"
    reference.write_text(OSD_REFERENCE)
    rttm.write_text("".join(f"SPEAKER {uri} 1 {onset} {offset - onset} <NA> <NA> overlap <NA> <NA>\n"
                            for uri, onset, offset in OSD_DETECTIONS))
    tsv.write_text("filename\tonset\toffset\tevent_label\n" + "".join(
        f"{uri}.wav\t{onset:.3f}\t{offset:.3f}\toverlap\n" for uri, onset, offset in OSD_DETECTIONS))
    durations.write_text("filename\tduration\nclip.wav\t10.0\nother.wav\t4.0\n")
    capsys.readouterr()
    for predictions in (rttm, tsv):
        assert main(["evaluate", "--task", "osd", str(reference), str(predictions), "--durations", str(durations),
                     "--json"]) == 0
        results = json.loads(capsys.readouterr().out)
        assert results["components"] == pytest.approx({"miss": 1.0, "false alarm": 2.5, "total": 2.5})
        assert results["detection_error_rate"] == pytest.approx((1.0 + 2.5) / 2.5)
        assert results["per_file"]["other"]["false alarm"] == pytest.approx(1.0)
        assert results["per_file"]["other"]["total"] == 0.0
    # vad on the same files: every turn is speech, the detections are mostly inside it
    assert main(["evaluate", "--task", "vad", str(reference), str(rttm), "--durations", str(durations), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["components"]["total"] == pytest.approx(9.5 + 3.0)


def test_apply_labels_a_binary_frame_models_events_with_its_class(tmp_path):
    import soundfile
    import torch

    from audiotask.core.specifications import Problem, Resolution, Specifications
    from audiotask.models import Debug

    torch.manual_seed(0)
    model = Debug(hidden_size=8)
    model.attach_specifications(Specifications(Problem.BINARY_CLASSIFICATION, Resolution.FRAME, 2.0, classes=["overlap"]))
    model.save_pretrained(tmp_path / "model")
    soundfile.write(tmp_path / "clip.wav", (0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32), 16000)
    # every score is above 0: one event over the whole file
    common = [str(tmp_path / "model"), str(tmp_path / "clip.wav"), "--onset", "0", "--no-progress"]
    assert main(["apply", *common, "--output", str(tmp_path / "tsv")]) == 0
    rows = read_tsv(tmp_path / "tsv" / "detections.tsv")[1:]
    assert [(row[0], float(row[1]), row[3]) for row in rows] == [("clip.wav", 0.0, "overlap")]
    assert float(rows[0][2]) == pytest.approx(3.0, abs=0.02)
    assert main(["apply", *common, "--output", str(tmp_path / "rttm"), "--format", "rttm"]) == 0
    fields = (tmp_path / "rttm" / "detections.rttm").read_text().split()
    assert (fields[1], fields[7]) == ("clip", "overlap")


@pytest.mark.parametrize("task, options, problem, classes", [
    ("osd", [], "binary_classification", ["overlap"]),
    ("multi-label-segmentation", ["--classes", "Dog,Speech"], "multi_label_classification", ["Dog", "Speech"]),
])
def test_train_builds_every_registered_frame_task(workdir, tmp_path, task, options, problem, classes):
    from audiotask.core.model import Model

    root = workdir["root"]
    arguments = train_arguments(root, "frame", tmp_path / "run")
    arguments[arguments.index("--task") + 1] = task
    del arguments[arguments.index("--resolution"):arguments.index("--resolution") + 2]  # sed only
    assert main([*arguments, *options]) == 0
    specifications = Model.from_pretrained(tmp_path / "run" / "model").specifications
    assert (specifications.problem.value, specifications.resolution.value) == (problem, "frame")
    assert specifications.classes == classes and specifications.duration == 2.0


def test_osd_trained_applied_and_evaluated_from_the_command_line(workdir, tmp_path, capsys):
    root = workdir["root"]
    arguments = train_arguments(root, "frame", tmp_path / "run")
    arguments[arguments.index("--task") + 1] = "osd"
    del arguments[arguments.index("--resolution"):arguments.index("--resolution") + 2]
    assert main(arguments) == 0
    # a low threshold: the barely trained model still detects some overlap
    assert main(["apply", str(tmp_path / "run" / "model"), str(root / "audio-test"), "--output", str(tmp_path / "out"),
                 "--onset", "0.05", "--format", "rttm", "--no-progress"]) == 0
    lines = (tmp_path / "out" / "detections.rttm").read_text().splitlines()
    assert lines and {line.split()[7] for line in lines} == {"overlap"}
    capsys.readouterr()
    # the generated events of distinct classes stand for speakers: the DCASE TSV is the reference
    assert main(["evaluate", "--task", "osd", str(workdir["reference"]), str(tmp_path / "out" / "detections.rttm"),
                 "--durations", str(workdir["durations"]), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert set(results["per_file"]) == {"test00", "test01", "test02"}
    # the overlap of the reference, counted independently on a 1-ms grid
    rows = read_tsv(workdir["reference"])[1:]
    grid = np.arange(0.0, DURATION, 0.001) + 0.0005
    overlap = 0.0
    for filename in {row[0] for row in rows}:
        active = [(grid >= float(onset)) & (grid < float(offset)) for name, onset, offset, _ in rows if name == filename]
        labels = [label for name, _, _, label in rows if name == filename]
        distinct = sum(np.any([a for a, l in zip(active, labels) if l == label], axis=0) for label in set(labels))
        overlap += 0.001 * np.count_nonzero(distinct >= 2)
    assert overlap > 0.0
    assert results["components"]["total"] == pytest.approx(overlap, abs=0.01)


def evaluate_by_counting(args):
    """The evaluation of the registry entry added by the test below: counts its inputs' lines."""
    return {"lines": len(Path(args.reference).read_text().splitlines()), "table": "counted"}


def test_a_task_entry_alone_gives_its_task_an_evaluation_its_options_and_its_table(monkeypatch, tmp_path, capsys):
    """The registry entry owns a task's faces: adding one (nothing else) makes `evaluate
    --task NAME` run its evaluation, take only its options and print its table."""
    from audiotask.tasks import registry

    entry = registry.TaskEntry("line-counting", "json:JSONDecoder", "counts lines", aliases=("lines",),
                               evaluation=f"{__name__}:evaluate_by_counting",
                               evaluation_table="json:dumps", evaluation_options=("fold",))
    monkeypatch.setattr(registry, "TASKS", (*registry.TASKS, entry))
    reference, predictions = tmp_path / "reference.txt", tmp_path / "predictions.txt"
    reference.write_text("a\nb\nc\n")
    predictions.write_text("")
    assert main(["evaluate", "--task", "lines", str(reference), str(predictions), "--fold", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"lines": 3, "table": "counted"}
    assert main(["evaluate", "--task", "lines", str(reference), str(predictions), "--uem", "x.uem"]) == 2
    assert "--uem does not apply to --task lines" in capsys.readouterr().err


def test_a_task_entry_alone_gives_train_its_own_option(monkeypatch):
    """An entry declaring an option of its own (nothing else changed) makes `train` offer it,
    listed under its section with the tasks that take it, read by the entry's reader, and
    refused for the other tasks."""
    from audiotask.cli import train
    from audiotask.tasks import registry

    window = registry.TaskOption("window", "--window", "seconds of context", group="line counting", read=float)
    entry = registry.TaskEntry("line-counting", "json:JSONDecoder", "counts lines", aliases=("lines",),
                               options=(window, registry.CLASSES))
    monkeypatch.setattr(registry, "TASKS", (*registry.TASKS, entry))
    action = option_action("train", "window")
    assert action.option_strings == ["--window"] and action.help == "lines only: seconds of context"
    assert "lines" in option_action("train", "classes").help
    built = {}
    monkeypatch.setattr(registry.TaskEntry, "load", lambda entry: lambda protocol, **options: built.update(options))
    train.make_task(parse_train("--task", "lines", "--window", "2.5", "--classes", "a,b"), protocol=None)
    assert built["window"] == 2.5 and built["classes"] == ["a", "b"]
    with pytest.raises(CommandError, match="--window applies to --task lines only, not to --task sed"):
        train.make_task(parse_train("--task", "sed", "--window", "2.5"), protocol=None)


def test_one_keyword_declared_two_ways_is_refused():
    from audiotask.tasks import registry

    other = registry.TaskEntry("x", "json:JSONDecoder", "x", options=(registry.TaskOption("classes", "--labels", "?"),))
    with pytest.raises(RuntimeError, match="'classes' is declared twice"):
        registry.task_options((*registry.TASKS, other))
