"""Protocol files carry audio, duration and annotated; DCASE TSV annotations load."""

import pytest
from pyannote.core import Segment

from audiotask.protocols.dcase import read_dcase_tsv
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol


def test_task_gives_every_file_duration_and_annotated(tiny_protocol):
    SoundEventDetection(tiny_protocol, duration=2.0, num_workers=0)
    for file in tiny_protocol.train():
        assert file["duration"] == pytest.approx(6.0)
        assert list(file["annotated"]) == [Segment(0.0, 6.0)]
        assert set(file["annotation"].labels()) <= {"Alarm_bell_ringing", "Dog", "Speech"}


def test_dcase_tsv_loader_is_registered_for_database_yml(tmp_path):
    from pyannote.database.custom import LOADERS

    assert LOADERS[".tsv"].value == "audiotask.protocols.dcase:DCASELoader"
    yml = make_sound_event_protocol(tmp_path, name="Loader", files_per_subset=(2, 1, 1))
    protocol = load_protocol(yml, "Loader.SpeakerDiarization.Events")
    rows = [line.split("\t") for line in (tmp_path / "train.tsv").read_text().splitlines()[1:]]
    first = next(protocol.train())
    expected = sorted((float(r[1]), float(r[2]), r[3]) for r in rows if r[0] == "train00.wav")
    actual = sorted((s.start, s.end, label) for s, _, label in first["annotation"].itertracks(yield_label=True))
    assert actual == expected


def test_malformed_tsv_names_file_and_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\na.wav\t1.0\t0.5\tDog\n")
    with pytest.raises(ValueError, match=r"bad.tsv, line 2"):
        read_dcase_tsv(path)


def test_file_without_events_is_declared_empty(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\na.wav\t\t\t\nb.wav\t0.5\t1.0\tCat\n")
    annotations = read_dcase_tsv(path)
    assert len(annotations["a"]) == 0 and annotations["b"].labels() == ["Cat"]
