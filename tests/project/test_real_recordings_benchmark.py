"""benchmarks/real_recordings.py without downloads: splits, folds, the label rule, soundscapes,
clips and the bootstrapped PSDS interval, on tiny synthetic sources."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "real_recordings.py"


@pytest.fixture(scope="module")
def rr():
    spec = importlib.util.spec_from_file_location("real_recordings_under_test", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def tone(seconds: float = 0.5, frequency: float = 440.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def synthetic_sources(rr, groups_per_class: int = 12, files_per_group: int = 2, backgrounds: int = 12):
    sources = []
    for c, label in enumerate(rr.CLASSES):
        for g in range(groups_per_class):
            for f in range(files_per_group):
                sources.append(rr.Source("pkg", f"{label}/{g}/{f}.wav", label, f"pkg:{label}-{g}", f"{c}-{g}-{f}",
                                         tone(0.3 + 0.1 * f, 200.0 + 50 * c)))
    rng = np.random.default_rng(0)
    for g in range(backgrounds):
        sources.append(rr.Source("pkg", f"bg/{g}.wav", "background", f"pkg:bg-{g}", f"bg-{g}",
                                 (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)))
    return sources


def test_no_group_is_shared_between_splits_and_test_has_enough_groups(rr):
    sources = synthetic_sources(rr)
    rr.split_sources(sources, seed=0)
    for label in rr.CLASSES + ("background",):
        own = [s for s in sources if s.label == label]
        split_of: dict[str, set] = {}
        for s in own:
            split_of.setdefault(s.group, set()).add(s.split)
        assert all(len(splits) == 1 for splits in split_of.values())
        per_split = {split: sum(1 for splits in split_of.values() if split in splits) for split in rr.SPLITS}
        assert per_split["test"] >= rr.MIN_TEST_GROUPS
        assert per_split["development"] >= 1 and per_split["train"] >= rr.MIN_TRAIN_GROUPS


def test_too_few_groups_are_refused_naming_the_class(rr):
    sources = [s for s in synthetic_sources(rr) if not (s.label == "Door" and not s.group.endswith(("-0", "-1", "-2")))]
    with pytest.raises(SystemExit, match="Door: 3 group"):
        rr.split_sources(sources, seed=0)
    assert rr.split_sizes(100) == (60, 20, 20)
    assert rr.split_sizes(11) == (4, 2, 5)


def test_label_ends_where_a_decaying_tone_is_20_db_below_its_peak(rr):
    rate, decay_db_per_second = 16000, 40.0  # 20 dB down after 0.5 s, 40 dB after 1 s
    t = np.arange(int(1.5 * rate)) / rate
    wave = np.sin(2 * np.pi * 1000 * t) * 10 ** (-decay_db_per_second * t / 20)
    start, end = rr.label_bounds(wave)
    assert start == 0
    assert end / rate == pytest.approx(0.5, abs=0.02)
    assert rr.active_bounds(wave)[1] / rate == pytest.approx(1.0, abs=0.02)  # the 40-dB trimming rule


def test_soundscape_labels_follow_the_label_rule_and_are_measured(rr):
    sources = synthetic_sources(rr)
    rr.split_sources(sources, seed=0)
    pools = {label: {} for label in rr.CLASSES}
    backgrounds = {}
    for s in sources:
        if s.split == "test":
            (backgrounds if s.label == "background" else pools[s.label]).setdefault(s.group, []).append(s)
    measure: dict = {}
    wave, events = rr.make_soundscape(pools, backgrounds, np.random.default_rng(1), measure)
    assert len(wave) == int(rr.DURATION * rr.SAMPLE_RATE) and 1 <= len(events) <= rr.MAX_EVENTS
    assert all(0 <= onset < offset <= rr.DURATION and label in rr.CLASSES for onset, offset, label in events)
    assert set(measure) == {label for _, _, label in events}
    assert all(new <= old + 1e-9 for new, old in measure.values())


def test_clip_folds_are_disjoint_by_group_and_the_csv_has_its_columns(rr, tmp_path):
    sources = synthetic_sources(rr)
    folds = rr.assign_folds(sources, seed=0)
    for label in rr.CLASSES:
        own = {folds[f"{label}/{s.group}"] for s in sources if s.label == label}
        assert own == set(range(1, rr.NUM_FOLDS + 1))  # 12 groups: every fold has some
    table = rr.build_clips(tmp_path, sources, seed=0, clips_per_class=10)
    with open(tmp_path / "clips" / "metadata" / "clips.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["filename", "label", "fold", "group"]
    assert len(rows) == 10 * len(rr.CLASSES) and set(table) == set(rr.CLASSES)
    fold_of: dict[str, set] = {}
    for row in rows:
        fold_of.setdefault(row["group"], set()).add(row["fold"])
        assert (tmp_path / "clips" / "audio" / f"fold{row['fold']}" / row["filename"]).is_file()
    assert all(len(found) == 1 for found in fold_of.values())
    assert (tmp_path / "clips" / "database.yml").is_file()
    import soundfile

    info = soundfile.info(str(tmp_path / "clips" / "audio" / f"fold{rows[0]['fold']}" / rows[0]["filename"]))
    assert info.samplerate == rr.SAMPLE_RATE and rr.CLIP_SECONDS[0] <= info.duration <= rr.CLIP_SECONDS[1] + 1e-3


def test_the_clip_baseline_learns_classes_of_distinct_tones_on_the_same_folds(rr, tmp_path, capsys):
    """Each class a tone of its own pitch (over background noise): log-mel statistics + SVM do far
    better than chance on held-out folds."""
    rr.build_clips(tmp_path, synthetic_sources(rr), seed=0, clips_per_class=10)
    result = rr.baseline_clips(tmp_path, folds=[1, 2])
    assert set(result["folds"]) == {1, 2} and result["accuracy"]["mean"] > 0.5  # chance: 1 / 9
    assert "log-mel statistics + RBF SVM, 2 fold(s)" in capsys.readouterr().out


def test_bootstrap_interval_holds_the_estimate_on_a_toy_case(rr):
    import pandas as pd

    rng = np.random.default_rng(0)
    reference, durations, scores = {}, {}, {}
    edges = np.round(np.arange(0, 10.01, 0.1), 3)
    for n in range(30):
        name = f"file{n}"
        onset = float(rng.integers(0, 50)) / 10
        reference[name] = [(onset, onset + 2.0, "A")]
        durations[name] = 10.0
        centre = (edges[:-1] + edges[1:]) / 2
        inside = (centre >= onset) & (centre < onset + 2.0)
        noisy = np.clip(inside * 0.8 + 0.3 * rng.random(len(centre)), 0, 1)
        scores[name] = pd.DataFrame({"onset": edges[:-1], "offset": edges[1:], "A": noisy})
    result = rr.bootstrap_psds(scores, reference, durations, scenario=1, n_iterations=4)
    assert result["samples"] == 20
    assert result["low"] <= result["psds"] <= result["high"]
    assert 0.0 <= result["low"] <= result["high"] <= 1.0
