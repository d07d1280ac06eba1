"""Class-wise post-processing tuned on development scores: search, storage, and the command line."""

import json

import numpy as np
import pytest
import torch
from pyannote.core import SlidingWindow, SlidingWindowFeature

from audiotask.cli.main import main
from audiotask.inference.postprocessing import scores_to_events
from audiotask.inference.tuned_postprocessing import FILENAME, PostProcessing
from audiotask.metrics.tuning import fscores, tune_postprocessing

STEP = 0.1  # seconds per frame of the synthetic scores
FRAMES = 100  # 10-s files
CLASSES = ["A", "B"]
#: per file: events of A and B, on frame edges
EVENTS = {
    "one.wav": [(1.0, 2.0, "A"), (5.0, 6.5, "A"), (2.0, 3.0, "B"), (7.0, 8.0, "B")],
    "two.wav": [(0.5, 1.5, "A"), (3.0, 4.0, "B"), (6.0, 8.0, "B")],
    "three.wav": [(4.0, 5.5, "A")],  # a file without B
}
#: one-frame B spikes outside B's events: scored above B's events, no threshold removes them
SPIKES = {"one.wav": [15, 50, 90], "two.wav": [20, 55], "three.wav": [10, 70]}


def synthetic_scores():
    """Scores that match EVENTS: A is 0.3 inside its events and 0.1 outside; B is 0.6 inside,
    0.05 outside, and 0.9 on the one-frame SPIKES."""
    scores = {}
    for name, events in EVENTS.items():
        data = np.zeros((FRAMES, 2), dtype=np.float32)
        data[:, 0], data[:, 1] = 0.1, 0.05
        for onset, offset, label in events:
            value = 0.3 if label == "A" else 0.6
            data[round(onset / STEP) : round(offset / STEP), CLASSES.index(label)] = value
        data[SPIKES[name], 1] = 0.9
        window = SlidingWindow(start=0.0, duration=STEP, step=STEP)
        scores[name] = SlidingWindowFeature(data, window, labels=CLASSES)
    return scores


DURATIONS = {name: FRAMES * STEP for name in EVENTS}


@pytest.fixture(scope="module")
def tuned():
    return tune_postprocessing(synthetic_scores(), EVENTS, DURATIONS, classes=CLASSES)


def test_a_class_separated_by_a_threshold_is_tuned_between_its_two_levels(tuned):
    a = CLASSES.index("A")
    assert 0.1 < tuned.onset[a] < 0.3
    assert tuned.median_filter_length[a] == 0.0  # the first length tried, as good as any
    assert tuned.scores[a] == pytest.approx(1.0)


def test_one_frame_spikes_are_tuned_away_by_a_median_filter(tuned):
    b = CLASSES.index("B")
    assert tuned.median_filter_length[b] > 0.0
    assert 0.05 < tuned.onset[b] < 0.6
    assert tuned.scores[b] == pytest.approx(1.0)
    # without a filter, no threshold reaches F1 = 1: every threshold that keeps B's events keeps the spikes
    unfiltered = tune_postprocessing(synthetic_scores(), EVENTS, DURATIONS, classes=CLASSES, median_filter_lengths=[0.0])
    assert unfiltered.scores[b] < 0.9


def test_tuned_values_give_back_the_reference_events_through_scores_to_events(tuned):
    for name, scores in synthetic_scores().items():
        events = scores_to_events(scores, end=DURATIONS[name], **tuned.kwargs())
        assert events == sorted(EVENTS[name], key=lambda event: (event[0], event[2]))


def test_fscores_at_fixed_settings_agree_with_the_tuning(tuned):
    scores = synthetic_scores()
    at_tuned = fscores(scores, EVENTS, DURATIONS, classes=CLASSES, onset=tuned.onset,
                       median_filter_length=tuned.median_filter_length)
    assert at_tuned == pytest.approx(dict(zip(CLASSES, tuned.scores)))
    # 0.5 is above every A score: nothing of A is detected
    at_half = fscores(scores, EVENTS, DURATIONS, classes=CLASSES, onset=0.5, median_filter_length=0.45)
    assert at_half["A"] == 0.0 and at_half["B"] == pytest.approx(1.0)


def test_event_f1_tuning_and_reference_from_a_tsv_file(tmp_path):
    from audiotask.inference.formats import write_events_tsv

    write_events_tsv(tmp_path / "reference.tsv", EVENTS)
    tuned = tune_postprocessing(synthetic_scores(), tmp_path / "reference.tsv", DURATIONS, classes=CLASSES,
                                metric="event_f1")
    assert tuned.metric == "event_f1" and tuned.settings["onset_collar"] == 0.2
    assert tuned.scores == pytest.approx([1.0, 1.0])


def test_a_class_without_development_events_keeps_the_untuned_values():
    scores = {name: SlidingWindowFeature(np.c_[s.data, np.full(FRAMES, 0.7)], s.sliding_window, labels=[*CLASSES, "C"])
              for name, s in synthetic_scores().items()}
    with pytest.warns(UserWarning, match="without development events.*C"):
        tuned = tune_postprocessing(scores, EVENTS, DURATIONS, classes=[*CLASSES, "C"])
    assert (tuned.onset[2], tuned.median_filter_length[2], tuned.scores[2]) == (0.5, 0.0, None)


def test_reference_labels_the_model_lacks_are_refused():
    events = {**EVENTS, "three.wav": [(4.0, 5.5, "Z")]}
    with pytest.raises(ValueError, match="does not score: Z"):
        tune_postprocessing(synthetic_scores(), events, DURATIONS, classes=CLASSES)


def saved_model(directory, classes=("Dog", "Cat")):
    from audiotask.core.specifications import Problem, Resolution, Specifications
    from audiotask.models import Debug

    torch.manual_seed(0)
    model = Debug(hidden_size=4)
    model.attach_specifications(Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.FRAME, 2.0,
                                               classes=list(classes)))
    model.save_pretrained(directory)
    return directory


def test_save_and_load_round_trip(tmp_path):
    model = saved_model(tmp_path / "model")
    assert PostProcessing.load(model) is None
    tuned = PostProcessing(classes=["Dog", "Cat"], onset=[0.31, 0.72], median_filter_length=[0.15, 0.0],
                           metric="event_f1", scores=[0.5, None], settings={"onset_collar": 0.2})
    path = tuned.save(model)
    assert path == model / FILENAME and sorted(p.name for p in model.iterdir()) == [
        "audiotask.json", "model.safetensors", FILENAME]  # no temporary file left
    assert PostProcessing.load(model) == tuned
    assert tuned.kwargs() == {"onset": [0.31, 0.72], "median_filter_length": [0.15, 0.0]}


def test_class_mismatch_is_refused_naming_the_file(tmp_path):
    model = saved_model(tmp_path / "model")
    other = PostProcessing(classes=["Cat", "Dog"], onset=[0.3, 0.7], median_filter_length=[0.0, 0.0])
    with pytest.raises(ValueError, match="postprocessing.json was tuned for the classes"):
        other.save(model)
    (model / FILENAME).write_text(json.dumps(other.to_dict()))
    with pytest.raises(ValueError, match=f"{model / FILENAME} was tuned for the classes .*'Cat', 'Dog'"):
        PostProcessing.load(model)
    (model / FILENAME).write_text("{")
    with pytest.raises(ValueError, match=f"{model / FILENAME}: invalid JSON"):
        PostProcessing.load(model)


# ---- the command line ------------------------------------------------------------------
def test_tune_then_apply_uses_the_tuned_values_unless_told_not_to(tmp_path, capsys):
    from audiotask.testing.dummies import TONES, make_sound_event_protocol

    database = make_sound_event_protocol(tmp_path / "data", name="Tune", files_per_subset=(1, 2, 1), seed=3)
    model = saved_model(tmp_path / "model", classes=sorted(TONES))
    tune = ["tune", str(model), "--database", str(database), "--protocol", "Tune.SpeakerDiarization.Events",
            "--median-filter-lengths", "0,0.3", "--no-progress"]
    assert main(tune) == 0
    table = capsys.readouterr().out
    assert "macro mean" in table and all(name in table for name in TONES)
    saved = json.loads((model / FILENAME).read_text())
    assert saved["classes"] == sorted(TONES) and len(saved["onset"]) == len(TONES)
    assert set(saved["median_filter_length"]) <= {0.0, 0.3}

    audio = tmp_path / "data" / "audio" / "test00.wav"
    assert main(["apply", str(model), str(audio), "--output", str(tmp_path / "tuned"), "--no-progress"]) == 0
    assert f"class-wise thresholds and median filters of {model / FILENAME}" in capsys.readouterr().out
    assert main(["apply", str(model), str(audio), "--output", str(tmp_path / "untuned"), "--no-tuned",
                 "--no-progress"]) == 0
    assert "post-processing" not in capsys.readouterr().out
    assert main(["apply", str(model), str(audio), "--output", str(tmp_path / "given"), "--onset", "0.5",
                 "--no-progress"]) == 0
    assert "--onset given" in capsys.readouterr().out
    assert (tmp_path / "given" / "detections.tsv").read_text() == (tmp_path / "untuned" / "detections.tsv").read_text()

    from audiotask.inference.formats import read_events_tsv
    from audiotask.inference.inference import Inference

    scores = Inference(model)(str(audio))
    expected = scores_to_events(scores, end=6.0, **PostProcessing.load(model).kwargs())
    assert expected  # the untrained model's scores cross its tuned thresholds
    detected = read_events_tsv(tmp_path / "tuned" / "detections.tsv").get("test00.wav", [])
    assert detected == [(round(on, 3), round(off, 3), label) for on, off, label in expected]


def test_tune_keeps_going_past_a_file_that_fails_and_names_it(tmp_path, capsys):
    from audiotask.testing.dummies import TONES, make_sound_event_protocol

    database = make_sound_event_protocol(tmp_path / "data", name="Broken", files_per_subset=(1, 2, 1), seed=3)
    broken = tmp_path / "data" / "audio" / "development01.wav"
    broken.write_bytes(b"not audio")
    model = saved_model(tmp_path / "model", classes=sorted(TONES))
    tune = ["tune", str(model), "--database", str(database), "--protocol", "Broken.SpeakerDiarization.Events",
            "--median-filter-lengths", "0", "--no-progress"]
    assert main(tune) == 1
    errors = capsys.readouterr().err
    assert "audiotask tune: failed:" in errors and str(broken) in errors and "1 of 2 files failed" in errors
    assert PostProcessing.load(model) is not None  # tuned on the other file


def test_tune_refuses_bad_lengths_and_checkpoints_in_one_line(tmp_path, capsys):
    model = saved_model(tmp_path / "model")
    base = ["tune", str(model), "--protocol", "X.SpeakerDiarization.Y"]
    assert main([*base, "--median-filter-lengths", "0,-1"]) == 2
    assert main(["tune", str(tmp_path / "model.ckpt"), "--protocol", "X.SpeakerDiarization.Y"]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2 and "--median-filter-lengths" in errors[0] and "not a model folder" in errors[1]
