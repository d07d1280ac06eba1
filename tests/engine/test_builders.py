"""Target builders are bit-exact on hand-made annotations, and never wrap a value around.

Most tests build a ``ChunkSegments`` by hand (no protocol): 0.1-s frames (1600-sample hop
at 16 kHz), frame ``i`` centred at ``0.1 i + 0.05`` s, 2-s chunks of 20 frames.
"""

import numpy as np
import pytest
import torch
from pyannote.database import FileFinder, registry

from audiotask.core.frames import Frames
from audiotask.core.specifications import Problem, Resolution
from audiotask.engine.annotated_task import AnnotatedTask
from audiotask.engine.builders import (
    AnnotatedClassMask,
    AnnotatedFrameMask,
    ChunkClasses,
    ChunkClassIndex,
    ChunkSegments,
    ChunkTags,
    ChunkValue,
    FrameClasses,
    FrameOverlap,
    FrameTrackCount,
    TargetBuilder,
    build_targets,
    fit_dtype,
)
from audiotask.engine.metadata import SubsetMetadata
from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection
from helpers import handmade_protocol, prepared

FRAMES = Frames.from_hop(1600, 16000)
MANY = [f"k{index:03d}" for index in range(400)]  # more classes than uint8 can index


def subset_of(uris, **attributes) -> SubsetMetadata:
    """Metadata of files ``uris`` (4 s each, no stored segment) with string ``attributes``."""
    n = len(uris)
    return SubsetMetadata(
        uri=np.array(uris), audio=np.array([f"{uri}.wav" for uri in uris]), duration=np.full(n, 4.0),
        annotated_offsets=np.arange(n + 1), annotated=np.tile([[0.0, 4.0]], (n, 1)),
        segment_offsets=np.zeros(n + 1, dtype=np.int64), segment_start=np.zeros(0), segment_end=np.zeros(0),
        segment_label=np.zeros(0, dtype=np.int32), max_segment_length=np.array(0.0), audio_stamp=np.full((n, 2), -1),
        attributes={name: np.array(values, dtype=str) for name, values in attributes.items()},
    )


def chunk_segments(rows, *, classes, label_class, files=(0,), subset=None, duration=2.0) -> ChunkSegments:
    """``rows``: ``(chunk, start, end, label)`` with times from the chunk's start."""
    rows = list(rows)
    column = lambda k, dtype: np.array([row[k] for row in rows], dtype=dtype)  # noqa: E731
    files = np.asarray(files, dtype=np.int64)
    return ChunkSegments(
        subset=subset if subset is not None else subset_of([f"f{k}" for k in range(int(files.max()) + 1)]),
        files=files, starts=np.zeros(len(files)), duration=duration,
        chunk=column(0, np.int64), segment_start=column(1, np.float64), segment_end=column(2, np.float64),
        segment_label=column(3, np.int64), label_class=np.asarray(label_class, dtype=np.int64), classes=list(classes),
        frames=FRAMES, num_frames=FRAMES.num_frames_for_duration(duration, 16000),
    )


# labels 0..3 map to classes 300, 256, none and 0 of MANY; 44 is 300 modulo 256
MAPPED = [300, 256, -1, 0]
ROWS = [
    (0, 0.5, 1.0, 0),  # class 300: centres 0.55..0.95 -> frames 5..9
    (0, 1.2, 2.0, 2),  # no class: no target
    (1, 0.0, 0.3, 1),  # class 256: frames 0..2
    (1, 1.0, 1.45, 3),  # class 0: frames 10..13
    (1, 2.0, 2.0, 0),  # cut at the chunk's end (zero length): no target
]


def test_annotated_frame_mask_stops_at_the_end_of_the_region():
    segments = chunk_segments([], classes=["a"], label_class=[], files=[0, 0, 0])
    # the first chunk lies inside its region, the second's region ends 1.0 s into it, the
    # third starts outside every region
    segments.annotated = np.array([2.0, 1.0, 0.0])
    mask = build_targets([AnnotatedFrameMask()], segments)["mask"]
    expected = np.zeros((3, 20), dtype=np.uint8)
    expected[0] = 1
    expected[1, :10] = 1  # centres 0.05 .. 0.95
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, expected)


def test_frame_classes_put_class_300_of_400_in_column_300():
    targets = build_targets([FrameClasses()], chunk_segments(ROWS, classes=MANY, label_class=MAPPED, files=[0, 0]))
    expected = np.zeros((2, 20, 400), dtype=np.uint8)
    expected[0, 5:10, 300] = 1
    expected[1, 0:3, 256] = 1
    expected[1, 10:14, 0] = 1
    assert targets["y"].dtype == np.uint8
    np.testing.assert_array_equal(targets["y"], expected)


def test_chunk_classes_put_class_300_of_400_in_column_300():
    targets = build_targets([ChunkClasses()], chunk_segments(ROWS, classes=MANY, label_class=MAPPED, files=[0, 0]))
    expected = np.zeros((2, 400), dtype=np.uint8)
    expected[0, 300] = 1
    expected[1, [0, 256]] = 1
    assert targets["y"].dtype == np.uint8
    np.testing.assert_array_equal(targets["y"], expected)


# tracks 5 and 7 (speakers); neither label is a class: tracks count all the same
TRACK_ROWS = [
    (0, 0.0, 1.0, 5),
    (0, 0.5, 1.5, 5),  # the same speaker again, overlapping its own turn on [0.5, 1.0)
    (1, 0.0, 1.0, 5),
    (1, 0.5, 1.5, 7),  # another speaker: overlap on [0.5, 1.0)
]


def track_segments():
    return chunk_segments(TRACK_ROWS, classes=["overlap"], label_class=np.full(8, -1), files=[0, 0])


def test_track_count_counts_a_track_once_however_many_of_its_segments_overlap():
    count = build_targets([FrameTrackCount()], track_segments())["count"]
    expected = np.zeros((2, 20), dtype=np.uint8)
    expected[0, 0:15] = 1  # one speaker, twice: 1, not 2
    expected[1, 0:15] = 1
    expected[1, 5:10] = 2  # two speakers
    assert count.dtype == np.uint8
    np.testing.assert_array_equal(count, expected)


def test_frame_overlap_is_one_only_where_two_distinct_tracks_are_active():
    y = build_targets([FrameOverlap()], track_segments())["y"]
    expected = np.zeros((2, 20, 1), dtype=np.uint8)
    expected[1, 5:10, 0] = 1
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, expected)
    # three tracks needed: none here
    np.testing.assert_array_equal(build_targets([FrameOverlap(min_tracks=3)], track_segments())["y"], 0 * expected)


def test_chunk_class_index_gives_int64_index_300_of_400():
    subset = subset_of(["a", "b", "c"], label=["k300", "k000", "k399"])
    segments = chunk_segments([], classes=MANY, label_class=[], files=[2, 0, 1, 0], subset=subset)
    ChunkClassIndex("label").check(subset, MANY, "train")
    y = build_targets([ChunkClassIndex("label")], segments)["y"]
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, [399, 300, 0, 300])


def test_chunk_class_index_check_names_the_file_of_an_unknown_label():
    subset = subset_of(["a", "odd-one"], label=["k300", "k999"])
    with pytest.raises(ValueError, match="development file 'odd-one': label 'k999' is not one of the classes"):
        ChunkClassIndex("label").check(subset, MANY, "development")


def test_chunk_value_keeps_float_values_as_float32():
    subset = subset_of(["a", "b", "c"], value=["0.7", "-1.25", "3"])
    ChunkValue("value").check(subset, [], "train")
    y = build_targets([ChunkValue("value")], chunk_segments([], classes=[], label_class=[], files=[0, 1, 2, 0], subset=subset))["y"]
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, np.array([0.7, -1.25, 3.0, 0.7], dtype=np.float32))
    assert float(y[0]) == float(np.float32(0.7))


@pytest.mark.parametrize("value", ["loud", "", "nan", "inf"])
def test_chunk_value_check_names_the_file_of_a_value_that_is_no_finite_number(value):
    subset = subset_of(["a", "bad-file"], value=["0.5", value])
    with pytest.raises(ValueError, match=f"train file 'bad-file': value '{value}' is not a finite number"):
        ChunkValue("value").check(subset, [], "train")


CLASSES = ["Cat", "Dog", "Speech"]


@pytest.mark.parametrize("frame", [True, False])
def test_annotated_class_mask_keeps_the_listed_classes_and_all_of_them_when_none_is_listed(frame):
    subset = subset_of(["all", "dog", "two"], annotated_classes=["", "Dog", " Speech , Cat"])
    AnnotatedClassMask(frame=frame).check(subset, CLASSES, "train")
    segments = chunk_segments([], classes=CLASSES, label_class=[], files=[0, 1, 2], subset=subset)
    mask = build_targets([AnnotatedClassMask(frame=frame)], segments)["mask"]
    expected = np.array([[1, 1, 1], [0, 1, 0], [1, 0, 1]], dtype=np.uint8)
    assert mask.dtype == np.uint8
    np.testing.assert_array_equal(mask, expected[:, None, :] if frame else expected)


def test_annotated_class_mask_check_names_the_file_listing_an_unknown_class():
    subset = subset_of(["fine", "cow-file"], annotated_classes=["Dog", "Dog,Cow"])
    with pytest.raises(ValueError, match=r"train file 'cow-file': annotated_classes names \['Cow'\]"):
        AnnotatedClassMask().check(subset, CLASSES, "train")


def test_chunk_tags_give_the_weak_tags_of_a_file_and_the_strong_classes_in_the_chunk():
    # file 0 weak (Dog, Speech), file 1 strong with a Cat segment, file 2 weak with a non-class tag
    subset = subset_of(["weak", "strong", "other"], tags=["Dog,Speech", "", "Cow"])
    segments = chunk_segments([(1, 0.5, 1.0, 0)], classes=CLASSES, label_class=[0], files=[0, 1, 2], subset=subset)
    y = build_targets([ChunkTags()], segments)["y"]
    assert y.dtype == np.uint8
    np.testing.assert_array_equal(y, [[0, 1, 1], [1, 0, 0], [0, 0, 0]])


# ---- fit_dtype and build_targets ---------------------------------------------------------
@pytest.mark.parametrize(
    "values, dtype, message",
    [
        (np.array([0, 300]), np.uint8, r"values in \[0, 300\] do not fit uint8"),
        (np.array([-1, 3]), np.uint8, r"values in \[-1, 3\] do not fit uint8"),
        (np.array([0.7, 1.0]), np.int64, "non-integer values cannot be stored as int64"),
        (np.array([1.0, 1e40]), np.float32, "values overflow float32"),
        (np.array([2.0, np.nan]), np.int64, "non-integer values"),
    ],
    ids=["300-uint8", "minus-one-uint8", "fraction-int64", "1e40-float32", "nan-int64"],
)
@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_fit_dtype_refuses_values_the_dtype_cannot_hold(values, dtype, message):
    with pytest.raises(ValueError, match=f"target 'y': {message}"):
        fit_dtype("y", values, dtype)


def test_fit_dtype_converts_in_range_values_exactly():
    np.testing.assert_array_equal(fit_dtype("y", np.array([0, 255], dtype=np.int64), np.uint8), np.array([0, 255], dtype=np.uint8))
    assert fit_dtype("y", np.array([0, 255]), np.uint8).dtype == np.uint8
    as_int = fit_dtype("y", np.array([3.0, -2.0, 300.0]), np.int64)
    assert as_int.dtype == np.int64 and as_int.tolist() == [3, -2, 300]
    as_float = fit_dtype("y", np.array([0.7, -1e30]), np.float32)
    assert as_float.dtype == np.float32
    np.testing.assert_array_equal(as_float, np.array([0.7, -1e30], dtype=np.float32))
    assert fit_dtype("y", np.array([True, False]), np.uint8).tolist() == [1, 0]


class Forgetful(TargetBuilder):
    outputs = {"y": np.dtype(np.uint8), "mask": np.dtype(np.uint8)}

    def __call__(self, segments):
        return {"y": np.zeros(segments.num_chunks, dtype=np.uint8)}


class Wrapping(TargetBuilder):
    outputs = {"y": np.dtype(np.uint8)}

    def __call__(self, segments):
        return {"y": np.full(segments.num_chunks, 300)}


def test_build_targets_raises_when_a_builder_omits_a_declared_key():
    segments = chunk_segments([], classes=CLASSES, label_class=[], files=[0])
    with pytest.raises(ValueError, match="Forgetful declares 'mask' but did not build it"):
        build_targets([Forgetful()], segments)


def test_build_targets_raises_when_a_value_does_not_fit_the_declared_dtype():
    segments = chunk_segments([], classes=CLASSES, label_class=[], files=[0])
    with pytest.raises(ValueError, match="do not fit uint8"):
        build_targets([Wrapping()], segments)


def test_build_targets_raises_when_two_builders_produce_one_key():
    segments = chunk_segments([], classes=CLASSES, label_class=[], files=[0])
    with pytest.raises(ValueError, match="two target builders produce 'y'"):
        build_targets([ChunkClasses(), FrameClasses()], segments)


# ---- through a task ----------------------------------------------------------------------


def test_a_task_with_400_classes_gets_class_300_in_column_300(tmp_path):
    protocol = handmade_protocol(tmp_path / "data", {"clip": [(1.5, 2.0, "k300"), (2.0, 2.3, "k256")]})
    task = prepared(SoundEventDetection(protocol, classes=MANY, resolution="frame", duration=2.0, batch_size=2,
                                        num_workers=0, cache=tmp_path / "cache"))
    batch = task.make_batch("train", np.array([0, 0]), np.array([1.0, 0.0]), 2.0)
    expected = np.zeros((2, 20, 400), dtype=np.uint8)
    expected[0, 5:10, 300] = 1  # [1.5, 2.0) from 1.0
    expected[0, 10:13, 256] = 1  # [2.0, 2.3) from 1.0
    expected[1, 15:20, 300] = 1  # [1.5, 2.0) from 0.0
    assert batch["y"].dtype == torch.uint8
    np.testing.assert_array_equal(batch["y"].numpy(), expected)
    chunk = SoundEventDetection(protocol, classes=MANY, duration=2.0, num_workers=0, cache=tmp_path / "cache")
    y = prepared(chunk).make_batch("train", np.array([0]), np.array([1.0]), 2.0)["y"].numpy()
    assert np.flatnonzero(y[0]).tolist() == [256, 300]


class ClipClass(AnnotatedTask):
    """A clip's class index from its file attribute "label" (mono-label, one per chunk)."""

    problem, resolution = Problem.MONO_LABEL_CLASSIFICATION, Resolution.CHUNK
    labels_are_classes = False  # the annotation's labels are not what it learns

    def known_classes(self):
        return MANY

    def file_attributes(self):
        return ("label",)

    def target_builders(self):
        return [ChunkClassIndex("label")]


class ClipValue(AnnotatedTask):
    """A clip's value from its file attribute "value" (regression, one per chunk)."""

    problem, resolution = Problem.REGRESSION, Resolution.CHUNK
    labels_are_classes = False

    def file_attributes(self):
        return ("value",)

    def target_builders(self):
        return [ChunkValue("value")]


def attribute_protocol(tmp_path, key, values: dict):
    handmade_protocol(tmp_path / "data", {uri: [(0.5, 1.0, "Dog")] for uri in values}, name="Attr")
    return registry.get_protocol(
        "Attr.SpeakerDiarization.Events", preprocessors={"audio": FileFinder(), key: lambda file: values[file["uri"]]}
    )


def test_clip_class_index_and_value_arrive_unchanged_through_a_task(tmp_path):
    labels = attribute_protocol(tmp_path, "label", {"a": "k300", "b": "k001"})
    task = prepared(ClipClass(labels, duration=2.0, batch_size=2, num_workers=0, cache=tmp_path / "cache"))
    y = task.make_batch("train", np.array([0, 1, 0]), np.zeros(3), 2.0)["y"]
    assert y.dtype == torch.int64 and y.tolist() == [300, 1, 300]
    values = attribute_protocol(tmp_path, "value", {"a": "0.7", "b": "-2.5"})
    task = prepared(ClipValue(values, duration=2.0, batch_size=2, num_workers=0, cache=tmp_path / "cache"))
    y = task.make_batch("train", np.array([1, 0]), np.zeros(2), 2.0)["y"]
    assert y.dtype == torch.float32 and y.tolist() == [-2.5, float(np.float32(0.7))]


def test_a_task_refuses_at_setup_a_clip_label_that_is_no_class(tmp_path):
    labels = attribute_protocol(tmp_path, "label", {"a": "k300", "b": "nope"})
    task = ClipClass(labels, duration=2.0, batch_size=2, num_workers=0, cache=tmp_path / "cache")
    Debug(frame_hop=1600, task=task)
    task.prepare_data()
    with pytest.raises(ValueError, match="train file 'b': label 'nope' is not one of the classes"):
        task.setup("fit")
