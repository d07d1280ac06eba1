"""`audiotask import`: the two ways to name what to convert, and its refusals."""

import torch

from audiotask.cli.main import main
from audiotask.core.model import Model
from audiotask.testing.pretrained_layouts import random_resemblyzer_checkpoint


def test_an_unknown_source_lists_the_known_ones(tmp_path, capsys):
    assert main(["import", "whisper", "--output", str(tmp_path / "model")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "unknown source 'whisper'" in error
    for known in ("beats", "panns", "resemblyzer", "silero-vad", "wespeaker"):
        assert known in error
    assert not (tmp_path / "model").exists()


def test_a_checkpoint_is_given_once(tmp_path, capsys):
    arguments = ["import", "a.pt", "--format", "wespeaker", "--weights", "b.pt", "--output", str(tmp_path / "m")]
    assert main(arguments) == 2
    assert "give the checkpoint once" in capsys.readouterr().err


def test_a_published_format_needs_its_checkpoint(tmp_path, capsys):
    for source in ("wespeaker", "panns", "beats"):
        assert main(["import", source, "--output", str(tmp_path / source)]) == 2
        assert "--weights FILE" in capsys.readouterr().err


def test_labels_are_refused_where_the_classes_come_with_the_source(tmp_path, capsys):
    torch.save(random_resemblyzer_checkpoint(), tmp_path / "pretrained.pt")
    (tmp_path / "labels.csv").write_text("index,mid,display_name\n0,/m/0,Speech\n")
    arguments = ["import", "resemblyzer", "--weights", str(tmp_path / "pretrained.pt"), "--labels",
                 str(tmp_path / "labels.csv"), "--output", str(tmp_path / "model")]
    assert main(arguments) == 2
    assert "--labels: resemblyzer's classes come with it" in capsys.readouterr().err
    assert main(arguments[:4] + arguments[6:]) == 0
    assert isinstance(Model.from_pretrained(tmp_path / "model"), Model)
