"""One uri-from-filename rule: only an audio extension is removed, so DESED uris keep their dots."""

import numpy as np
import pandas as pd
import pytest
from pyannote.core import SlidingWindow, SlidingWindowFeature

from audiotask.inference.formats import read_events_tsv, read_scores, scores_to_dataframe, write_scores
from audiotask.metrics import event_based_f1
from audiotask.metrics.events import FileSet
from audiotask.protocols import dcase
from audiotask.protocols.dcase import read_dcase_tsv
from audiotask.protocols.uris import AUDIO_EXTENSIONS, uri_of


@pytest.mark.parametrize(
    "filename, uri",
    [
        ("a/Y_30.000_40.000.wav", "Y_30.000_40.000"),
        ("Y_30.000_40.000", "Y_30.000_40.000"),
        ("clip.WAV", "clip"),
        ("/data/audio/clip.flac", "clip"),
        ("clip.aif", "clip"),
        ("clip.aiff", "clip"),
        ("clip.opus", "clip"),
        ("notes.txt", "notes.txt"),
        ("clip.wav.bak", "clip.wav.bak"),
        (".wav", ".wav"),
    ],
)
def test_uri_of_strips_only_an_audio_extension(filename, uri):
    assert uri_of(filename) == uri


def test_audio_extensions_are_one_tuple_shared_by_the_folder_scan():
    from audiotask.cli import common

    assert {".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif", ".caf", ".au"} <= set(AUDIO_EXTENSIONS)
    assert common.AUDIO_EXTENSIONS is AUDIO_EXTENSIONS
    # whatever the folder scan finds, its uri loses the extension
    assert all(uri_of(f"clip{extension}") == "clip" for extension in common.audio_extensions())
    # code importing the rule from its former home gets the same function
    assert dcase.uri_of is uri_of


def test_folder_scan_finds_every_audio_extension(tmp_path):
    from audiotask.cli.common import find_audio_files

    for name in ("a.wav", "b.FLAC", "c.ogg", "d.aif", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [path.name for path in find_audio_files([tmp_path])] == ["a.wav", "b.FLAC", "c.ogg", "d.aif"]


def test_dcase_tsv_keeps_the_dots_of_extensionless_desed_names(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text(
        "filename\tonset\toffset\tevent_label\n"
        "Y_30.000_40.000\t1.0\t2.0\tDog\n"
        "Y_30.000_40.500\t3.0\t4.0\tCat\n"
        "Y_50.000_60.000.wav\t0.5\t1.5\tSpeech\n"
    )
    annotations = read_dcase_tsv(path)
    assert sorted(annotations) == ["Y_30.000_40.000", "Y_30.000_40.500", "Y_50.000_60.000"]
    assert annotations["Y_30.000_40.000"].labels() == ["Dog"]
    assert annotations["Y_30.000_40.500"].labels() == ["Cat"]
    assert read_events_tsv(path) == {
        "Y_30.000_40.000": [(1.0, 2.0, "Dog")],
        "Y_30.000_40.500": [(3.0, 4.0, "Cat")],
        "Y_50.000_60.000.wav": [(0.5, 1.5, "Speech")],
    }


def test_score_files_of_dotted_names_are_named_by_their_uri(tmp_path):
    frames = SlidingWindow(start=0.0, duration=0.5, step=0.5)
    scores = {
        "Y_30.000_40.000": SlidingWindowFeature(np.array([[0.25], [0.75]]), frames, labels=["Dog"]),
        "audio/Y_30.000_40.500.wav": SlidingWindowFeature(np.array([[0.5], [1.0]]), frames, labels=["Dog"]),
    }
    write_scores(tmp_path, scores)
    loaded = read_scores(tmp_path)
    assert sorted(loaded) == ["Y_30.000_40.000", "Y_30.000_40.500"]
    pd.testing.assert_frame_equal(loaded["Y_30.000_40.000"], scores_to_dataframe(scores["Y_30.000_40.000"]))
    np.testing.assert_allclose(loaded["Y_30.000_40.500"]["Dog"], [0.5, 1.0])


def test_metrics_match_filenames_and_dotted_uris(tmp_path):
    truth = tmp_path / "truth.tsv"
    truth.write_text("filename\tonset\toffset\tevent_label\nY_30.000_40.000\t1.0\t2.0\tDog\nY_30.000_40.500\t3.0\t4.0\tCat\n")
    detections = {"Y_30.000_40.000.wav": [(1.0, 2.0, "Dog")], "Y_30.000_40.500.wav": [(5.0, 6.0, "Cat")]}
    durations = {"Y_30.000_40.000": 10.0, "Y_30.000_40.500": 10.0}
    result = event_based_f1(detections, truth, durations)
    assert result["per_class"]["Dog"]["f1"] == pytest.approx(1.0)
    assert result["per_class"]["Cat"]["f1"] == pytest.approx(0.0)
    assert result["micro"]["f1"] == pytest.approx(0.5)


def test_file_set_resolves_a_dotted_uri_only_to_its_own_file():
    files = FileSet(["Y_30.000_40.000.wav", "Y_30.000_40.500.wav"], "the durations")
    assert files.resolve("Y_30.000_40.000", "the detections") == "Y_30.000_40.000.wav"
    assert files.resolve("Y_30.000_40.500", "the detections") == "Y_30.000_40.500.wav"
    # a truncated name is another file, not a prefix match
    with pytest.raises(ValueError, match="'Y_30.000_40', which is not in the durations"):
        FileSet(["Y_30.000_40.000"], "the durations").resolve("Y_30.000_40", "the detections")
