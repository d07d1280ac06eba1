"""Powerset classes of local speakers: pyannote.audio's order, mapping and conversions."""

from itertools import combinations

import pytest
import torch
import torch.nn.functional as F

from audiotask.core.powerset import Powerset, of_specifications, speaker_activity
from audiotask.core.specifications import Problem, Resolution, Specifications


def pyannote_mapping(num_classes: int, max_set_size: int) -> torch.Tensor:
    """pyannote.audio's ``Powerset.build_mapping`` (pyannote/audio/utils/powerset.py), transcribed."""
    mapping = torch.zeros(sum(len(list(combinations(range(num_classes), k))) for k in range(max_set_size + 1)),
                          num_classes)
    powerset_k = 0
    for set_size in range(0, max_set_size + 1):
        for current_set in combinations(range(num_classes), set_size):
            mapping[powerset_k, current_set] = 1
            powerset_k += 1
    return mapping


def every_activity(num_speakers: int) -> torch.Tensor:
    """(2**num_speakers, num_speakers): every {0, 1} activity of the speakers."""
    codes = torch.arange(2**num_speakers)
    return ((codes[:, None] >> torch.arange(num_speakers)) & 1).float()


def test_three_speakers_at_most_two_at_once_are_pyannotes_seven_classes():
    powerset = Powerset(3, 2)
    assert powerset.num_classes == 7
    assert powerset.sets == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    assert powerset.class_names == ["none", "1", "2", "3", "1+2", "1+3", "2+3"]
    assert torch.equal(powerset.mapping, pyannote_mapping(3, 2))
    assert powerset.cardinality.tolist() == [0, 1, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("num_speakers, max_per_frame", [(1, 1), (2, 1), (2, 2), (3, 1), (3, 3), (4, 2), (4, 3)])
def test_every_size_has_pyannotes_mapping(num_speakers, max_per_frame):
    assert torch.equal(Powerset(num_speakers, max_per_frame).mapping, pyannote_mapping(num_speakers, max_per_frame))


def test_every_allowed_set_goes_to_its_class_and_back():
    powerset = Powerset(4, 2)
    activity = every_activity(4)
    allowed = activity[activity.sum(dim=1) <= 2]
    classes = powerset.class_index(allowed)
    assert sorted(classes.tolist()) == list(range(powerset.num_classes))  # one class each
    assert torch.equal(powerset.mapping[classes], allowed)
    one_hot = powerset.to_powerset(allowed)
    assert one_hot.dtype == torch.int64 and torch.equal(one_hot.argmax(dim=-1), classes)
    assert torch.equal(powerset.to_multilabel(one_hot.float()), allowed)


def test_too_many_active_speakers_are_decided_as_pyannote_does():
    """pyannote.audio's ``to_powerset``: the one-hot argmax of the activity times the
    mapping's transpose; speakers 1, 2 and 3 all active, at most 2 at once, is "1+2"."""
    powerset = Powerset(3, 2)
    activity = every_activity(3)
    pyannote = F.one_hot(torch.argmax(activity @ pyannote_mapping(3, 2).T, dim=-1), num_classes=7)
    assert torch.equal(powerset.to_powerset(activity), pyannote)
    assert powerset.class_names[powerset.class_index(torch.ones(3)).item()] == "1+2"
    assert powerset.class_names[Powerset(3, 1).class_index(torch.tensor([0.0, 1.0, 1.0])).item()] == "2"


def test_to_multilabel_hard_is_the_argmax_class_and_soft_sums_class_probabilities():
    powerset = Powerset(3, 2)
    logits = torch.randn(2, 5, 7, generator=torch.Generator().manual_seed(0))
    pyannote_hard = F.one_hot(torch.argmax(logits, dim=-1), 7).float() @ pyannote_mapping(3, 2)
    assert torch.equal(powerset.to_multilabel(logits), pyannote_hard)
    assert torch.equal(powerset.to_multilabel(logits.softmax(dim=-1)), pyannote_hard)  # same argmax
    probabilities = logits.softmax(dim=-1)
    soft = powerset.to_multilabel(probabilities, soft=True)
    # speaker 1 is in classes "1", "1+2" and "1+3"
    torch.testing.assert_close(soft[..., 0], probabilities[..., [1, 4, 5]].sum(dim=-1))
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 7\) powerset scores"):
        powerset.to_multilabel(torch.zeros(2, 3))


def test_impossible_sizes_are_refused():
    with pytest.raises(ValueError, match="must be in"):
        Powerset(2, 3)
    with pytest.raises(ValueError, match="must be in"):
        Powerset(3, 0)


def diarization_specifications(powerset: bool) -> Specifications:
    classes = Powerset(3, 2).class_names if powerset else ["1", "2", "3"]
    problem = Problem.MONO_LABEL_CLASSIFICATION if powerset else Problem.MULTI_LABEL_CLASSIFICATION
    return Specifications(problem, Resolution.FRAME, 5.0, classes=classes, extra={
        "task": "speaker-diarization", "max_speakers_per_chunk": 3, "max_speakers_per_frame": 2, "powerset": powerset})


def test_a_saved_models_specifications_give_its_speaker_activity():
    probabilities = torch.tensor([[0.1, 0.1, 0.1, 0.1, 0.5, 0.05, 0.05], [0.7, 0.1, 0.1, 0.0, 0.0, 0.05, 0.05]])
    specifications = diarization_specifications(powerset=True)
    assert of_specifications(specifications).class_names == specifications.classes
    assert speaker_activity(specifications, probabilities).tolist() == [[1, 1, 0], [0, 0, 0]]
    torch.testing.assert_close(speaker_activity(specifications, probabilities, soft=True)[0],
                               torch.tensor([0.65, 0.65, 0.2]))
    multilabel = diarization_specifications(powerset=False)
    assert of_specifications(multilabel) is None
    assert speaker_activity(multilabel, torch.tensor([[0.2, 0.7, 0.9]])).tolist() == [[0, 1, 1]]
    with pytest.raises(ValueError, match="not a speaker diarization model's"):
        of_specifications(Specifications(Problem.BINARY_CLASSIFICATION, Resolution.FRAME, 2.0, classes=["speech"]))
