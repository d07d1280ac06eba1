"""The built-in demo data set: synthesis of each class, exact labels, determinism, protocol."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile

from audiotask.demo.soundscapes import (
    CLASSES,
    DURATION_RANGES,
    PROTOCOL,
    EventSpec,
    build_demo_dataset,
    make_soundscape,
    render_events,
    sample_events,
    synthesize_event,
)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def test_classes_are_dcase_classes_in_order():
    from audiotask.tasks.sed import DCASE_CLASSES

    assert CLASSES == tuple(DCASE_CLASSES)
    assert set(DURATION_RANGES) == set(CLASSES)


@pytest.mark.parametrize("sample_rate", [8000, 16000])
@pytest.mark.parametrize("label", CLASSES)
def test_every_class_synthesises_a_finite_event_audible_edge_to_edge(label, sample_rate):
    event = synthesize_event(label, 1.234, sample_rate, np.random.default_rng(3))
    assert event.dtype == np.float32
    assert event.shape == (round(1.234 * sample_rate),)
    assert np.isfinite(event).all()
    assert np.max(np.abs(event)) == pytest.approx(1.0, abs=1e-6)
    edge = sample_rate // 100  # 10 ms: the labels' resolution is 1 ms, fades are 5 ms
    assert rms(event[:edge]) > 0.01 * rms(event)
    assert rms(event[-edge:]) > 0.01 * rms(event)
    assert abs(event[0]) < 0.01 and abs(event[-1]) < 0.01  # 5 ms fades: no click at the edges


def test_synthesis_is_deterministic_given_the_generator():
    first = synthesize_event("Speech", 0.5, 16000, np.random.default_rng(1))
    again = synthesize_event("Speech", 0.5, 16000, np.random.default_rng(1))
    other = synthesize_event("Speech", 0.5, 16000, np.random.default_rng(2))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_unknown_label_is_named_with_the_known_ones():
    with pytest.raises(ValueError, match=r"'Tuba'.*Speech.*Electric_shaver_toothbrush"):
        synthesize_event("Tuba", 1.0, 16000, np.random.default_rng(0))


def test_rendered_events_occupy_exactly_their_labelled_samples():
    sample_rate = 16000
    events = [
        EventSpec("Dog", 0.0, 0.731, 0.0),  # starts at the clip's first sample
        EventSpec("Dishes", 0.5, 1.903, 6.0),  # overlaps the dog
        EventSpec("Frying", 2.25, 4.0, -3.0),  # ends at the clip's last sample
    ]
    foreground = render_events(events, np.random.default_rng(0), num_samples=4 * sample_rate, sample_rate=sample_rate)
    inside = np.zeros(len(foreground), dtype=bool)
    for event in events:
        start, end = round(event.onset * sample_rate), round(event.offset * sample_rate)
        inside[start:end] = True
        assert np.all(foreground[start : start + 16] != 0) and np.all(foreground[end - 16 : end] != 0)
    assert not inside.all()
    assert np.all(foreground[~inside] == 0.0)
    # each event at its SNR over a unit-RMS background: RMS 10 ** (snr / 20) over its samples
    frying = foreground[round(2.25 * sample_rate) :]
    assert rms(frying) == pytest.approx(10 ** (-3 / 20), rel=1e-6)


def test_sampled_events_fit_the_clip_on_a_millisecond_grid():
    rng = np.random.default_rng(0)
    for _ in range(50):
        events = sample_events(rng, duration=4.0, max_events=4, snr_range=(0.0, 20.0))
        assert 1 <= len(events) <= 4
        assert events == sorted(events, key=lambda e: (e.onset, e.offset, e.label))
        for e in events:
            low, high = DURATION_RANGES[e.label]
            assert 0.0 <= e.onset < e.offset <= 4.0
            assert min(low, 4.0) - 1e-9 <= e.offset - e.onset <= min(high, 4.0) + 1e-9
            assert float(f"{e.onset:.3f}") == e.onset and float(f"{e.offset:.3f}") == e.offset
            assert 0.0 <= e.snr <= 20.0
        for a in events:  # same class never overlaps itself: one label = one event
            for b in events:
                if a is not b and a.label == b.label:
                    assert a.offset <= b.onset or b.offset <= a.onset


def test_soundscape_labels_mark_where_the_events_are_loud():
    sample_rate, frame = 16000, 160  # 10 ms frames
    for seed in range(5):
        waveform, labels = make_soundscape(
            np.random.default_rng(seed), duration=6.0, sample_rate=sample_rate, snr_range=(40.0, 40.0)
        )
        assert waveform.dtype == np.float32 and waveform.shape == (6 * sample_rate,)
        assert 0.05 < np.max(np.abs(waveform)) <= 0.9
        energy = np.sqrt(np.mean(waveform.astype(np.float64).reshape(-1, frame) ** 2, axis=1))
        busy = np.zeros(len(energy), dtype=bool)
        for onset, offset, _ in labels:
            first, last = round(onset * 100), round(offset * 100) - 1  # 10 ms frames at both edges
            busy[max(first - 1, 0) : last + 2] = True  # frames touching an event, 1 frame margin
        quiet = energy[~busy]
        assert len(quiet) > 0
        level = np.median(quiet)
        assert np.max(quiet) < 4 * level  # outside events: background only
        for onset, offset, _ in labels:
            first, last = int(np.ceil(onset * 100)), int(np.floor(offset * 100)) - 1
            assert energy[first] > 10 * level and energy[last] > 10 * level


def test_soundscapes_are_deterministic():
    first = make_soundscape(np.random.default_rng(7), duration=4.0)
    again = make_soundscape(np.random.default_rng(7), duration=4.0)
    other = make_soundscape(np.random.default_rng(8), duration=4.0)
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]
    assert not np.array_equal(first[0], other[0])


SMALL = dict(num_train=3, num_development=2, num_test=2, duration=4.0)


def read_bytes(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_is_byte_identical_for_a_seed_and_differs_across_seeds(tmp_path):
    build_demo_dataset(tmp_path / "a", seed=1, **SMALL)
    build_demo_dataset(tmp_path / "b", seed=1, **SMALL)
    build_demo_dataset(tmp_path / "c", seed=2, **SMALL)
    a, b, c = (read_bytes(tmp_path / name) for name in "abc")
    # wavs, 3 metadata files per split, 5 of the training set's label kinds, yml and manifest
    assert len(a) == 3 + 2 + 2 + 3 * 3 + 5 + 2
    assert a == b
    assert a.keys() == c.keys()
    assert all(a[name] != c[name] for name in a if name.endswith(".wav"))


def test_a_file_does_not_depend_on_the_size_of_other_splits(tmp_path):
    build_demo_dataset(tmp_path / "small", seed=0, **SMALL)
    build_demo_dataset(tmp_path / "big", seed=0, num_train=5, num_development=1, num_test=3, duration=4.0)
    for name in ("train/train_0002.wav", "development/development_0000.wav", "test/test_0001.wav"):
        assert (tmp_path / "small/audio" / name).read_bytes() == (tmp_path / "big/audio" / name).read_bytes()


def test_build_writes_consistent_metadata(tmp_path):
    database_yml = build_demo_dataset(tmp_path, seed=0, **SMALL)
    assert database_yml == tmp_path / "database.yml"
    for split, count in (("train", 3), ("development", 2), ("test", 2)):
        names = [f"{split}_{index:04d}.wav" for index in range(count)]
        assert (tmp_path / f"metadata/{split}.lst").read_text().split() == [n[:-4] for n in names]
        durations = list(csv.reader((tmp_path / f"metadata/{split}_durations.tsv").open(), delimiter="\t"))
        assert durations == [["filename", "duration"]] + [[n, "4.000"] for n in names]
        rows = list(csv.DictReader((tmp_path / f"metadata/{split}.tsv").open(), delimiter="\t"))
        assert {row["filename"] for row in rows} == set(names)  # every clip has an event
        for row in rows:
            assert row["event_label"] in CLASSES
            assert 0.0 <= float(row["onset"]) < float(row["offset"]) <= 4.0
        for name in names:
            info = soundfile.info(str(tmp_path / "audio" / split / name))
            assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 64000, "PCM_16")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["num_train"] == 3 and manifest["sample_rate"] == 16000


def test_build_is_skipped_when_done_and_redone_when_parameters_change(tmp_path):
    build_demo_dataset(tmp_path, seed=0, **SMALL)
    wav = tmp_path / "audio/train/train_0000.wav"
    wav.write_bytes(b"sentinel")
    build_demo_dataset(tmp_path, seed=0, **SMALL)
    assert wav.read_bytes() == b"sentinel"  # same parameters: nothing rewritten
    build_demo_dataset(tmp_path, seed=0, **{**SMALL, "num_train": 1})
    assert wav.read_bytes() != b"sentinel"
    assert sorted(p.name for p in (tmp_path / "audio/train").iterdir()) == ["train_0000.wav"]  # stale removed


def test_build_yields_a_pyannote_protocol(tmp_path):
    from pyannote.database import FileFinder, registry

    database_yml = build_demo_dataset(tmp_path, seed=0, **SMALL)
    registry.load_database(str(database_yml))
    protocol = registry.get_protocol(PROTOCOL, preprocessors={"audio": FileFinder()})
    counts = {}
    for subset in ("train", "development", "test"):
        files = list(getattr(protocol, subset)())
        counts[subset] = len(files)
        for file in files:
            assert file["uri"].startswith(f"{subset}_")
            assert file["audio"].is_file() and file["audio"].parent.name == subset
            assert file["duration"] == 4.0
            annotation = file["annotation"]
            assert len(annotation) > 0 and set(annotation.labels()) <= set(CLASSES)
            assert annotation.get_timeline().extent().end <= 4.0
    assert counts == {"train": 3, "development": 2, "test": 2}


def test_invalid_build_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="non-negative"):
        build_demo_dataset(tmp_path, seed=-1, **SMALL)
    with pytest.raises(ValueError, match="non-negative"):
        build_demo_dataset(tmp_path, num_train=0, num_development=0, num_test=0)
