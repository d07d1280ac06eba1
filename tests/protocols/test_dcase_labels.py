"""DCASE label TSV files: weak labels read as label sets, strong labels kept row by row."""

import json

import pytest
from pyannote.core import Annotation, Segment

from audiotask.protocols.dcase import WeakLabels, read_dcase_tsv, read_dcase_weak_tsv
from audiotask.testing.dummies import load_protocol, write_database_yml

STRONG = "filename\tonset\toffset\tevent_label\n"
WEAK = "filename\tevent_labels\n"


def write(tmp_path, text, name="labels.tsv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_weak_labels_are_sorted_unique_and_hashable():
    labels = WeakLabels(["Speech", "Dog", "Speech"])
    assert labels == ("Dog", "Speech") and isinstance(labels, tuple)
    assert {labels: 1}[WeakLabels(["Dog", "Speech"])] == 1
    assert json.dumps(labels) == '["Dog", "Speech"]'
    assert WeakLabels() == () and repr(WeakLabels(["Dog"])) == "WeakLabels(('Dog',))"


def test_weak_file_is_read_exactly(tmp_path):
    path = write(
        tmp_path,
        WEAK
        + "Y1.wav\tSpeech,Dog\n"
        + "Y_30.000_40.000.wav\t\n"  # listed with no label: a clip without event
        + "Y2.wav\tCat, Dog ,Cat\n"
        + "Y1.wav\tAlarm_bell_ringing,Dog\n",  # a second line for Y1: its labels are united
    )
    assert read_dcase_weak_tsv(path) == {
        "Y1": ("Alarm_bell_ringing", "Dog", "Speech"),
        "Y_30.000_40.000": (),
        "Y2": ("Cat", "Dog"),
    }
    assert all(type(labels) is WeakLabels for labels in read_dcase_weak_tsv(path).values())


@pytest.mark.parametrize(
    "text, weak",
    [
        (WEAK + "a.wav\tDog\n", True),
        (STRONG + "a.wav\t0.5\t1.0\tDog\n", False),
        ("a.wav\tDog,Cat\n", True),  # no header: 2 columns are weak labels
        ("a.wav\t0.5\t1.0\tDog\n", False),  # no header: 4 columns are strong labels
        ("# a comment\n\na.wav\tDog\n", True),
    ],
)
def test_format_is_detected_from_header_or_columns(tmp_path, text, weak):
    path = write(tmp_path, text)
    expected, other = (read_dcase_weak_tsv, read_dcase_tsv) if weak else (read_dcase_tsv, read_dcase_weak_tsv)
    assert list(expected(path)) == ["a"]
    with pytest.raises(ValueError, match="weak labels" if weak else "strong labels"):
        other(path)


def test_weak_file_is_not_read_as_files_without_events(tmp_path):
    with pytest.raises(ValueError, match="read_dcase_weak_tsv"):
        read_dcase_tsv(write(tmp_path, WEAK + "Y1.wav\tDog,Speech\n"))


@pytest.mark.parametrize(
    "read, text, message",
    [
        (read_dcase_tsv, "a.wav\t0.5\t1.0\n", r"labels.tsv, line 1: no header, and 3 columns"),
        (read_dcase_tsv, "filename\tonsets\n", r"labels.tsv, line 1: unknown header"),
        (read_dcase_weak_tsv, WEAK + "a.wav\tDog\nb.wav\n", r"labels.tsv, line 3: expected 2 tab-separated columns"),
        (read_dcase_weak_tsv, WEAK + "a.wav\tDog,,Cat\n", r"labels.tsv, line 2: empty label name"),
        (read_dcase_tsv, STRONG + "a.wav\t0.5\t1.0\tDog\nb.wav\t0.5\t1.0\n", r"labels.tsv, line 3: expected 4 tab-separated columns"),
        (read_dcase_tsv, STRONG + "b.wav\n", r"labels.tsv, line 2: expected 4 tab-separated columns"),
        (read_dcase_tsv, STRONG + "b.wav\t0.5\t\tDog\n", r"labels.tsv, line 2: onset/offset are not numbers"),
        (read_dcase_tsv, STRONG + "b.wav\t0.5\t1.0\t\n", r"labels.tsv, line 2: empty event_label"),
        (read_dcase_tsv, STRONG + "\t0.5\t1.0\tDog\n", r"labels.tsv, line 2: empty filename"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, read, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message):
        read(path)


def test_strong_file_with_both_times_empty_declares_a_file_without_event(tmp_path):
    annotations = read_dcase_tsv(write(tmp_path, STRONG + "a.wav\t\t\t\nb.wav\t0.5\t1.0\tCat\n"))
    assert len(annotations["a"]) == 0 and annotations["b"].labels() == ["Cat"]


def test_identical_rows_are_distinct_tracks(tmp_path):
    row = "a.wav\t0.5\t1.0\tDog\n"
    annotation = read_dcase_tsv(write(tmp_path, STRONG + row * 3 + "a.wav\t0.5\t1.0\tCat\n"))["a"]
    tracks = sorted((segment, label) for segment, _, label in annotation.itertracks(yield_label=True))
    assert tracks == [(Segment(0.5, 1.0), "Cat")] + [(Segment(0.5, 1.0), "Dog")] * 3
    assert sorted(track for _, track in annotation.itertracks()) == [0, 1, 2, 3]


def _protocol(tmp_path, name, annotation_file):
    (tmp_path / "files.lst").write_text("Y1\nY_30.000_40.000\nabsent\n")
    subset = {"uri": "files.lst", "annotation": annotation_file}
    write_database_yml(tmp_path / "database.yml", name, "Events", {"train": subset}, audio="{uri}.wav")
    return load_protocol(tmp_path / "database.yml", f"{name}.SpeakerDiarization.Events")


def test_loader_gives_weak_labels_of_a_weak_file(tmp_path):
    write(tmp_path, WEAK + "Y1.wav\tSpeech,Dog\nY_30.000_40.000.wav\tCat\n", name="weak.tsv")
    protocol = _protocol(tmp_path, "WeakLoader", "weak.tsv")
    labels = {file["uri"]: file["annotation"] for file in protocol.train()}
    assert labels == {"Y1": ("Dog", "Speech"), "Y_30.000_40.000": ("Cat",), "absent": ()}
    assert all(type(value) is WeakLabels for value in labels.values())


def test_loader_gives_annotations_of_a_strong_file_with_dotted_uris(tmp_path):
    write(tmp_path, STRONG + "Y1.wav\t0.5\t1.0\tDog\nY_30.000_40.000\t2.0\t3.0\tCat\n", name="strong.tsv")
    protocol = _protocol(tmp_path, "StrongLoader", "strong.tsv")
    annotations = {file["uri"]: file["annotation"] for file in protocol.train()}
    assert all(isinstance(value, Annotation) for value in annotations.values())
    assert [(s, label) for s, _, label in annotations["Y_30.000_40.000"].itertracks(yield_label=True)] == [
        (Segment(2.0, 3.0), "Cat")
    ]
    assert len(annotations["absent"]) == 0
