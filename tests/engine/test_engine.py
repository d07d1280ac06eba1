"""The data pipeline: metadata cache, readers, resumable sampler, distinct streams."""

import itertools

import numpy as np
import pytest
import torch
from pyannote.core import Segment

from audiotask.engine.metadata import ProtocolMetadata, SubsetMetadata
from audiotask.engine.readers import CachedReader, FileReader
from audiotask.engine.samplers import BLOCK, ChunkSampler
from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection
from audiotask.testing.dummies import load_protocol, make_sound_event_protocol
from audiotask.utils.random import create_rng_for_worker


def make_task(protocol, tmp_path, **kwargs):
    options = dict(duration=2.0, batch_size=4, num_workers=0, cache=tmp_path / "cache")
    options.update(kwargs)
    task = SoundEventDetection(protocol, **options)
    Debug(task=task)
    return task


def test_metadata_is_keyed_by_what_changes_the_prepared_arrays(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path)
    task.prepare_data()
    folder = task.metadata_folder()
    assert ProtocolMetadata.exists(folder)
    # same parameters: same folder, reused
    assert make_task(tiny_protocol, tmp_path).metadata_folder() == folder
    # the duration bounds the stored segment pieces, an attribute adds a column: new arrays
    assert make_task(tiny_protocol, tmp_path, duration=3.0).metadata_folder() != folder
    assert make_task(tiny_protocol, tmp_path, balance="database").metadata_folder() == folder  # built in
    assert make_task(tiny_protocol, tmp_path, balance="uri").metadata_folder() != folder
    # classes and resolution only change how labels become targets: the same arrays serve
    other_classes = make_task(tiny_protocol, tmp_path, classes=["Dog", "Speech"], resolution="frame")
    assert other_classes.metadata_folder() == folder
    other_classes.prepare_data()
    other_classes.setup("fit")
    assert other_classes.metadata.labels == ["Alarm_bell_ringing", "Dog", "Speech"]
    assert other_classes.specifications.classes == ["Dog", "Speech"]
    y = other_classes.targets("train", np.zeros(1, dtype=np.int64), np.zeros(1), 6.0)["y"]
    dog = tiny_protocol_events(tiny_protocol, "Dog")
    assert y[0, :, 0].any() == bool(dog) and y.shape[-1] == 2


def tiny_protocol_events(protocol, label):
    first = next(iter(protocol.train()))
    return [segment for segment, _, name in first["annotation"].itertracks(yield_label=True) if name == label]


def test_metadata_cache_follows_the_annotation_files(tmp_path):
    yml = make_sound_event_protocol(tmp_path / "data", name="Edited")
    protocol = load_protocol(yml, "Edited.SpeakerDiarization.Events")
    before = make_task(protocol, tmp_path).metadata_folder()
    tsv = tmp_path / "data" / "train.tsv"
    tsv.write_text(tsv.read_text().replace("Dog", "Speech"))
    assert make_task(protocol, tmp_path).metadata_folder() != before


def test_metadata_round_trip_and_segment_lookup(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path)
    task.prepare_data()
    task.setup("fit")
    train = task.metadata.subsets["train"]
    assert isinstance(train.segment_start, np.memmap)
    files = list(tiny_protocol.train())
    assert list(train.uri) == [f["uri"] for f in files]
    np.testing.assert_allclose(train.duration, [f["duration"] for f in files])
    classes = task.metadata.labels
    rng = np.random.default_rng(0)
    for index, file in enumerate(files):
        for start in rng.uniform(-1, 6, size=20):
            chunk = Segment(start, start + 1.5)
            expected = [(s, classes.index(label)) for s, _, label in file["annotation"].itertracks(yield_label=True)]
            found = [(Segment(*bounds), int(k)) for *bounds, k in zip(*train.segments_in(index, chunk.start, chunk.end))]
            # segments longer than the chunk duration are stored as pieces: compare what
            # each class covers inside the chunk
            assert covered_in(found, chunk) == covered_in(expected, chunk)


def covered_in(segments, chunk):
    """{class: Timeline} of what ``segments`` [(Segment, class)] cover inside ``chunk``."""
    from pyannote.core import Timeline

    by_class = {}
    for segment, k in segments:
        if segment & chunk:
            by_class.setdefault(k, []).append(segment & chunk)
    return {k: list(Timeline(parts).support()) for k, parts in by_class.items()}


def test_long_segments_are_stored_as_pieces_and_found_exactly():
    from audiotask.engine.metadata import split_segments

    # one file: a 100-s segment of class 0 over 1,000 short ones of class 1
    rng = np.random.default_rng(0)
    short_starts = np.sort(rng.uniform(0, 99, 1000))
    starts = np.concatenate([[0.0], short_starts])
    ends = np.concatenate([[100.0], short_starts + 0.5])
    classes = np.array([0] + [1] * 1000, dtype=np.int16)
    order = np.argsort(starts, kind="stable")
    piece_starts, piece_ends, piece_classes, offsets = split_segments(
        starts[order], ends[order], classes[order], np.array([0, 1001]), max_length=2.0
    )
    assert offsets.tolist() == [0, 1050]  # 50 pieces of the long segment, the short ones whole
    long_pieces = piece_classes == 0
    assert piece_starts[long_pieces].tolist() == [2.0 * k for k in range(50)]
    assert piece_ends[long_pieces].tolist() == [2.0 * (k + 1) for k in range(50)]
    assert (np.diff(piece_starts) >= 0).all()
    subset = SubsetMetadata(
        uri=np.array(["a"]), audio=np.array(["a.wav"]), duration=np.array([100.0]),
        annotated_offsets=np.array([0, 1]), annotated=np.array([[0.0, 100.0]]),
        segment_offsets=offsets, segment_start=piece_starts, segment_end=piece_ends, segment_label=piece_classes,
        max_segment_length=np.array(float(np.max(piece_ends - piece_starts))), audio_stamp=np.full((1, 2), -1),
    )
    original = [(Segment(s, e), int(k)) for s, e, k in zip(starts, ends, classes)]
    for start in rng.uniform(0, 98, 50):
        chunk = Segment(start, start + 2.0)
        found = [(Segment(*bounds), int(k)) for *bounds, k in zip(*subset.segments_in(0, chunk.start, chunk.end))]
        assert covered_in(found, chunk) == covered_in(original, chunk)
        # only segments near the chunk are looked at: the long one as its one or two pieces
        assert sum(k == 0 for _, k in found) <= 2


def test_cached_and_file_readers_agree(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path)
    task.prepare_data()
    task.setup("fit")
    paths = task.metadata.subsets["train"].audio
    direct = FileReader(paths, 16000)
    # the generated files are 16-bit PCM: the int16 cache gives back exactly their samples
    for dtype, tolerance in (("int16", 0.0), ("float16", 1e-3)):
        cached = CachedReader(paths, 16000, tmp_path / "audio", dtype=dtype)
        cached.prepare()
        for file, start, duration in [(0, 0.0, 2.0), (1, 1.234, 1.5), (2, 5.0, 2.0), (0, -0.5, 1.0)]:
            a, b = direct.crop(file, start, duration), cached.crop(file, start, duration)
            assert a.shape == b.shape == (round(duration * 16000),)
            np.testing.assert_allclose(a, b, atol=tolerance)


def test_prepare_data_decodes_audio_once(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path, audio_cache="int16")
    task.prepare_data()
    entries = sorted((tmp_path / "cache" / "audio").glob("*.npy"))
    assert len(entries) == 4  # 3 train + 1 development files
    stamps = [e.stat().st_mtime_ns for e in entries]
    make_task(tiny_protocol, tmp_path, audio_cache="int16").prepare_data()
    assert [e.stat().st_mtime_ns for e in entries] == stamps


def test_audio_cache_is_built_when_the_model_comes_after_prepare_data(tiny_protocol, tmp_path):
    task = SoundEventDetection(tiny_protocol, duration=2.0, batch_size=4, num_workers=0, cache=tmp_path / "cache")
    task.prepare_data()  # no model yet: no sample rate to decode at
    assert not list((tmp_path / "cache").glob("audio/*.npy"))
    Debug(task=task)
    task.setup("fit")
    assert len(list((tmp_path / "cache").glob("audio/*.npy"))) == 4
    batch = next(iter(task.train_dataloader()))
    assert batch["X"].shape == (4, 1, 32000)


def sampler(**kwargs):
    regions = np.array([[0.0, 10.0], [2.0, 3.0], [0.0, 30.0]])
    return ChunkSampler(regions, np.array([0, 0, 1]), 2.0, **kwargs)


def take(iterator, n):
    return [(c.file, c.start, c.duration) for c in itertools.islice(iterator, n)]


def test_sampler_resumes_exactly_where_it_stopped():
    reference = take(iter(sampler(seed=3)), 3000)
    interrupted = sampler(seed=3)
    stream = iter(interrupted)
    assert take(stream, 1500) == reference[:1500]
    state = interrupted.state_dict()
    resumed = sampler(seed=0)
    resumed.load_state_dict(state)
    assert take(iter(resumed), 1500) == reference[1500:]


def test_sampler_streams_differ_by_worker_rank_epoch_and_follow_the_seed():
    base = take(iter(sampler(seed=1)), 100)
    assert take(iter(sampler(seed=1)), 100) == base
    for other in (dict(seed=2), dict(seed=1, worker=1), dict(seed=1, rank=1), dict(seed=1, epoch=1)):
        assert take(iter(sampler(**other)), 100) != base


def test_sampler_draws_inside_regions_weighted_by_duration():
    chunks = take(iter(sampler(seed=0)), 4 * BLOCK)
    files = np.array([c[0] for c in chunks])
    starts = np.array([c[1] for c in chunks])
    # file 1 holds 30 of the 41 annotated seconds
    assert abs((files == 1).mean() - 30 / 41) < 0.03
    assert starts[files == 1].max() <= 28.0 and starts.min() >= 0.0


def test_sampler_with_min_duration_keeps_one_duration_per_batch():
    chunks = take(iter(sampler(seed=0, min_duration=1.0, batch_size=8)), 64)
    durations = np.array([c[2] for c in chunks]).reshape(8, 8)
    assert (durations == durations[:, :1]).all()
    assert len(np.unique(durations[:, 0])) == 8
    assert ((durations >= 1.0) & (durations <= 2.0)).all()


def test_balanced_groups_get_equal_shares():
    regions = np.array([[0.0, 100.0], [0.0, 1.0]])
    balanced = ChunkSampler(regions, np.array([0, 1]), 0.5, groups=["big", "small"], seed=0)
    files = np.array([c[0] for c in take(iter(balanced), 2000)])
    assert abs(files.mean() - 0.5) < 0.05


def test_rng_for_worker_differs_per_worker_rank_epoch_and_follows_the_seed(monkeypatch):
    def draws(**kwargs):
        rng = create_rng_for_worker(kwargs.pop("epoch", 0), **kwargs)
        return [rng.random() for _ in range(5)]

    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    base = draws(rank=0, worker=0)
    assert draws(rank=0, worker=0) == base
    assert draws(rank=0, worker=1) != base
    assert draws(rank=1, worker=0) != base
    assert draws(rank=0, worker=0, epoch=1) != base
    monkeypatch.setenv("PL_GLOBAL_SEED", "8")
    assert draws(rank=0, worker=0) != base


def chunk_stream(task, num_batches):
    loader = task.train_dataloader()
    batches = list(itertools.islice(iter(loader), num_batches))
    return torch.cat([b["X"] for b in batches])


def test_two_dataloader_workers_never_yield_the_same_chunks(tiny_protocol, tmp_path):
    import lightning

    lightning.seed_everything(0)
    task = make_task(tiny_protocol, tmp_path, num_workers=2, batch_size=4)
    task.prepare_data()
    task.setup("fit")
    waveforms = chunk_stream(task, 4)  # batches alternate between the two workers
    first_worker, second_worker = waveforms[0:4], waveforms[4:8]
    assert not any(torch.equal(a, b) for a in first_worker for b in second_worker)
    # the same seed gives the same stream
    lightning.seed_everything(0)
    assert torch.equal(chunk_stream(task, 4), waveforms)
    lightning.seed_everything(1)
    assert not torch.equal(chunk_stream(task, 4), waveforms)


def test_simulated_ranks_never_yield_the_same_chunks(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path)
    task.prepare_data()
    task.setup("fit")
    rank0 = take(iter(task.make_sampler(epoch=0, rank=0, worker=0)), 200)
    rank1 = take(iter(task.make_sampler(epoch=0, rank=1, worker=0)), 200)
    assert not set(rank0) & set(rank1)


def test_task_resumes_its_training_stream_mid_epoch(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path)
    task.prepare_data()
    task.setup("fit")
    def rows(count):  # the first ``count`` training chunks, batch after batch
        return [x for batch in itertools.islice(task.train_batches(), count // 4) for x in batch["X"]]

    full = rows(12)
    # two batches of 4 were trained on before the interruption
    task.resume_state = {"epoch": 0, "batches": 2, "num_workers": 0, "batch_size": 4}
    resumed = rows(4)
    assert all(torch.equal(a, b) for a, b in zip(resumed, full[8:], strict=True))
    # a state saved with another batch size cannot be honoured: said, and the stream restarts
    task.resume_state = {"epoch": 0, "batches": 2, "num_workers": 0, "batch_size": 8}
    with pytest.warns(UserWarning, match="drawn afresh"):
        restarted = rows(4)
    assert all(torch.equal(a, b) for a, b in zip(restarted, full[:4], strict=True))


def test_dataloader_works_outside_a_trainer(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path, resolution="frame")
    task.prepare_data()
    task.setup("fit")
    task.model.attach_specifications(task.specifications)
    batch = next(iter(task.train_dataloader()))
    assert batch["X"].shape == (4, 1, 32000)
    assert batch["y"].shape == (4, 125, 3)
    assert batch["y"].dtype == torch.uint8


class FakeAudiomentation:
    """Mimics torch-audiomentations: keyword call, returns an object with ``.samples``."""

    def __init__(self):
        self.calls = []

    def __call__(self, samples, sample_rate):
        self.calls.append((tuple(samples.shape), sample_rate))
        return type("ObjectDict", (), {"samples": samples * 0.0})()


def test_augmentation_follows_the_torch_audiomentations_convention(tiny_protocol, tmp_path):
    augmentation = FakeAudiomentation()
    task = make_task(tiny_protocol, tmp_path, augmentation=augmentation, resolution="frame")
    task.prepare_data()
    task.setup("fit")
    task.model.attach_specifications(task.specifications)
    seen = []
    task.model.forward = lambda x: (seen.append(x), torch.zeros(x.shape[0], 125, 3))[1]
    task.model.log = lambda *args, **kwargs: None
    task.training_step(next(iter(task.train_dataloader())), 0)
    assert augmentation.calls == [((4, 1, 32000), 16000)]
    assert not seen[0].any()  # the model saw the augmented (silenced) batch


def test_plain_callable_augmentation_and_shape_check(tiny_protocol, tmp_path):
    task = make_task(tiny_protocol, tmp_path, augmentation=lambda waveforms: waveforms[..., :100])
    task.prepare_data()
    task.setup("fit")
    with pytest.raises(ValueError, match="augmentation must return waveforms of shape"):
        task.augment(torch.zeros(2, 1, 1000))


def test_task_balances_training_chunks_over_a_protocol_key_read_once(tiny_protocol, tmp_path):
    calls = []

    def group(file):
        calls.append(file["uri"])
        return "alone" if file["uri"] == "train00" else "others"

    tiny_protocol.preprocessors["group"] = group
    task = make_task(tiny_protocol, tmp_path, balance="group")
    task.prepare_data()
    task.setup("fit")
    read = len(calls)
    assert read >= 3
    files = np.concatenate([task.make_sampler(epoch=epoch).take(2000)[0] for epoch in range(3)])
    assert len(calls) == read  # not once more per sampler, worker or epoch
    # train00 (one of three equally long files) is a group of its own: half of the chunks
    assert abs((files == 0).mean() - 0.5) < 0.03


def test_region_ends_of_chunks_inside_between_and_outside_regions():
    subset = SubsetMetadata(
        uri=np.array(["a", "b", "c"]), audio=np.array(["a.wav", "b.wav", "c.wav"]), duration=np.array([10.0, 5.0, 3.0]),
        annotated_offsets=np.array([0, 2, 2, 3]), annotated=np.array([[1.0, 3.0], [5.0, 9.0], [0.0, 3.0]]),
        segment_offsets=np.zeros(4, dtype=np.int64), segment_start=np.zeros(0), segment_end=np.zeros(0),
        segment_label=np.zeros(0, dtype=np.int32), max_segment_length=np.array(0.0), audio_stamp=np.full((3, 2), -1),
    )
    files = np.array([0, 0, 0, 0, 1, 2, 2])
    starts = np.array([1.0, 2.5, 4.0, 5.0, 1.0, 0.0, 3.0])
    # in [1, 3); in [1, 3); between regions; in [5, 9); file b has none; in [0, 3); at c's end
    np.testing.assert_array_equal(subset.region_ends(files, starts), [3.0, 3.0, 4.0, 9.0, 1.0, 3.0, 3.0])


def test_metadata_is_prepared_again_when_an_audio_file_changes(tmp_path):
    import soundfile

    yml = make_sound_event_protocol(tmp_path / "data", name="Changed")
    protocol = load_protocol(yml, "Changed.SpeakerDiarization.Events")
    task = make_task(protocol, tmp_path)
    task.prepare_data()
    task.setup("fit")
    assert task.metadata.subsets["train"].duration.tolist() == [6.0, 6.0, 6.0]
    # the same path now holds 9 s of audio: the durations read from headers are stale
    soundfile.write(tmp_path / "data" / "audio" / "train01.wav", np.zeros(9 * 16000, dtype=np.float32), 16000, subtype="PCM_16")
    task = make_task(load_protocol(yml, "Changed.SpeakerDiarization.Events"), tmp_path)
    with pytest.warns(UserWarning, match="1 audio file.*'train01'.*preparing it again"):
        task.prepare_data()
    task.setup("fit")
    assert task.metadata.subsets["train"].duration.tolist() == [6.0, 9.0, 6.0]


def first_batches(loader, count=2):
    return list(itertools.islice(iter(loader), count))


@pytest.mark.slow
def test_a_spawned_dataloader_worker_draws_the_batches_of_its_epoch_and_rank(tiny_protocol, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from torch.utils.data import DataLoader

    from audiotask.engine.batches import TrainBatches, ValidationBatches
    from audiotask.utils import random as task_random

    task = make_task(tiny_protocol, tmp_path)
    task.prepare_data()
    task.setup("fit")
    # as in a trainer at epoch 1 of rank 1: a spawned worker inherits neither the trainer
    # nor the process group, its dataset brings both
    task.model._trainer = SimpleNamespace(current_epoch=1)
    monkeypatch.setattr(task_random, "_inherited_rank", 1)
    spawned = dict(num_workers=1, multiprocessing_context="spawn")
    in_process = first_batches(DataLoader(TrainBatches(task), batch_size=None))
    in_worker = first_batches(DataLoader(TrainBatches(task), batch_size=None, **spawned))
    for a, b in zip(in_process, in_worker, strict=True):
        assert torch.equal(a["X"], b["X"]) and torch.equal(a["y"], b["y"])
    monkeypatch.setattr(task_random, "_inherited_rank", 0)
    assert not torch.equal(first_batches(DataLoader(TrainBatches(task), batch_size=None))[0]["X"], in_process[0]["X"])
    validation = DataLoader(ValidationBatches(task, task._validation_chunks), batch_size=None, **spawned)
    assert torch.equal(next(iter(validation))["X"], ValidationBatches(task, task._validation_chunks)[0]["X"])


def test_an_epoch_is_one_pass_over_the_data_across_ranks(tiny_protocol, tmp_path, monkeypatch):
    from audiotask.engine.batches import TrainBatches

    task = make_task(tiny_protocol, tmp_path, duration=1.0, batch_size=2)
    task.prepare_data()
    task.setup("fit")
    assert task.train__len__() == 18  # 3 files of 6 s in 1-s chunks
    assert len(TrainBatches(task)) == 9
    for world_size, per_rank in ((2, 5), (3, 3), (32, 1)):
        monkeypatch.setenv("WORLD_SIZE", str(world_size))
        assert len(TrainBatches(task)) == per_rank


def test_mapped_metadata_pickles_as_its_folder(tiny_protocol, tmp_path):
    import pickle

    task = make_task(tiny_protocol, tmp_path)
    task.prepare_data()
    metadata = ProtocolMetadata.load(task.metadata_folder())
    data = pickle.dumps(metadata)
    assert len(data) < 1000  # the folder, not the arrays
    copy = pickle.loads(data)
    assert isinstance(copy.subsets["train"].segment_start, np.memmap)
    np.testing.assert_array_equal(copy.subsets["train"].segment_start, metadata.subsets["train"].segment_start)
    assert copy.labels == metadata.labels
    # a copy replaced meanwhile (its audio changed) is not silently mixed with the old one
    metadata.save(task.metadata_folder(), replace=True)
    with pytest.raises(RuntimeError, match="replaced while in use"):
        pickle.loads(data)
