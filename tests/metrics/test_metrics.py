"""Sound event and voice activity metrics: hand-computed cases, and DCASE's published values."""

import json
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyannote.core import Annotation, Segment, SlidingWindow, SlidingWindowFeature, Timeline

from audiotask.metrics import (
    detection_error_rate,
    evaluate_sound_events,
    event_based_f1,
    events_to_scores,
    format_table,
    intersection_based_f1,
    merge_connected,
    operating_points_to_scores,
    psds,
    psds_from_operating_points,
    segment_based_f1,
)

# vendored from ../shared/data/desed-golden (see its README.md), so that a clone runs the golden tests
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "desed-golden"

# two 4-s files: two Dog events in a.wav, one Cat event in b.wav
GROUND_TRUTH = {"a.wav": [(0.0, 1.0, "Dog"), (2.0, 3.0, "Dog")], "b.wav": [(1.0, 2.0, "Cat")]}
DURATIONS = {"a.wav": 4.0, "b.wav": 4.0}
F1_METRICS = [
    lambda d, g: event_based_f1(d, g, DURATIONS),
    lambda d, g: segment_based_f1(d, g, DURATIONS),
    lambda d, g: intersection_based_f1(d, g, DURATIONS),
]


def test_sed_scores_eval_scores_our_dataframes_under_the_installed_pandas():
    """sed_scores_eval 0.0.4 writes into DataFrame buffers, which pandas 3 makes read-only
    ("buffer source array is read-only"); pyproject pins pandas < 3. What counts is that
    scoring works with the pandas installed: score a file through sed_scores_eval."""
    import sed_scores_eval
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    timestamps = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    scores = {"a": create_score_dataframe(
        np.array([[0.9, 0.1], [0.2, 0.1], [0.8, 0.1], [0.1, 0.1]]), timestamps, ["Dog", "Cat"])}
    f1, *_ = sed_scores_eval.collar_based.fscore(
        scores, {"a": [(0.0, 1.0, "Dog"), (2.0, 3.0, "Dog"), (3.0, 4.0, "Cat")]}, threshold=0.5, onset_collar=0.2,
        offset_collar=0.2, offset_collar_rate=0.2)
    assert f1["Dog"] == 1.0 and f1["Cat"] == 0.0


# --- detections as binary scores ---------------------------------------------------------


def test_events_to_scores_cells_at_event_boundaries():
    frame = events_to_scores([(1.0, 2.0, "Dog"), (1.5, 3.0, "Cat"), (0.5, 1.0, "Bird")], end=4.0, classes=["Cat", "Dog"])
    np.testing.assert_allclose(frame["onset"], [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    np.testing.assert_allclose(frame["offset"], [0.5, 1.0, 1.5, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(frame["Cat"], [0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(frame["Dog"], [0, 0, 1, 1, 0, 0])


def test_events_to_scores_refuses_bad_events_naming_the_file():
    with pytest.raises(ValueError, match="clip.wav"):
        events_to_scores([(2.0, 1.0, "Dog")], end=4.0, classes=["Dog"], name="clip.wav")


# --- F1 scores ---------------------------------------------------------------------------


@pytest.mark.parametrize("metric", F1_METRICS, ids=["event", "segment", "intersection"])
def test_perfect_detection_scores_one(metric):
    result = metric(GROUND_TRUTH, GROUND_TRUTH)
    assert result["macro"]["f1"] == pytest.approx(1.0)
    assert result["micro"]["f1"] == pytest.approx(1.0)
    assert {name: row["f1"] for name, row in result["per_class"].items()} == {"Cat": 1.0, "Dog": 1.0}


@pytest.mark.parametrize("metric", F1_METRICS, ids=["event", "segment", "intersection"])
def test_one_of_two_events_missed(metric):
    detections = {"a.wav": [(0.0, 1.0, "Dog")], "b.wav": [(1.0, 2.0, "Cat")]}
    result = metric(detections, GROUND_TRUTH)
    dog = result["per_class"]["Dog"]
    assert (dog["precision"], dog["recall"], dog["f1"]) == pytest.approx((1.0, 0.5, 2 / 3))
    assert result["macro"]["f1"] == pytest.approx((1.0 + 2 / 3) / 2)
    # micro: 2 of 3 reference events (segments) found, no false positive
    assert result["micro"]["f1"] == pytest.approx(0.8)


def test_event_based_collars():
    truth = {"a.wav": [(1.0, 6.0, "Dog")]}
    within = {"a.wav": [(1.15, 5.1, "Dog")]}  # onset 150 ms off; offset 0.9 s <= 20 % of 5 s
    late = {"a.wav": [(1.25, 6.0, "Dog")]}  # onset 250 ms off
    assert event_based_f1(within, truth)["macro"]["f1"] == pytest.approx(1.0)
    assert event_based_f1(late, truth)["macro"]["f1"] == pytest.approx(0.0)
    assert event_based_f1(late, truth, onset_collar=0.3)["macro"]["f1"] == pytest.approx(1.0)
    strict = event_based_f1(within, truth, offset_collar_rate=0.0)
    assert strict["macro"]["f1"] == pytest.approx(0.0)
    assert strict["per_class"]["Dog"] == {"f1": 0.0, "precision": 0.0, "recall": 0.0, "tp": 0, "fp": 1, "n_ref": 1}
    assert strict["settings"] == {"onset_collar": 0.2, "offset_collar": 0.2, "offset_collar_rate": 0.0}


def test_macro_and_micro_averages_differ_as_expected():
    truth = {"a.wav": [(0.0, 1.0, "Cat"), (1.0, 2.0, "Dog"), (3.0, 4.0, "Dog"), (5.0, 6.0, "Dog")]}
    detections = {"a.wav": [(0.0, 1.0, "Cat"), (1.0, 2.0, "Dog")]}
    result = event_based_f1(detections, truth)
    assert result["per_class"]["Dog"]["f1"] == pytest.approx(0.5)  # P = 1, R = 1/3
    assert result["macro"]["f1"] == pytest.approx(0.75)
    assert result["micro"]["f1"] == pytest.approx(2 / 3)  # P = 1, R = 2/4


def test_segment_based_counts_one_second_segments():
    truth = {"a.wav": [(0.0, 2.5, "Dog")]}  # segments 0, 1, 2 of 4
    detections = {"a.wav": [(1.5, 3.2, "Dog")]}  # segments 1, 2, 3
    result = segment_based_f1(detections, truth, {"a.wav": 4.0})
    dog = result["per_class"]["Dog"]
    assert (dog["tp"], dog["fp"], dog["n_ref"]) == (2, 1, 3)
    assert dog["f1"] == pytest.approx(2 / 3)
    coarse = segment_based_f1(detections, truth, {"a.wav": 4.0}, segment_length=2.0)
    assert coarse["per_class"]["Dog"]["f1"] == pytest.approx(1.0)  # both 2-s segments hit


def test_intersection_based_criteria():
    truth = {"a.wav": [(0.0, 2.0, "Dog")]}
    half = {"a.wav": [(1.0, 2.0, "Dog")]}  # covers 50 % of the reference: gtc = 0.5 passes
    assert intersection_based_f1(half, truth)["macro"]["f1"] == pytest.approx(1.0)
    assert intersection_based_f1(half, truth, gtc=0.6)["per_class"]["Dog"]["recall"] == pytest.approx(0.0)
    spill = {"a.wav": [(1.0, 4.0, "Dog")]}  # a third of it on the reference: fails dtc = 0.5
    assert intersection_based_f1(spill, truth)["per_class"]["Dog"]["fp"] == 1
    assert intersection_based_f1(spill, truth, dtc=0.3)["macro"]["f1"] == pytest.approx(1.0)


def test_files_are_matched_by_filename_or_uri():
    detections = {"a": [(0.0, 1.0, "Dog"), (2.0, 3.0, "Dog")], "b": [(1.0, 2.0, "Cat")]}
    durations = {"a": 4.0, "b.wav": 4.0}
    assert event_based_f1(detections, GROUND_TRUTH, durations)["macro"]["f1"] == pytest.approx(1.0)
    assert segment_based_f1(detections, GROUND_TRUTH, durations)["macro"]["f1"] == pytest.approx(1.0)


def test_unknown_files_are_errors_naming_them():
    with pytest.raises(ValueError, match="c.wav"):
        event_based_f1({"c.wav": [(0.0, 1.0, "Dog")]}, GROUND_TRUTH)
    with pytest.raises(ValueError, match="b.wav"):
        segment_based_f1(GROUND_TRUTH, GROUND_TRUTH, {"a.wav": 4.0})


def test_files_without_reference_events_count_false_positives():
    durations = {**DURATIONS, "quiet.wav": 4.0}
    detections = {**GROUND_TRUTH, "quiet.wav": [(0.0, 1.0, "Cat")]}
    cat = event_based_f1(detections, GROUND_TRUTH, durations)["per_class"]["Cat"]
    assert (cat["tp"], cat["fp"], cat["precision"]) == (1, 1, pytest.approx(0.5))


def test_ground_truth_and_durations_from_files(tmp_path):
    truth = tmp_path / "truth.tsv"
    truth.write_text("filename\tonset\toffset\tevent_label\n" + "".join(
        f"{name}\t{on}\t{off}\t{label}\n" for name, events in GROUND_TRUTH.items() for on, off, label in events
    ))
    durations = tmp_path / "durations.tsv"
    durations.write_text("filename\tduration\na.wav\t4.0\nb.wav\t4.0\n")
    detections = {"a.wav": [(0.0, 1.0, "Dog")], "b.wav": [(1.0, 2.0, "Cat")]}
    assert segment_based_f1(detections, truth, durations)["micro"]["f1"] == pytest.approx(0.8)


def test_overlapping_reference_events_of_a_class_are_merged_with_a_warning():
    events = [(0.0, 2.0, "Dog"), (1.0, 3.0, "Dog"), (3.0, 4.0, "Dog"), (5.0, 6.0, "Dog"), (1.0, 2.0, "Cat")]
    assert merge_connected(events) == [(1.0, 2.0, "Cat"), (0.0, 4.0, "Dog"), (5.0, 6.0, "Dog")]
    with pytest.warns(UserWarning, match="merged in 1 file"):
        result = event_based_f1({"a.wav": [(0.0, 4.0, "Dog"), (5.0, 6.0, "Dog")]}, {"a.wav": events})
    assert result["per_class"]["Dog"]["n_ref"] == 2
    assert result["per_class"]["Dog"]["f1"] == pytest.approx(1.0)


def test_classes_without_reference_events_are_left_out_with_a_warning():
    detections = {**GROUND_TRUTH, "b.wav": [(1.0, 2.0, "Cat"), (0.0, 0.5, "Bird")]}
    with pytest.warns(UserWarning, match="Bird"):
        result = event_based_f1(detections, GROUND_TRUTH)
    assert sorted(result["per_class"]) == ["Cat", "Dog"]
    assert result["macro"]["f1"] == pytest.approx(1.0)


# --- PSDS --------------------------------------------------------------------------------


def _scores(values_by_file, classes=("Cat", "Dog"), step=0.5):
    """Frame scores keyed by filename from ``(frames, classes)`` lists."""
    frames = SlidingWindow(start=0.0, duration=step, step=step)
    return {name: SlidingWindowFeature(np.array(v, dtype=float), frames, labels=list(classes))
            for name, v in values_by_file.items()}


# 0.5-s frames over 4 s: Dog on frames 0-1 and 4-5 of a.wav, Cat on frames 2-3 of b.wav
PERFECT = _scores({
    "a.wav": [[0, 1], [0, 1], [0, 0], [0, 0], [0, 1], [0, 1], [0, 0], [0, 0]],
    "b.wav": [[0, 0], [0, 0], [1, 0], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0]],
})


@pytest.mark.parametrize("scenario", [1, 2])
def test_psds_of_perfect_scores_is_one(scenario):
    result = psds(PERFECT, GROUND_TRUTH, DURATIONS, scenario=scenario)
    assert result["psds"] == pytest.approx(1.0)
    assert result["per_class"] == {"Cat": pytest.approx(1.0), "Dog": pytest.approx(1.0)}


def test_psds_when_half_of_a_class_is_never_detected():
    # one of the two Dog events scores 0 everywhere: Dog's TPR is 0.5 at every eFPR
    scores = _scores({
        "a.wav": [[0, 1], [0, 1], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0], [0, 0]],
        "b.wav": [[0, 0], [0, 0], [1, 0], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0]],
    })
    result = psds(scores, GROUND_TRUTH, DURATIONS, scenario=1)
    assert result["per_class"] == {"Cat": pytest.approx(1.0), "Dog": pytest.approx(0.5)}
    # alpha_st = 1: mean TPR 0.75 minus its standard deviation across classes 0.25
    assert result["psds"] == pytest.approx(0.5)
    assert result["settings"]["dtc_threshold"] == 0.7


def test_psds_from_a_folder_and_with_an_unknown_scenario(tmp_path):
    from audiotask.inference.formats import write_scores

    write_scores(tmp_path / "scores", PERFECT)
    assert psds(tmp_path / "scores", GROUND_TRUTH, DURATIONS, scenario=2)["psds"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="scenario"):
        psds(PERFECT, GROUND_TRUTH, DURATIONS, scenario=3)
    with pytest.raises(ValueError, match="b.wav"):
        psds({"a.wav": PERFECT["a.wav"]}, GROUND_TRUTH, DURATIONS, scenario=1)


def test_operating_points_become_equivalent_scores():
    points = {0.3: GROUND_TRUTH, 0.7: {"a.wav": [(0.0, 1.0, "Dog")]}}
    frames = operating_points_to_scores(points, ends=DURATIONS, classes=["Cat", "Dog"])
    np.testing.assert_allclose(frames["a.wav"]["onset"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(frames["a.wav"]["Dog"], [0.7, 0.0, 0.3, 0.0])
    np.testing.assert_allclose(frames["b.wav"]["Cat"], [0.0, 0.3, 0.0])
    with pytest.raises(ValueError, match="not nested"):
        operating_points_to_scores({0.3: {"a.wav": [(0.0, 1.0, "Dog")]}, 0.7: GROUND_TRUTH},
                                   ends=DURATIONS, classes=["Cat", "Dog"])


def test_psds_from_operating_points_equals_psds_of_their_scores():
    points = {0.3: GROUND_TRUTH, 0.7: {"a.wav": [(0.0, 1.0, "Dog")]}}
    frames = operating_points_to_scores(points, ends=DURATIONS, classes=["Cat", "Dog"])
    for scenario in (1, 2):
        expected = psds(frames, GROUND_TRUTH, DURATIONS, scenario=scenario)
        assert psds_from_operating_points(points, GROUND_TRUTH, DURATIONS, scenario=scenario) == expected


# --- all at once -------------------------------------------------------------------------


def test_evaluate_sound_events_gives_every_metric_its_inputs_allow():
    results = evaluate_sound_events(GROUND_TRUTH, DURATIONS, detections=GROUND_TRUTH, scores=PERFECT)
    for key in ("psds1", "psds2", "event_f1", "segment_f1", "intersection_f1", "event_f1_micro"):
        assert results[key] == pytest.approx(1.0), key
    json.dumps(results)  # plain floats and dicts
    only_scores = evaluate_sound_events(GROUND_TRUTH, DURATIONS, scores=PERFECT)
    assert "event_f1" not in only_scores and only_scores["psds1"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="nothing to evaluate"):
        evaluate_sound_events(GROUND_TRUTH, DURATIONS)


def test_format_table_rows_in_percent():
    detections = {"a.wav": [(0.0, 1.0, "Dog")], "b.wav": [(1.0, 2.0, "Cat")]}
    table = format_table(evaluate_sound_events(GROUND_TRUTH, DURATIONS, detections=detections, scores=PERFECT))
    lines = table.splitlines()
    assert lines[0].split() == ["class", "(%)", "event", "F1", "segment", "F1", "intersection", "F1", "PSDS1", "PSDS2"]
    rows = {line[:13].strip(): line[13:].split() for line in lines[2:]}
    assert rows["PSDS"] == ["-", "-", "-", "100.00", "100.00"]
    assert rows["macro average"] == ["83.33", "83.33", "83.33", "-", "-"]
    assert rows["micro average"] == ["80.00", "80.00", "80.00", "-", "-"]
    assert rows["Dog"] == ["66.67", "66.67", "66.67", "100.00", "100.00"]


# --- voice activity ----------------------------------------------------------------------


def _speech(uri, *segments):
    annotation = Annotation(uri=uri)
    for start, end in segments:
        annotation[Segment(start, end)] = "speech"
    return annotation


def test_detection_error_rate_total_per_file_and_components():
    references = {"a": _speech("a", (0, 2)), "b": _speech("b", (0, 2))}
    hypotheses = {"a": _speech("a", (1, 3)), "b": _speech("b", (0, 2))}
    result = detection_error_rate(references, hypotheses, uems={"a": Timeline([Segment(0, 3)])})
    assert result["per_file"]["a"] == {"detection_error_rate": 1.0, "miss": 1.0, "false alarm": 1.0, "total": 2.0}
    assert result["per_file"]["b"]["detection_error_rate"] == 0.0
    assert result["components"] == {"miss": 1.0, "false alarm": 1.0, "total": 4.0}
    assert result["detection_error_rate"] == pytest.approx(0.5)
    assert "TOTAL" in format_table(result) and "50.00" in format_table(result)


def test_detection_error_rate_missing_hypothesis_and_unknown_file():
    result = detection_error_rate({"a": _speech("a", (0, 2))}, {})
    assert result["detection_error_rate"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zzz"):
        detection_error_rate({"a": _speech("a", (0, 2))}, {"zzz": _speech("zzz", (0, 1))})


# --- DCASE 2021 baseline on DESED validation: published values ---------------------------


@pytest.fixture(scope="module")
def golden():
    table = pd.read_csv(GOLDEN / "baseline2021-student" / "predictions0.5.csv")
    detections = {}
    for name, onset, offset, label in zip(table["filename"], table["onset"], table["offset"], table["event_label"]):
        detections.setdefault(name, []).append((float(onset), float(offset), label))
    return {"detections": detections, "truth": GOLDEN / "validation.tsv",
            "durations": GOLDEN / "validation_durations.tsv"}


@pytest.mark.slow
def test_golden_event_based_f1(golden):
    result = event_based_f1(golden["detections"], golden["truth"], golden["durations"])
    # sed_eval's report says 39.83 % (39.87 % with current sed_eval); sed_scores_eval gives 39.90 %
    assert 100 * result["macro"]["f1"] == pytest.approx(39.83, abs=0.1)
    assert 100 * result["micro"]["f1"] == pytest.approx(40.92, abs=0.1)


@pytest.mark.slow
def test_golden_segment_based_f1(golden):
    result = segment_based_f1(golden["detections"], golden["truth"], golden["durations"])
    assert 100 * result["macro"]["f1"] == pytest.approx(69.35, abs=0.05)
    assert 100 * result["micro"]["f1"] == pytest.approx(75.47, abs=0.05)


@pytest.mark.slow
def test_golden_intersection_based_f1(golden):
    result = intersection_based_f1(golden["detections"], golden["truth"], golden["durations"])
    assert 100 * result["macro"]["f1"] == pytest.approx(63.74, abs=0.05)


@pytest.mark.slow
def test_golden_psds1_from_operating_points(golden, tmp_path):
    # packed: its 50 TSV files weigh 9.6 MB, 0.6 MB once compressed
    with tarfile.open(GOLDEN / "baseline2021-student" / "predictions_operating_points.tar.xz") as archive:
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / "predictions_operating_points"
    points = {float(path.stem.rsplit("_", 1)[1]): path for path in folder.glob("predictions_th_*.tsv")}
    assert len(points) == 50
    result = psds_from_operating_points(points, golden["truth"], golden["durations"], scenario=1)
    assert result["psds"] == pytest.approx(0.334, abs=0.001)
