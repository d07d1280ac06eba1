import pytest

from audiotask.core.specifications import Problem, Resolution, Specifications


def test_specifications_validate_their_fields():
    with pytest.raises(ValueError, match="needs a non-empty list of classes"):
        Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.CHUNK, 5.0)
    with pytest.raises(ValueError, match="unique"):
        Specifications(Problem.MULTI_LABEL_CLASSIFICATION, Resolution.CHUNK, 5.0, classes=["a", "b", "a"])
    with pytest.raises(ValueError, match="duration must be positive"):
        Specifications(Problem.REGRESSION, Resolution.CHUNK, 0.0)
    with pytest.raises(ValueError, match="warm_up"):
        Specifications(Problem.REGRESSION, Resolution.FRAME, 1.0, warm_up=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        Specifications(Problem.BINARY_CLASSIFICATION, Resolution.FRAME, 1.0, classes=["a", "b"])


def test_specifications_round_trip_through_json_values():
    specifications = Specifications(Problem.MONO_LABEL_CLASSIFICATION, Resolution.FRAME, 2.0, warm_up=(0.1, 0.2), classes=["x", "y"])
    assert Specifications.from_dict(specifications.to_dict()) == specifications
    assert specifications.num_outputs == 2
    assert Specifications(Problem.BINARY_CLASSIFICATION, "frame", 2.0, classes=["speech"]).num_outputs == 1
