"""The fast training path equals the plain one: batches in place, vectorised targets,
readers writing into a batch, the sampler drawing a batch at once."""

import itertools

import numpy as np
import pytest
import soundfile
import torch

from audiotask.core.frames import Frames
from audiotask.engine.readers import CachedReader, FileReader
from audiotask.engine.samplers import BLOCK, ChunkSampler
from audiotask.engine.targets import frame_targets, frame_targets_batch
from audiotask.models import Debug
from audiotask.tasks import SoundEventDetection


def test_sampler_take_equals_iteration():
    regions = np.array([[0.0, 10.0], [2.0, 3.0], [0.0, 30.0]])
    for min_duration in (None, 1.0):
        options = dict(min_duration=min_duration, batch_size=8, seed=5)
        reference = list(itertools.islice(iter(ChunkSampler(regions, np.array([0, 0, 1]), 2.0, **options)), 3 * BLOCK))
        sampler = ChunkSampler(regions, np.array([0, 0, 1]), 2.0, **options)
        drawn = [sampler.take(count) for count in (5, BLOCK, 0, BLOCK + 3, 1, BLOCK - 9)]
        files, starts, durations, _ = (np.concatenate(column) for column in zip(*drawn))
        assert sampler.position == 3 * BLOCK
        assert [(c.file, c.start, c.duration) for c in reference] == list(zip(files.tolist(), starts.tolist(), durations.tolist()))


def test_batched_frame_targets_equal_one_chunk_at_a_time():
    rng = np.random.default_rng(0)
    frames = Frames(step=0.064, duration=0.128, hop_samples=1024, start=0.01)
    chunk = rng.integers(0, 6, 40)
    starts = rng.uniform(-2.0, 6.0, 40).round(2)
    ends = starts + rng.uniform(0.0, 3.0, 40).round(2)
    classes = rng.integers(0, 3, 40)
    batch = frame_targets_batch(chunk, starts, ends, classes, frames=frames, num_chunks=6, num_frames=60, num_classes=3)
    assert batch.shape == (6, 60, 3) and batch.dtype == np.uint8
    for index in range(6):
        mine = chunk == index
        single = frame_targets(starts[mine], ends[mine], classes[mine], frames=frames, num_frames=60, num_classes=3)
        expected = np.zeros((60, 3), dtype=np.uint8)
        for onset, offset, label in zip(starts[mine], ends[mine], classes[mine]):
            first, last = np.clip(frames.index_ceil(np.array([onset, offset])), 0, 60)
            expected[first:last, label] = 1
        np.testing.assert_array_equal(single, expected)
        np.testing.assert_array_equal(batch[index], expected)


def test_a_worker_hands_whole_batches_to_a_loader_that_does_not_collate(tiny_protocol, tmp_path):
    task = SoundEventDetection(tiny_protocol, duration=2.0, batch_size=4, num_workers=0, cache=tmp_path / "cache")
    Debug(task=task)
    task.prepare_data()
    task.setup("fit")
    loader = task.train_dataloader()
    assert loader.batch_size is None and loader.collate_fn.__name__ == "default_convert"
    batch = next(iter(loader))
    assert batch["X"].shape == (4, 1, 32000) and batch["y"].shape == (4, 3)
    assert batch["y"].dtype == torch.uint8


@pytest.fixture
def wav_files(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for index, subtype in enumerate(("PCM_16", "FLOAT", "PCM_24")):
        path = tmp_path / f"clip{index}.wav"
        soundfile.write(path, (0.3 * rng.standard_normal(16000 * 3)).astype(np.float32), 16000, subtype=subtype)
        paths.append(str(path))
    return paths


def test_readers_write_into_out_and_pcm16_matches_libsndfile(wav_files, tmp_path):
    readers = [FileReader(wav_files, 16000), CachedReader(wav_files, 16000, tmp_path / "cache")]
    readers[1].prepare()
    for file, start in itertools.product(range(3), (-0.7, 0.0, 1.3, 2.5, 4.0)):
        expected, _ = soundfile.read(wav_files[file], dtype="float32")
        first = round(start * 16000)
        padded = np.zeros(16000 * 8, dtype=np.float32)
        padded[16000 * 2 : 16000 * 5] = expected
        reference = padded[16000 * 2 + first : 16000 * 2 + first + 16000]
        for reader in readers:
            out = np.full(16000, np.nan, dtype=np.float32)
            assert reader.crop(file, start, 1.0, out=out) is out
            np.testing.assert_array_equal(out, reader.crop(file, start, 1.0))
            if isinstance(reader, FileReader):
                np.testing.assert_array_equal(out, reference)  # bit-exact, 16-bit fast path included
            else:
                np.testing.assert_allclose(out, reference, atol=1.5 / 32767)
    with pytest.raises(ValueError, match="out must be"):
        readers[0].crop(0, 0.0, 1.0, out=np.zeros(10, dtype=np.float32))


def reference_chunk(task, file: int, start: float, duration: float):
    """One training chunk built without the engine: its samples read by soundfile from the
    protocol's audio file, its targets from the protocol's annotation by the frames'
    convention (a frame is active when its centre lies in an event; a chunk when an event
    overlaps it)."""
    train = task.metadata.subsets["train"]
    path, uri = str(train.audio[file]), str(train.uri[file])
    X, _ = soundfile.read(path, start=int(round(start * 16000)), frames=int(round(duration * 16000)), dtype="float32")
    annotation = next(f["annotation"] for f in task.protocol.train() if f["uri"] == uri)
    classes = task.specifications.classes
    events = [(segment.start - start, segment.end - start, classes.index(label))
              for segment, _, label in annotation.itertracks(yield_label=True) if label in classes]
    if task.specifications.resolution.value == "frame":
        frames = task.model.frames
        num_frames = int(round(duration * 16000)) // frames.hop_samples
        centres = frames.start + np.arange(num_frames) * frames.step + frames.duration / 2
        y = np.zeros((num_frames, len(classes)), dtype=np.uint8)
        for onset, offset, k in events:
            y[(centres >= onset) & (centres < offset), k] = 1
    else:
        y = np.zeros(len(classes), dtype=np.uint8)
        for onset, offset, k in events:
            y[k] |= offset > 0 and onset < duration
    return X, y


def test_training_batches_hold_the_audio_and_labels_of_their_chunks(tiny_protocol, tmp_path):
    """Each batch row against its chunk read with soundfile and labelled from the annotation
    by hand: nothing of the batch code builds the expected values."""
    for resolution in ("frame", "chunk"):
        task = SoundEventDetection(
            tiny_protocol, duration=2.0, min_duration=1.0, batch_size=4, num_workers=0, resolution=resolution,
            cache=tmp_path / "cache"
        )
        Debug(task=task)
        task.prepare_data()
        task.setup("fit")
        task.model.attach_specifications(task.specifications)
        chunks = list(itertools.islice(iter(task.make_sampler(epoch=0)), 12))
        batches = list(itertools.islice(iter(task.train_dataloader()), 3))
        labelled = 0
        for index, chunk in enumerate(chunks):
            batch, row = batches[index // 4], index % 4
            X, y = reference_chunk(task, chunk.file, chunk.start, chunk.duration)
            # the 16-bit audio cache is exact for 16-bit files
            np.testing.assert_array_equal(batch["X"][row, 0].numpy(), X)
            np.testing.assert_array_equal(batch["y"][row].numpy(), y)
            labelled += int(y.any())
        assert labelled > 0  # the chunks hold events: the comparison is not of empty targets
