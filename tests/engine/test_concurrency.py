"""Caches that several processes share: prepared once, read whole, no leftovers."""

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from audiotask.core.audio import AudioError
from audiotask.engine import metadata_store, readers
from audiotask.engine.locks import file_lock, remove_leftovers, writer_tag
from audiotask.engine.metadata import ProtocolMetadata
from audiotask.engine.readers import CachedReader, FileReader

# the concurrent writers are forked: they share the test's imports and registered protocols
fork = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")

#: where the counting stand-ins below write one line per call (set in each writer process)
_calls: Path = Path(os.devnull)
_original_decode = readers.decode_to_cache
_original_build = metadata_store.build_metadata


def _counting_decode(path, target, sample_rate, dtype):
    # slow enough that the two writers overlap; module-level: a decoding pool pickles it
    with open(_calls, "a") as log:
        log.write(f"{path}\n")
    time.sleep(0.2)
    return _original_decode(path, target, sample_rate, dtype)


def _counting_build(*args, **kwargs):
    with open(_calls, "a") as log:
        log.write("build\n")
    time.sleep(0.5)
    return _original_build(*args, **kwargs)


def run_together(target, count: int = 2, timeout: float = 60.0) -> None:
    """Run ``target(barrier)`` in ``count`` forked processes, which start it at once; each must exit cleanly."""
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(count)
    processes = [context.Process(target=target, args=(barrier,)) for _ in range(count)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout)
        assert process.exitcode == 0, f"a writer failed (exit code {process.exitcode})"


def leftovers(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith((".partial", ".stale"))]


def write_wavs(folder: Path, count: int = 3, **formats) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"file{index}.wav"
        soundfile.write(path, (0.3 * rng.standard_normal(16000 + 1000 * index)).astype(np.float32), 16000, **formats)
        paths.append(str(path))
    return paths


@fork
def test_two_processes_decoding_the_same_files_decode_each_once_and_read_the_same(tmp_path):
    paths = write_wavs(tmp_path / "audio", subtype="PCM_16")
    calls, cache = tmp_path / "calls.txt", tmp_path / "cache"

    def writer(barrier):
        global _calls
        _calls = calls
        readers.decode_to_cache = _counting_decode
        barrier.wait()
        reader = CachedReader(paths, 16000, cache)
        reader.prepare()
        np.save(tmp_path / f"read{os.getpid()}.npy", np.concatenate([reader.crop(k, 0.0, 1.0) for k in range(len(paths))]))

    run_together(writer)
    assert sorted(calls.read_text().split()) == sorted(paths)  # each file decoded once, by one of them
    read = [np.load(path) for path in sorted(tmp_path.glob("read*.npy"))]
    expected = np.concatenate([FileReader(paths, 16000).crop(k, 0.0, 1.0) for k in range(len(paths))])
    assert len(read) == 2 and all(np.array_equal(samples, expected) for samples in read)
    assert not leftovers(cache)


@fork
def test_two_processes_preparing_the_same_metadata_build_it_once(tmp_path):
    from audiotask.tasks import SoundEventDetection
    from audiotask.testing.dummies import load_protocol, make_sound_event_protocol

    protocol = load_protocol(make_sound_event_protocol(tmp_path / "data", name="Race"), "Race.SpeakerDiarization.Events")
    calls = tmp_path / "calls.txt"

    def writer(barrier):
        global _calls
        _calls = calls
        metadata_store.build_metadata = _counting_build
        task = SoundEventDetection(protocol, duration=2.0, num_workers=0, cache=tmp_path / "cache")
        barrier.wait()
        task.prepare_data()
        (tmp_path / f"uris{os.getpid()}.txt").write_text(" ".join(task.load_metadata().subsets["train"].uri.tolist()))

    run_together(writer)
    assert calls.read_text().split() == ["build"]
    read = {path.read_text() for path in tmp_path.glob("uris*.txt")}
    assert read == {"train00 train01 train02"}
    assert not leftovers(tmp_path / "cache")


def dead_pid() -> int:
    """The pid of a process that has exited."""
    process = multiprocessing.get_context("spawn").Process(target=int)
    process.start()
    process.join()
    return process.pid


@pytest.mark.skipif(os.name != "posix", reason="whether a pid lives is checked on POSIX only")
def test_leftovers_of_dead_writers_are_removed_those_of_live_ones_kept(tmp_path):
    host = writer_tag().rsplit(".", 1)[0]
    dead = tmp_path / f"entry.npy.{host}.{dead_pid()}.partial"
    dead_folder = tmp_path / f"key.{host}.{dead_pid()}.stale"
    alive = tmp_path / f"entry.npy.{writer_tag()}.partial"
    elsewhere = tmp_path / "entry.npy.otherhost.12.partial"  # another machine's: its age decides
    old_elsewhere = tmp_path / "entry.npy.otherhost.13.partial"
    for path in (dead, alive, elsewhere, old_elsewhere):
        path.write_bytes(b"x")
    (dead_folder / "train").mkdir(parents=True)
    seven_hours_ago = time.time() - 7 * 3600
    os.utime(old_elsewhere, (seven_hours_ago, seven_hours_ago))
    unrelated = tmp_path / "entry.npy"
    unrelated.write_bytes(b"x")

    assert sorted(remove_leftovers(tmp_path)) == sorted([dead, dead_folder, old_elsewhere])
    assert sorted(tmp_path.iterdir()) == sorted([alive, elsewhere, unrelated])


@pytest.mark.skipif(os.name != "posix", reason="whether a pid lives is checked on POSIX only")
def test_preparing_removes_what_crashed_writers_left(tiny_protocol, tmp_path):
    from audiotask.models import Debug
    from audiotask.tasks import SoundEventDetection

    task = SoundEventDetection(tiny_protocol, duration=2.0, num_workers=0, cache=tmp_path / "cache")
    folder = task.metadata_folder()
    host = writer_tag().rsplit(".", 1)[0]
    crashed = [folder.parent / f"{folder.name}.{host}.{dead_pid()}.partial", folder.parent / f"{folder.name}.{host}.{dead_pid()}.stale"]
    for path in crashed:
        (path / "train").mkdir(parents=True)
    audio = tmp_path / "cache" / "audio"
    audio.mkdir(parents=True)
    (audio / f"0123.npy.{host}.{dead_pid()}.partial").write_bytes(b"half an entry")
    Debug(task=task)
    task.prepare_data()
    assert ProtocolMetadata.exists(folder)
    assert not leftovers(tmp_path / "cache")


def test_nan_audio_is_refused_naming_the_file(tmp_path):
    samples = np.zeros(16000, dtype=np.float32)
    samples[100:103] = np.nan
    samples[200] = np.inf
    path = tmp_path / "broken.wav"
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    good = write_wavs(tmp_path / "good", count=1)
    reader = CachedReader([good[0], str(path)], 16000, tmp_path / "cache")
    with pytest.raises(AudioError, match=r"broken\.wav: 4 of 16000 samples are NaN or infinite"):
        reader.prepare(workers=1)
    # nothing of the broken file in the cache, the good one stays decoded
    assert [p.name for p in (tmp_path / "cache").glob("*.npy")] == [f"{reader.names[0]}.npy"]
    assert not leftovers(tmp_path / "cache")


def test_parallel_decoding_writes_the_same_cache_as_serial(tmp_path):
    paths = write_wavs(tmp_path / "pcm", subtype="PCM_16") + write_wavs(tmp_path / "float", count=2, subtype="FLOAT")
    stereo = tmp_path / "stereo44k.wav"
    soundfile.write(stereo, np.random.default_rng(1).uniform(-1.5, 1.5, (44100, 2)).astype(np.float32), 44100, subtype="FLOAT")
    paths.append(str(stereo))
    for dtype in ("int16", "float16"):
        CachedReader(paths, 16000, tmp_path / f"serial-{dtype}", dtype=dtype).prepare(workers=1)
        CachedReader(paths, 16000, tmp_path / f"parallel-{dtype}", dtype=dtype).prepare(workers=3)
        serial = sorted(p for p in (tmp_path / f"serial-{dtype}").iterdir() if p.suffix in (".npy", ".scale"))
        parallel = sorted(p for p in (tmp_path / f"parallel-{dtype}").iterdir() if p.suffix in (".npy", ".scale"))
        assert [p.name for p in serial] == [p.name for p in parallel] and len(serial) == 2 * len(paths)
        assert all(a.read_bytes() == b.read_bytes() for a, b in zip(serial, parallel))


@pytest.mark.slow
def test_a_second_locker_waits_for_the_first(tmp_path):
    context = multiprocessing.get_context("spawn")
    lock, log = tmp_path / "entry.lock", tmp_path / "log.txt"
    holder = context.Process(target=_hold, args=(lock, log, 1.0))
    holder.start()
    while not log.is_file():  # the holder has the lock
        time.sleep(0.01)
    with pytest.warns(UserWarning, match=r"waiting for .*\d+ to release"):
        with file_lock(lock, "testing"):
            with open(log, "a") as handle:
                handle.write("second\n")
    holder.join()
    assert log.read_text().split() == ["first", "released", "second"]


def _hold(lock: Path, log: Path, seconds: float) -> None:
    with file_lock(lock, "holding"):
        with open(log, "a") as handle:
            handle.write("first\n")
        time.sleep(seconds)
        with open(log, "a") as handle:
            handle.write("released\n")


@pytest.mark.slow
def test_decoding_processes_are_spawned_once_cuda_is_initialised(tmp_path, monkeypatch):
    import torch

    paths = write_wavs(tmp_path / "audio", count=2)
    CachedReader(paths, 16000, tmp_path / "serial").prepare(workers=1)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert readers.decoding_context().get_start_method() == "spawn"
    CachedReader(paths, 16000, tmp_path / "spawned").prepare(workers=2)
    entries = [entry for entry in sorted((tmp_path / "serial").iterdir()) if entry.suffix in (".npy", ".scale")]
    assert len(entries) == 4
    assert all(entry.read_bytes() == (tmp_path / "spawned" / entry.name).read_bytes() for entry in entries)
