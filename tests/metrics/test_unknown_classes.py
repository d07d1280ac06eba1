"""A predicted class the ground truth has no event of: an error, or false positives that
really lower the scores, or (explicitly) left out with a warning; never silently dropped."""

import math
import warnings

import pytest

from audiotask.metrics import evaluate_sound_events, event_based_f1, intersection_based_f1, psds, segment_based_f1
from audiotask.metrics.events import events_to_scores

# two 4-s files: two Dog events in a.wav, one Cat event in b.wav
GROUND_TRUTH = {"a.wav": [(0.0, 1.0, "Dog"), (2.0, 3.0, "Dog")], "b.wav": [(1.0, 2.0, "Cat")]}
DURATIONS = {"a.wav": 4.0, "b.wav": 4.0}
# the reference itself, and two Bird events (a class it has no event of) in b.wav: one within
# the first segment, one over the third and fourth
DETECTIONS = {**GROUND_TRUTH, "b.wav": [(1.0, 2.0, "Cat"), (0.0, 0.5, "Bird"), (2.5, 3.5, "Bird")]}
F1 = {"event": event_based_f1, "segment": segment_based_f1, "intersection": intersection_based_f1}
#: Bird's false positives, counted by hand: two events; three 1-s segments (0, 2 and 3)
BIRD_FALSE_POSITIVES = {"event": 2, "segment": 3, "intersection": 2}
#: true positives of the known classes (all detected): three events; three segments
TRUE_POSITIVES = {"event": 3, "segment": 3, "intersection": 3}


def quietly(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


@pytest.mark.parametrize("metric", sorted(F1))
def test_unknown_detections_counted_as_false_positives_lower_precision_and_f1(metric):
    ignored = quietly(F1[metric], DETECTIONS, GROUND_TRUTH, DURATIONS, unknown_classes="ignore")
    counted = F1[metric](DETECTIONS, GROUND_TRUTH, DURATIONS, unknown_classes="false-positives")
    # left out, the Bird detections count nowhere: a perfect score
    assert ignored["micro"]["precision"] == ignored["macro"]["f1"] == 1.0
    tp, fp = TRUE_POSITIVES[metric], BIRD_FALSE_POSITIVES[metric]
    assert counted["per_class"]["Bird"] == {"f1": 0.0, "precision": 0.0, "recall": None, "tp": 0, "fp": fp, "n_ref": 0}
    assert counted["micro"]["precision"] == pytest.approx(tp / (tp + fp))
    assert counted["micro"]["recall"] == pytest.approx(1.0)  # nothing of the reference was missed
    assert counted["micro"]["f1"] == pytest.approx(2 * tp / (2 * tp + fp))
    # Bird's F1 of 0 is averaged with Cat's and Dog's 1
    assert counted["macro"]["f1"] == pytest.approx(2 / 3) and counted["macro"]["precision"] == pytest.approx(2 / 3)
    assert counted["macro"]["recall"] == pytest.approx(1.0)  # over the classes that have something to recall
    for name in ("Cat", "Dog"):
        assert counted["per_class"][name] == ignored["per_class"][name]


@pytest.mark.parametrize("metric", sorted(F1))
def test_unknown_detections_are_an_error_naming_the_class_and_the_file(metric):
    with pytest.raises(ValueError, match=r"the detections have class\(es\) that the ground truth has no event of: "
                                         r"Bird \(in b\.wav\)"):
        F1[metric](DETECTIONS, GROUND_TRUTH, DURATIONS, unknown_classes="error")


def test_left_out_unknown_classes_are_named_in_a_warning_as_before():
    with pytest.warns(UserWarning, match="not evaluated: Bird"):
        result = event_based_f1(DETECTIONS, GROUND_TRUTH, DURATIONS)  # the library's default: "ignore"
    assert sorted(result["per_class"]) == ["Cat", "Dog"]


def test_a_wrong_choice_is_refused():
    with pytest.raises(ValueError, match="unknown_classes must be one of ignore, error, false-positives"):
        event_based_f1(DETECTIONS, GROUND_TRUTH, DURATIONS, unknown_classes="drop")


def perfect_scores_and_a_scored_bird():
    """Scores 1 exactly over each reference event (PSDS 1 for Cat and Dog), and a Bird column
    that fires over the Bird detections."""
    classes = ["Cat", "Dog", "Bird"]
    return {name: events_to_scores(events, end=DURATIONS[name], classes=classes) for name, events in DETECTIONS.items()}


@pytest.mark.parametrize("scenario", [1, 2])
def test_a_scored_class_without_reference_events_lowers_psds_when_counted(scenario):
    scores = perfect_scores_and_a_scored_bird()
    ignored = quietly(psds, scores, GROUND_TRUTH, DURATIONS, scenario=scenario, unknown_classes="ignore")
    counted = psds(scores, GROUND_TRUTH, DURATIONS, scenario=scenario, unknown_classes="false-positives")
    assert ignored["psds"] == pytest.approx(1.0)
    # three classes' true positive rates, 1, 1 and 0 (nothing of Bird to find) at every eFPR: the
    # effective rate is their mean less alpha_st = 1 times their standard deviation
    mean, spread = 2 / 3, math.sqrt(2) / 3
    assert counted["psds"] == pytest.approx(mean - spread)
    assert counted["per_class"] == {"Cat": pytest.approx(1.0), "Dog": pytest.approx(1.0), "Bird": 0.0}
    with pytest.raises(ValueError, match=r"the scores have class\(es\) that the ground truth has no event of: Bird"):
        psds(scores, GROUND_TRUTH, DURATIONS, scenario=scenario, unknown_classes="error")


def test_evaluate_sound_events_passes_the_choice_to_every_metric():
    scores = perfect_scores_and_a_scored_bird()
    counted = evaluate_sound_events(GROUND_TRUTH, DURATIONS, detections=DETECTIONS, scores=scores,
                                    unknown_classes="false-positives")
    ignored = quietly(evaluate_sound_events, GROUND_TRUTH, DURATIONS, detections=DETECTIONS, scores=scores)
    for key in ("psds1", "psds2", "event_f1", "segment_f1", "intersection_f1", "event_f1_micro"):
        assert counted[key] < ignored[key] == pytest.approx(1.0), key
    with pytest.raises(ValueError, match="Bird"):
        evaluate_sound_events(GROUND_TRUTH, DURATIONS, detections=DETECTIONS, unknown_classes="error")
