"""benchmarks/real_conversations.py without downloads: conversations mixed from tiny synthetic
speakers keep to their duration, speaker counts and the reference they write."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "real_conversations.py"


@pytest.fixture(scope="module")
def rc():
    spec = importlib.util.spec_from_file_location("real_conversations_under_test", PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def speakers(count: int = 5) -> dict[str, list[np.ndarray]]:
    """Each speaker a tone of its own, utterances of 0.4 to 1.2 s."""
    rate = 16000
    voices = {}
    for index in range(count):
        clips = []
        for seconds in (0.4, 0.8, 1.2):
            t = np.arange(int(seconds * rate)) / rate
            clips.append((0.3 * np.sin(2 * np.pi * (200 + 100 * index) * t)).astype(np.float32))
        voices[f"speaker {index}"] = clips
    return voices


def test_a_conversation_has_two_to_four_speakers_in_turns_that_sometimes_overlap(rc):
    rng = random.Random(0)
    overlaps = 0
    for _ in range(20):
        audio, segments = rc.conversation(rng, speakers())
        assert len(audio) == int(rc.DURATION * rc.SAMPLE_RATE) and np.abs(audio).max() <= 1
        assert 2 <= len({speaker for _, _, speaker in segments}) <= 4
        assert all(0 <= start < end <= rc.DURATION for start, end, _ in segments)
        ordered = sorted(segments)
        overlaps += sum(b[0] < a[1] and a[2] != b[2] for a, b in zip(ordered, ordered[1:]))
        # nobody overlaps themself: one speaker's utterances follow each other
        for name in {speaker for _, _, speaker in segments}:
            own = sorted((s, e) for s, e, speaker in segments if speaker == name)
            assert all(b[0] >= a[1] for a, b in zip(own, own[1:]))
    assert overlaps > 0


def test_the_rttm_and_the_speech_hypothesis_describe_the_mix(rc, tmp_path):
    from pyannote.database.util import load_rttm

    segments = [(2.0, 3.0, "hedgewars:Default"), (0.0, 1.0, "kajongg:de/female1"), (0.5, 1.5, "alsa test"),
                (3.0, 4.0, "kajongg:de/female1")]
    written = rc.annotations("f", segments, duration=5.0)
    for name, annotation in zip(("reference", "annotated", "speech"), written):
        rc.write_rttm(tmp_path / f"{name}.rttm", [annotation])
    reference, annotated, speech = (load_rttm(tmp_path / f"{name}.rttm")["f"]
                                    for name in ("reference", "annotated", "speech"))
    assert sorted((turn.start, turn.end, label) for turn, _, label in reference.itertracks(yield_label=True)) == [
        (0.0, 1.0, "kajongg:de/female1"), (0.5, 1.5, "alsa_test"), (2.0, 3.0, "hedgewars:Default"),
        (3.0, 4.0, "kajongg:de/female1")]
    assert [(turn.start, turn.end) for turn in annotated.itersegments()] == [(0.0, 5.0)]
    assert [(turn.start, turn.end) for turn in speech.itersegments()] == [(0.0, 1.5), (2.0, 4.0)]
    assert annotated.labels() == speech.labels() == ["everyone"]


def test_build_writes_a_protocol_whose_files_the_references_describe(rc, tmp_path, monkeypatch):
    from pyannote.database import registry

    monkeypatch.setattr(rc, "SIZES", {"train": 2, "development": 1, "test": 1})
    monkeypatch.setattr(rc, "speakers_by_split", lambda root: {split: speakers() for split in rc.SIZES})
    output = tmp_path / "conversations"
    rc.build(tmp_path / "sources", output)
    registry.load_database(str(output / "database.yml"))
    protocol = registry.get_protocol("RealConversations.SpeakerDiarization.Real")
    files = {subset: list(getattr(protocol, subset)()) for subset in ("train", "development", "test")}
    assert {subset: len(found) for subset, found in files.items()} == rc.SIZES
    for found in files.values():
        for file in found:
            assert (output / "audio" / f"{file['uri']}.wav").is_file()
            assert 2 <= len(file["annotation"].labels()) <= 4 and file["annotated"].duration() == rc.DURATION
    speech = (output / "test.speech-one-speaker.rttm").read_text().split()
    assert speech[0] == "SPEAKER" and speech[1] == files["test"][0]["uri"] and speech[7] == "everyone"
