"""Results on disk: DCASE TSV and RTTM events, sed_scores_eval score files."""

import numpy as np
import pandas as pd
import pytest
from pyannote.core import SlidingWindow, SlidingWindowFeature
from pyannote.database.util import load_rttm

from audiotask.inference.formats import (
    frame_boundaries,
    read_events_tsv,
    read_scores,
    scores_to_dataframe,
    write_events_tsv,
    write_rttm,
    write_scores,
)
from audiotask.inference.postprocessing import events_to_annotation

EVENTS = {
    "b.wav": [(2.0, 3.5, "Speech"), (0.25, 1.0, "Dog")],
    "a.wav": [(0.0, 10.0, "Vacuum_cleaner"), (0.0, 1.125, "Cat")],
    # DESED names: the uri keeps its dots
    "Y00pK0GMmE9s_70.000_80.000.wav": [(1.5, 2.5, "Dog")],
}


def test_events_tsv_round_trip_sorted_by_file_then_onset(tmp_path):
    path = tmp_path / "detections.tsv"
    write_events_tsv(path, EVENTS)
    lines = path.read_text().splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    assert lines[1:4] == [
        "Y00pK0GMmE9s_70.000_80.000.wav\t1.500\t2.500\tDog",
        "a.wav\t0.000\t1.125\tCat",
        "a.wav\t0.000\t10.000\tVacuum_cleaner",
    ]
    assert read_events_tsv(path) == {name: sorted(events) for name, events in EVENTS.items()}


def test_read_events_tsv_keeps_files_without_events(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\nquiet.wav\t\t\t\nloud.wav\t1.0\t2.0\tDog\n")
    assert read_events_tsv(path) == {"quiet.wav": [], "loud.wav": [(1.0, 2.0, "Dog")]}


def test_read_events_tsv_reports_bad_rows(tmp_path):
    path = tmp_path / "labels.tsv"
    path.write_text("filename\tonset\toffset\tevent_label\nx.wav\t2.0\t1.0\tDog\n")
    with pytest.raises(ValueError, match="line 2"):
        read_events_tsv(path)


def test_write_rttm_from_dict_or_annotations(tmp_path):
    annotations = {name.rsplit(".", 1)[0]: events_to_annotation(events, "") for name, events in EVENTS.items()}
    write_rttm(tmp_path / "dict.rttm", annotations)
    loaded = load_rttm(str(tmp_path / "dict.rttm"))
    assert sorted(loaded) == sorted(annotations)
    assert sorted(loaded["b"].itertracks(yield_label=True))[0][0].start == pytest.approx(0.25)
    assert loaded["b"].label_duration("Speech") == pytest.approx(1.5)
    lines = (tmp_path / "dict.rttm").read_text().splitlines()
    assert "SPEAKER a 1 0.000 10.000 <NA> <NA> Vacuum_cleaner <NA> <NA>" in lines
    write_rttm(tmp_path / "list.rttm", [events_to_annotation(EVENTS["a.wav"], "a")])
    assert (tmp_path / "list.rttm").read_text().splitlines()[0].split()[:2] == ["SPEAKER", "a"]
    with pytest.raises(ValueError, match="uri"):
        write_rttm(tmp_path / "bad.rttm", [events_to_annotation(EVENTS["a.wav"], "")])


def test_scores_to_dataframe_uses_frame_boundaries():
    data = np.array([[0.1, 0.9], [0.2, 0.8], [0.3, 0.7]], dtype=np.float32)
    scores = SlidingWindowFeature(data, SlidingWindow(start=0.0, duration=0.5, step=0.5), labels=["Cat", "Dog"])
    frame = scores_to_dataframe(scores)
    assert list(frame.columns) == ["onset", "offset", "Cat", "Dog"]
    np.testing.assert_allclose(frame["onset"], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(frame["offset"], [0.5, 1.0, 1.5])
    np.testing.assert_allclose(frame[["Cat", "Dog"]].to_numpy(), data)
    assert list(scores_to_dataframe(scores, classes=["x", "y"]).columns)[2:] == ["x", "y"]


def test_frame_boundaries_of_overlapping_frames_are_centred_cells():
    frames = SlidingWindow(start=0.0, duration=0.5, step=0.1)  # centres 0.25, 0.35, 0.45
    scores = SlidingWindowFeature(np.zeros((3, 1)), frames, labels=["Cat"])
    np.testing.assert_allclose(frame_boundaries(scores), [0.2, 0.3, 0.4, 0.5])


def test_scores_to_dataframe_spreads_per_window_scores_onto_cells():
    # 2-s windows every second, [0, 2), [1, 3), [2, 4): 1-s cells are means of the windows over them
    data = np.array([[0.9, 0.1], [0.9, 0.2], [0.1, 0.9]])
    scores = SlidingWindowFeature(data, SlidingWindow(start=0.0, duration=2.0, step=1.0), labels=["Dog", "Speech"])
    frame = scores_to_dataframe(scores)
    np.testing.assert_allclose(frame["onset"], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(frame["offset"], [1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(frame[["Dog", "Speech"]].to_numpy(), [[0.9, 0.1], [0.9, 0.15], [0.5, 0.55], [0.1, 0.9]])
    # a 3.5-s file: the last cell stops at its end; a 2-s file: two cells
    np.testing.assert_allclose(scores_to_dataframe(scores, end=3.5)["offset"], [1.0, 2.0, 3.0, 3.5])
    np.testing.assert_allclose(scores_to_dataframe(scores, end=2.0)["offset"], [1.0, 2.0])


def test_psds_of_chunk_model_scores_perfect_scores_give_one():
    from audiotask.metrics.psds import psds

    # chunk-model outputs (2-s windows every 0.2 s) that are 1 exactly over each reference event
    windows = SlidingWindow(start=0.0, duration=2.0, step=0.2)
    scores = {
        "a.wav": SlidingWindowFeature(np.array([[1.0, 0.0]]), windows, labels=["Dog", "Speech"]),  # a 2-s file
        "b.wav": SlidingWindowFeature(np.tile([0.0, 1.0], (11, 1)), windows, labels=["Dog", "Speech"]),  # 4 s
    }
    ground_truth = {"a.wav": [(0.0, 2.0, "Dog")], "b.wav": [(0.0, 4.0, "Speech")]}
    durations = {"a.wav": 2.0, "b.wav": 4.0}
    for scenario in (1, 2):
        result = psds(scores, ground_truth, durations, scenario=scenario)
        assert result["psds"] == pytest.approx(1.0)
        assert result["per_class"] == pytest.approx({"Dog": 1.0, "Speech": 1.0})


def test_scores_to_dataframe_needs_class_names():
    scores = SlidingWindowFeature(np.zeros((3, 2)), SlidingWindow(start=0.0, duration=0.1, step=0.1))
    with pytest.raises(ValueError, match="classes="):
        scores_to_dataframe(scores)


def test_scores_round_trip_named_by_uri(tmp_path):
    rng = np.random.default_rng(0)
    frames = SlidingWindow(start=0.0, duration=0.064, step=0.064)
    scores = {
        "clip.wav": SlidingWindowFeature(rng.random((20, 2)), frames, labels=["Cat", "Dog"]),
        "Y00pK0GMmE9s_70.000_80.000.wav": SlidingWindowFeature(rng.random((5, 2)), frames, labels=["Cat", "Dog"]),
    }
    write_scores(tmp_path / "scores", scores)
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["Y00pK0GMmE9s_70.000_80.000.tsv", "clip.tsv"]
    loaded = read_scores(tmp_path / "scores")
    assert sorted(loaded) == ["Y00pK0GMmE9s_70.000_80.000", "clip"]
    for name, uri in (("clip.wav", "clip"), ("Y00pK0GMmE9s_70.000_80.000.wav", "Y00pK0GMmE9s_70.000_80.000")):
        pd.testing.assert_frame_equal(loaded[uri], scores_to_dataframe(scores[name]))


def test_write_scores_accepts_dataframes_and_refuses_clashing_names(tmp_path):
    frame = scores_to_dataframe(
        SlidingWindowFeature(np.ones((2, 1)), SlidingWindow(start=0.0, duration=0.1, step=0.1), labels=["Cat"])
    )
    write_scores(tmp_path / "ok", {"clip": frame})
    pd.testing.assert_frame_equal(read_scores(tmp_path / "ok")["clip"], frame)
    with pytest.raises(ValueError, match="clip.tsv"):
        write_scores(tmp_path / "clash", {"clip.wav": frame, "clip.flac": frame})
    with pytest.raises(NotADirectoryError):
        read_scores(tmp_path / "missing")
