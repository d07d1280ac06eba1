"""Targets are bit-exact on hand-made annotations, for both resolutions."""

import numpy as np
import pytest
import torch

from audiotask.core.specifications import Problem, Resolution, Specifications
from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection, VoiceActivityDetection
from audiotask.testing.dummies import load_protocol, write_database_yml
from helpers import handmade_protocol, prepared

EVENTS = {
    "clip": [
        (0.5, 1.5, "Dog"),
        (1.0, 2.0, "Speech"),
        (1.2, 1.8, "Dog"),  # overlaps the other Dog event: merged
        (2.5, 3.5, "Cat"),  # crosses the end of the [1, 3) chunk
    ]
}
CLASSES = ["Speech", "Dog", "Cat"]


def expected_frames(ranges, num_frames=20):
    y = np.zeros((num_frames, len(CLASSES)), dtype=np.uint8)
    for class_index, (first, last) in ranges:
        y[first:last, class_index] = 1
    return y


def test_frame_targets_are_exact(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(SoundEventDetection(protocol, classes=CLASSES, resolution="frame", duration=2.0, num_workers=0, cache=tmp_path / "cache"))
    train = task.metadata.subsets["train"]
    y = task.target(train, 0, 1.0, 2.0)["y"]
    # chunk [1, 3): Dog [0.5, 1.8) -> centres < 0.8 -> frames 0..7; Speech [1, 2) -> 0..9; Cat [2.5, 3.5) -> 15..19
    np.testing.assert_array_equal(y, expected_frames([(1, (0, 8)), (0, (0, 10)), (2, (15, 20))]))
    # chunk starting before the first event: onsets land where frame centres cross them
    y = task.target(train, 0, 0.0, 2.0)["y"]
    np.testing.assert_array_equal(y, expected_frames([(1, (5, 18)), (0, (10, 20))]))


def test_chunk_targets_are_exact(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(SoundEventDetection(protocol, classes=CLASSES, duration=2.0, num_workers=0, cache=tmp_path / "cache"))
    train = task.metadata.subsets["train"]
    np.testing.assert_array_equal(task.target(train, 0, 1.6, 0.8)["y"], [1, 1, 0])
    # touching is not overlapping: Speech ends at 2.0, Cat starts at 2.5
    np.testing.assert_array_equal(task.target(train, 0, 2.0, 0.5)["y"], [0, 0, 0])
    np.testing.assert_array_equal(task.target(train, 0, 3.0, 1.0)["y"], [0, 0, 1])


def test_classes_follow_the_declared_order_not_the_alphabet(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(SoundEventDetection(protocol, classes=["Cat", "Speech", "Dog"], duration=2.0, num_workers=0, cache=tmp_path / "cache"))
    assert task.specifications.classes == ["Cat", "Speech", "Dog"]
    np.testing.assert_array_equal(task.target(task.metadata.subsets["train"], 0, 3.0, 1.0)["y"], [1, 0, 0])


def test_unknown_labels_are_reported_not_mapped(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", {"clip": EVENTS["clip"] + [(0.0, 1.0, "Cow")]})
    task = SoundEventDetection(protocol, classes=CLASSES, duration=2.0, num_workers=0, cache=tmp_path / "cache")
    Debug(frame_hop=1600, task=task)
    with pytest.warns(UserWarning, match="'Cow' \\(2 segments\\)"):  # train and development
        task.prepare_data()


def test_annotation_past_the_end_is_reported_and_clipped(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", {"clip": [(3.0, 4.5, "Dog")]})
    task = SoundEventDetection(protocol, classes=CLASSES, duration=2.0, num_workers=0, cache=tmp_path / "cache")
    Debug(frame_hop=1600, task=task)
    with pytest.warns(UserWarning, match="'clip'.*end after the audio"):
        task.prepare_data()
    task.setup("fit")
    assert task.metadata.subsets["train"].segment_end.max() == pytest.approx(4.0)


def test_voice_activity_merges_all_labels(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(VoiceActivityDetection(protocol, duration=2.0, num_workers=0, cache=tmp_path / "cache"))
    y = task.target(task.metadata.subsets["train"], 0, 1.0, 2.0)["y"]
    expected = np.zeros((20, 1), dtype=np.uint8)
    expected[0:10] = 1  # Dog + Speech until 2.0
    expected[15:20] = 1  # Cat
    np.testing.assert_array_equal(y, expected)


def test_warm_up_frames_are_excluded_from_the_loss(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(VoiceActivityDetection(protocol, duration=2.0, warm_up=0.3, num_workers=0, cache=tmp_path / "cache"))
    weight = task.frame_weight(20)
    np.testing.assert_array_equal(weight.numpy(), [0, 0, 0] + [1] * 14 + [0, 0, 0])
    # a loss that only differs in the warm-up frames is unchanged
    y = torch.zeros(1, 20, 1)
    good = torch.full((1, 20, 1), -5.0)
    bad = good.clone()
    bad[:, :3] = 5.0
    bad[:, -3:] = 5.0
    assert task.compute_loss(bad, y).item() == pytest.approx(task.compute_loss(good, y).item())


def test_warm_up_follows_each_chunk_duration_and_the_specifications(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", EVENTS)
    task = prepared(VoiceActivityDetection(protocol, duration=2.0, min_duration=1.0, warm_up=0.3, num_workers=0,
                                           cache=tmp_path / "cache"))
    # a 1-s chunk of a variable-length batch: its own last 0.3 s are warm-up
    np.testing.assert_array_equal(task.frame_weight(10, 1.0).numpy(), [0, 0, 0] + [1] * 4 + [0, 0, 0])
    # specifications set by a task itself, as the tutorial's does, are the ones that count
    task.specifications = Specifications(problem=Problem.BINARY_CLASSIFICATION, resolution=Resolution.FRAME,
                                         duration=2.0, warm_up=(0.5, 0.0), classes=["speech"])
    np.testing.assert_array_equal(task.frame_weight(20).numpy(), [0] * 5 + [1] * 15)


def test_files_without_annotated_region_are_named(tmp_path):
    # as in a real data set: the file list says "trñ00", the UEM only knows "trn00"
    root = tmp_path / "data"
    handmade_protocol(root, {"trñ00": [(0.5, 1.0, "Dog")], "b": [(1.0, 2.0, "Dog")]}, name="Uem")
    (root / "files.uem").write_text("trn00 1 0.000 4.000\nb 1 0.000 4.000\n")
    subset = {"uri": "files.lst", "annotation": "labels.tsv", "annotated": "files.uem"}
    write_database_yml(root / "database.yml", "Uem", "Events", {"train": subset}, audio="{uri}.wav")
    protocol = load_protocol(root / "database.yml", "Uem.SpeakerDiarization.Events")
    task = SoundEventDetection(protocol, duration=1.0, batch_size=2, cache=tmp_path / "cache")
    Debug(task=task)
    with pytest.warns(UserWarning, match="1 train file\\(s\\) have no annotated region.*'trñ00'"):
        task.prepare_data()
    task.setup("fit")
    # never sampled: every training chunk comes from "b"
    files = task.make_sampler().take(64)[0]
    assert set(files.tolist()) == {1}


def short_region_protocol(root, name: str):
    """One 4-s file, a Dog event on [2.5, 3.8) and a single annotated region [2, 3)."""
    handmade_protocol(root, {"clip": [(2.5, 3.8, "Dog")]}, name=name)
    (root / "files.uem").write_text("clip 1 2.000 3.000\n")
    subset = {"uri": "files.lst", "annotation": "labels.tsv", "annotated": "files.uem"}
    write_database_yml(root / "database.yml", name, "Events", {"train": subset}, audio="{uri}.wav")
    return load_protocol(root / "database.yml", f"{name}.SpeakerDiarization.Events")


def test_chunks_longer_than_their_region_see_nothing_past_its_end(tmp_path):
    protocol = short_region_protocol(tmp_path / "data", "Short")
    task = prepared(SoundEventDetection(protocol, duration=2.0, resolution="frame", num_workers=0, batch_size=4,
                                        cache=tmp_path / "cache"))
    # the region [2, 3) is shorter than a chunk: every chunk starts at 2.0 and runs to 4.0
    batch = next(iter(task.train_dataloader()))
    assert torch.all(batch["X"][:, 0, 16000:] == 0) and torch.all(batch["X"][:, 0, :16000].abs().sum(dim=-1) > 0)
    expected = np.zeros((20, 1), dtype=np.uint8)
    expected[5:10] = 1  # Dog from 2.5 s, cut at the region's end (3.0 s), not at 3.8 s
    for y in batch["y"].numpy():
        np.testing.assert_array_equal(y, expected)


def test_a_frame_mask_can_leave_out_what_lies_past_the_region(tmp_path):
    from audiotask.engine.builders import AnnotatedFrameMask, FrameClasses

    class MaskedPastTheRegion(SoundEventDetection):
        def target_builders(self):
            return [FrameClasses(), AnnotatedFrameMask()]

    protocol = short_region_protocol(tmp_path / "data", "Masked")
    task = prepared(MaskedPastTheRegion(protocol, duration=2.0, resolution="frame", num_workers=0, batch_size=4,
                                        cache=tmp_path / "cache"))
    batch = next(iter(task.train_dataloader()))
    # every chunk runs from 2.0 to 4.0 s; its region ends at 3.0 s: frames centred before 1.0 s count
    np.testing.assert_array_equal(batch["mask"].numpy(), np.tile([1] * 10 + [0] * 10, (4, 1)))
    # and the loss ignores the second half entirely
    y_pred = torch.zeros(4, 20, 1)
    changed = y_pred.clone()
    changed[:, 10:] = 9.0
    loss = task.compute_loss(y_pred, batch["y"], mask=batch["mask"])
    assert task.compute_loss(changed, batch["y"], mask=batch["mask"]).item() == pytest.approx(loss.item())
