"""The parts AnnotatedTask composes, each on its own: the sampler table, the fixed validation chunks, the metadata store."""

import numpy as np
import pytest

from audiotask.engine import sampling
from audiotask.engine.samplers import ChunkSampler
from audiotask.engine.validation_chunks import consecutive_chunks
from audiotask.tasks import SoundEventDetection
from helpers import handmade_protocol, prepared

CLASSES = ["Cat", "Dog", "Speech"]
EVENTS = {"full": [(0.5, 1.5, "Dog"), (1.0, 2.5, "Speech")], "partial": [(0.3, 1.2, "Speech"), (2.0, 3.5, "Dog")]}


def options(tmp_path, **kwargs):
    return {"classes": CLASSES, "duration": 2.0, "batch_size": 4, "num_workers": 0, "cache": tmp_path / "cache", **kwargs}


def test_a_task_names_a_sampling_it_registered_and_the_engine_uses_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sampling, "SAMPLINGS", dict(sampling.SAMPLINGS))
    calls = []

    @sampling.register_sampling("first-seconds", epoch_length=lambda task: 8)
    def first_seconds(task, key, usable):
        """Chunks starting in the first 0.5 s of each usable file."""
        calls.append(usable.copy())
        files = np.flatnonzero(usable)
        regions = np.stack([np.zeros(len(files)), np.full(len(files), 2.5)], axis=1)
        return ChunkSampler(regions, files, task.duration, **key)

    class FirstSeconds(SoundEventDetection):
        sampling = "first-seconds"

    task = prepared(FirstSeconds(handmade_protocol(tmp_path / "data", EVENTS), resolution="frame", **options(tmp_path)))
    chunks = task.make_sampler(0).take(16)
    assert len(calls) == 1 and calls[0].tolist() == [True, True]
    assert chunks.starts.max() <= 0.5 and task.train__len__() == 8


def test_an_unknown_sampling_names_the_registered_ones(tmp_path):
    with pytest.raises(ValueError, match=r"SoundEventDetection: sampling must be one of \('regions', 'clips', 'balanced'"):
        SoundEventDetection(handmade_protocol(tmp_path / "data", EVENTS), sampling="random", **options(tmp_path))


def test_a_name_registered_twice_is_refused():
    with pytest.raises(ValueError, match="'regions' is already registered"):
        sampling.register_sampling("regions", epoch_length=len)(lambda task, key, usable: None)


def test_consecutive_chunks_tile_each_region_from_its_start():
    chunks, region = consecutive_chunks(np.array([0, 0, 3]), np.array([0.0, 5.0, 1.0]), np.array([4.5, 5.3, 3.0]),
                                        2.0, at_least_one=False)
    assert chunks.tolist() == [[0, 0.0], [0, 2.0], [3, 1.0]] and region.tolist() == [0, 0, 2]
    chunks, region = consecutive_chunks(np.array([0, 0, 3]), np.array([0.0, 5.0, 1.0]), np.array([4.5, 5.3, 3.0]),
                                        2.0, at_least_one=True)
    assert chunks.tolist() == [[0, 0.0], [0, 2.0], [0, 5.0], [3, 1.0]] and region.tolist() == [0, 0, 1, 2]
    # float error does not lose the last chunk: 0.6 s holds three 0.2-s chunks
    chunks, _ = consecutive_chunks(np.array([1]), np.array([0.0]), np.array([0.6]), 0.2, at_least_one=False)
    assert len(chunks) == 3


def test_validation_chunks_tile_the_annotated_regions_of_the_development_files(tmp_path):
    task = prepared(SoundEventDetection(handmade_protocol(tmp_path / "data", EVENTS), resolution="frame",
                                        **options(tmp_path)))
    # each 4-s file is one annotated region: two 2-s chunks
    assert task.validation_chunks().tolist() == [[0, 0.0], [0, 2.0], [1, 0.0], [1, 2.0]]


def test_the_metadata_store_prepares_once_and_reads_a_prepared_folder_without_preparing(tmp_path, monkeypatch):
    from audiotask.engine import metadata_store
    from audiotask.engine.metadata_store import MetadataStore
    from audiotask.engine.preparation import Preparation

    from audiotask.core.protocol_files import prepare_protocol

    protocol = prepare_protocol(handmade_protocol(tmp_path / "data", EVENTS))
    preparation = Preparation(("train", "development"), 2.0, ())
    builds = []
    original = metadata_store.build_metadata
    monkeypatch.setattr(metadata_store, "build_metadata", lambda *a: builds.append(1) or original(*a))
    first = MetadataStore(protocol, preparation, tmp_path / "cache", owner="Test")
    metadata = first.load()
    assert builds == [1] and sorted(metadata.subsets) == ["development", "train"]
    again = MetadataStore(protocol, preparation, tmp_path / "cache", owner="Test")
    assert again.folder() == first.folder() and again.load().subsets["train"].uri.tolist() == ["full", "partial"]
    assert builds == [1]  # found prepared: nothing built again
    other = MetadataStore(protocol, Preparation(("train",), 3.0, ()), tmp_path / "cache", owner="Test")
    assert other.folder() != first.folder()
