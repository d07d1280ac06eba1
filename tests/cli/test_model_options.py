"""A --model-option of the wrong type is one line naming the option, the type its architecture's
argument takes and an example, before anything is built (not `object of type 'int' has no len()`)."""

import pytest

from audiotask.cli.common import CommandError
from audiotask.cli.main import main
from audiotask.cli.option_readers import accepts, check_model_options, described
from audiotask.models import CRNN, Debug
from helpers import stderr_lines

SED_DEFAULTS = {"channels": (16, 32, 64), "n_mels": 32, "hidden_size": 64, "normalization": "instance"}


@pytest.mark.parametrize("architecture, pair, value, message", [
    (CRNN, "channels=16", 16, "--model-option channels=16: CRNN's channels takes a list of int, e.g. "
                              "channels=[16,32,64]"),
    (CRNN, "channels=[16,32.5]", [16, 32.5], "--model-option channels=[16,32.5]: CRNN's channels takes a list of "
                                             "int, e.g. channels=[16,32,64]"),
    (CRNN, "hidden_size=big", "big", "--model-option hidden_size=big: CRNN's hidden_size takes an int, e.g. "
                                     "hidden_size=64"),
    (CRNN, "dropout=[0.1]", [0.1], "--model-option dropout=[0.1]: CRNN's dropout takes a number, e.g. dropout=0.1"),
    (CRNN, "normalization=3", 3, "--model-option normalization=3: CRNN's normalization takes a string, e.g. "
                                 "normalization=\"instance\""),
    (CRNN, "pretrained_features=1", 1, "--model-option pretrained_features=1: CRNN's pretrained_features takes a "
                                       "JSON object or null"),
    (Debug, "frame_hop=16.5", 16.5, "--model-option frame_hop=16.5: Debug's frame_hop takes an int, e.g. "
                                    "frame_hop=256"),
])
def test_a_value_of_the_wrong_type_names_the_option_the_type_and_an_example(architecture, pair, value, message):
    key = pair.partition("=")[0]
    with pytest.raises(CommandError) as caught:
        check_model_options(architecture, {key: value}, [pair], SED_DEFAULTS if architecture is CRNN else {})
    assert str(caught.value) == message


def test_an_argument_the_architecture_does_not_take_is_named_with_those_it_takes():
    with pytest.raises(CommandError, match=r"^--model-option hiden_size=8: Debug takes no argument 'hiden_size' "
                                           r"\(it takes sample_rate, num_channels, frame_hop, hidden_size\)$"):
        check_model_options(Debug, {"hiden_size": 8}, ["hiden_size=8"], {})


@pytest.mark.parametrize("value", [[16, 32, 64], [8]])
def test_values_of_the_right_type_pass(value):
    check_model_options(CRNN, {"channels": value, "dropout": 0, "hidden_size": 8, "pretrained_features": None},
                        [], SED_DEFAULTS)


def test_the_types_read_from_annotations():
    from typing import Any, Literal, Mapping, Optional, Sequence

    assert accepts(float, 1) and not accepts(int, True) and not accepts(int, 1.0)
    assert accepts(tuple[int, int], [2, 2]) and not accepts(tuple[int, int], [2])
    assert accepts(Optional[Mapping[str, Any]], None) and not accepts(Optional[Mapping[str, Any]], 3)
    assert accepts(Literal["a", "b"], "a") is True and accepts(Literal["a", "b"], "c") is False
    assert accepts(type("Unknown", (), {}), 3) is None  # not read: the constructor decides
    assert described(Sequence[Sequence[int]]) == "a list of a list of int"
    assert described(tuple[int, float]) == "a list of 2 values (int, float)"


def test_train_refuses_a_wrong_model_option_in_one_line(tmp_path, capsys):
    from audiotask.testing.dummies import make_sound_event_protocol

    yml = make_sound_event_protocol(tmp_path / "data", name="Tiny", files_per_subset=(1, 1, 0), duration=3.0)
    arguments = ["train", "--database", str(yml), "--protocol", "Tiny.SpeakerDiarization.Events", "--task", "sed",
                 "--duration", "2", "--cache", str(tmp_path / "cache"), "--output", str(tmp_path / "run"),
                 "--model-option", "channels=16", "--no-progress"]
    assert main(arguments) == 2
    assert stderr_lines(capsys)[-1] == ("audiotask train: error: --model-option channels=16: CRNN's channels takes a "
                                        "list of int, e.g. channels=[16,32,64]")
    assert not (tmp_path / "run").exists()
