"""`audiotask evaluate` (sed) counts what it is given: a predicted class the reference has no
event of is an error naming it and the file, or, with --unknown-classes false-positives,
false positives that lower precision and PSDS; --unknown-classes ignore leaves it out, said."""

import json

import pytest

from audiotask.cli.main import main
from helpers import stderr_lines

CLASSES = ["Cat", "Dog"]
REFERENCE = {"a.wav": [(1.0, 3.0, "Dog"), (3.5, 4.5, "Cat")], "b.wav": [(0.5, 2.0, "Cat"), (4.0, 5.0, "Dog")]}
#: the reference, and two events of a class it has no event of
PREDICTIONS = {"a.wav": [*REFERENCE["a.wav"], (5.0, 5.5, "Bird")], "b.wav": [*REFERENCE["b.wav"], (2.5, 3.0, "Bird")]}


@pytest.fixture
def evaluation(tmp_path):
    """Reference, durations, the predictions and their scores (1 exactly over each event)."""
    from audiotask.inference.formats import write_events_tsv, write_scores
    from audiotask.metrics.events import events_to_scores

    write_events_tsv(tmp_path / "reference.tsv", REFERENCE)
    write_events_tsv(tmp_path / "predictions.tsv", PREDICTIONS)
    (tmp_path / "durations.tsv").write_text("filename\tduration\na.wav\t6.0\nb.wav\t6.0\n")
    write_scores(tmp_path / "scores", {name: events_to_scores(events, end=6.0, classes=[*CLASSES, "Bird"])
                                       for name, events in PREDICTIONS.items()})
    return tmp_path


def evaluate(root, *options):
    return main(["evaluate", str(root / "reference.tsv"), str(root / "predictions.tsv"), "--durations",
                 str(root / "durations.tsv"), "--scores", str(root / "scores"), "--json", *options])


def test_a_predicted_class_the_reference_lacks_is_an_error_naming_it_and_the_file(evaluation, capsys):
    assert evaluate(evaluation) == 2
    [line] = stderr_lines(capsys)
    assert line == (
        f"audiotask evaluate: error: {evaluation / 'predictions.tsv'} has label(s) that "
        f"{evaluation / 'reference.tsv'} has no event of: Bird (2 events, e.g. in a.wav); the scores in "
        f"{evaluation / 'scores'} have class(es) that {evaluation / 'reference.tsv'} has no event of: Bird: give "
        "--unknown-classes false-positives to count their detections as false positives, or --unknown-classes "
        "ignore to leave them out of every metric")


def results_of(capsys):
    return json.loads(capsys.readouterr().out)


def test_counted_as_false_positives_they_lower_precision_f1_and_psds(evaluation, capsys):
    assert evaluate(evaluation, "--unknown-classes", "ignore") == 0
    ignored = results_of(capsys)
    assert evaluate(evaluation, "--unknown-classes", "false-positives") == 0
    captured = capsys.readouterr()
    counted = json.loads(captured.out)
    assert [line.split(": ")[1] for line in stderr_lines_of(captured.err)] == ["note", "note"]
    # left out, Bird's detections cost nothing: the scores of a perfect system
    for key in ("psds1", "psds2", "event_f1", "event_f1_micro", "segment_f1", "intersection_f1"):
        assert ignored[key] == pytest.approx(1.0), key
        assert counted[key] < 1.0, key
    event = counted["details"]["event_f1"]
    assert event["per_class"]["Bird"] == {"f1": 0.0, "precision": 0.0, "recall": None, "tp": 0, "fp": 2, "n_ref": 0}
    assert event["micro"]["precision"] == pytest.approx(4 / 6)  # 4 right detections of 6
    assert counted["details"]["psds1"]["per_class"]["Bird"] == 0.0


def stderr_lines_of(text):
    return [line for line in text.splitlines() if line.strip() and "pkg_resources" not in line]


def test_left_out_on_request_a_warning_names_them(evaluation, capsys):
    assert evaluate(evaluation, "--unknown-classes", "ignore") == 0
    lines = stderr_lines(capsys)
    assert lines[0] == (f"audiotask evaluate: warning: {evaluation / 'predictions.tsv'} has label(s) that "
                        f"{evaluation / 'reference.tsv'} has no event of: Bird (2 events, e.g. in a.wav), not "
                        "evaluated (neither true nor false positives: --unknown-classes ignore)")
    assert len(lines) == 2 and "the scores in" in lines[1]


def test_without_unknown_classes_nothing_is_said(evaluation, capsys):
    from audiotask.inference.formats import write_events_tsv

    write_events_tsv(evaluation / "predictions.tsv", REFERENCE)
    assert main(["evaluate", str(evaluation / "reference.tsv"), str(evaluation / "predictions.tsv"),
                 "--durations", str(evaluation / "durations.tsv"), "--json"]) == 0
    assert stderr_lines_of(capsys.readouterr().err) == []


def test_the_option_is_refused_where_it_does_not_apply(evaluation, capsys):
    assert main(["evaluate", "--task", "vad", str(evaluation / "reference.tsv"), str(evaluation / "predictions.tsv"),
                 "--unknown-classes", "ignore"]) == 2
    assert stderr_lines(capsys) == ["audiotask evaluate: error: --unknown-classes does not apply to --task vad"]
