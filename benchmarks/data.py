"""Training-data throughput: VoiceActivityDetection samples per second, and peak memory.

5-s chunks, batches of 32, with 0 and 2 dataloader workers, reading the int16 decoded-audio
cache or the audio files, on debug-speech (if present) and on a generated large protocol
(1,000 files of 10 minutes, 200,000 segments). Baselines in the same run: a naive reader
(opens the file per chunk with soundfile, scans all the file's annotations in Python, as
pyannote.audio does) and one plain copy of the batch (the memory-bandwidth limit).

    .venv/bin/python benchmarks/data.py [--quick]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from torch.utils.data import DataLoader, IterableDataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DURATION, BATCH_SIZE = 5.0, 32
#: quoted in the issue (pyannote.audio 4.0.7, debug-speech, this kind of machine); not measured here
PYANNOTE_AUDIO = {0: 309, 2: 443}


def make_task(protocol, audio_cache, workers):
    from audiotask.models.crnn import CRNN
    from audiotask.tasks import VoiceActivityDetection

    task = VoiceActivityDetection(
        protocol, duration=DURATION, batch_size=BATCH_SIZE, num_workers=workers, cache=common.bench_dir() / "cache", audio_cache=audio_cache
    )
    model = CRNN(task=task)
    task.prepare_data()
    task.setup("fit")
    model.attach_specifications(task.specifications)
    return task


def throughput(batches, num_batches: int) -> tuple[float, common.MemoryProbe]:
    """Samples per second over ``num_batches`` after one warm-up batch, and peak memory."""
    with common.MemoryProbe() as probe:
        iterator = iter(batches())
        next(iterator)  # warm-up: worker start-up, first file opens, first pages mapped
        start = time.perf_counter()
        for _ in range(num_batches):
            next(iterator)
        elapsed = time.perf_counter() - start
        probe.sample_children()
        del iterator  # stops the workers
    return num_batches * BATCH_SIZE / elapsed, probe


# ---- the naive baseline ------------------------------------------------------------------
class NaiveFileChunks(IterableDataset):
    """What toolkits do today: per chunk, open the file, read the region, scan every
    annotation of the file in Python to set the active frames."""

    def __init__(self, paths, annotations, files, starts, frames, sample_rate):
        self.paths, self.annotations = paths, annotations
        self.files, self.starts = files, starts
        self.frames, self.sample_rate = frames, sample_rate
        self.num_samples = round(DURATION * sample_rate)
        self.num_frames = frames.num_frames(self.num_samples)

    def frame_index(self, seconds: float) -> int:
        frames = self.frames
        return math.ceil((seconds - frames.start - 0.5 * frames.duration) / frames.step - 1e-9)

    def chunk(self, file: int, start: float) -> dict:
        first = round(start * self.sample_rate)
        with soundfile.SoundFile(self.paths[file]) as handle:
            handle.seek(max(first, 0))
            samples = handle.read(self.num_samples - max(-first, 0), dtype="float32", always_2d=True)[:, 0]
        waveform = np.zeros(self.num_samples, dtype=np.float32)
        waveform[max(-first, 0) : max(-first, 0) + len(samples)] = samples
        y = np.zeros((self.num_frames, 1), dtype=np.uint8)
        for onset, offset in self.annotations[file]:
            if onset < start + DURATION and offset > start:
                first_frame = min(max(self.frame_index(onset - start), 0), self.num_frames)
                last_frame = min(max(self.frame_index(offset - start), 0), self.num_frames)
                y[first_frame:last_frame, 0] = 1
        return {"X": torch.from_numpy(waveform)[None], "y": torch.from_numpy(y)}

    def __iter__(self):
        from audiotask.utils.random import worker_identity

        worker, num_workers = worker_identity()
        for index in range(worker, len(self.files), num_workers):
            yield self.chunk(int(self.files[index]), float(self.starts[index]))


def naive_dataset(task, num_chunks: int) -> NaiveFileChunks:
    """Naive chunks at the positions of the task's own sampler (same files, same starts)."""
    train = task.metadata.subsets["train"]
    starts, ends, offsets = train.segment_start, train.segment_end, train.segment_offsets
    annotations = [list(zip(starts[a:b].tolist(), ends[a:b].tolist())) for a, b in zip(offsets[:-1], offsets[1:])]
    files, chunk_starts = task.make_sampler(epoch=0, rank=0, worker=0).take(num_chunks)[:2]
    return NaiveFileChunks([str(path) for path in train.audio], annotations, files, chunk_starts, task.output_frames(), task.sample_rate)


def check_agreement(task, naive: NaiveFileChunks) -> str:
    """Our batch vs the naive one on the same 32 chunks: targets must be identical."""
    files, starts = naive.files[:BATCH_SIZE], naive.starts[:BATCH_SIZE]
    ours = task.make_batch("train", files, starts, DURATION)
    theirs = [naive.chunk(int(f), float(s)) for f, s in zip(files, starts)]
    same_y = torch.equal(ours["y"], torch.stack([t["y"] for t in theirs]))
    dx = float((ours["X"] - torch.stack([t["X"] for t in theirs])).abs().max())
    return f"targets {'identical' if same_y else 'DIFFER'}, max |dX| {dx:.2g}"


def copy_limit(repeats: int) -> float:
    """Chunks per second of one plain copy of a (32, 80000) float32 batch, one core."""
    rng = np.random.default_rng(0)
    source = rng.standard_normal((BATCH_SIZE, round(DURATION * common.SAMPLE_RATE))).astype(np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    start = time.perf_counter()
    for _ in range(repeats):
        np.copyto(target, source)
    return repeats * BATCH_SIZE / (time.perf_counter() - start)


# ---- the run -------------------------------------------------------------------------
def run_dataset(label, protocol, quick: bool, limit: float) -> list[dict]:
    ours_batches, naive_batches = (100, 15) if quick else (1000, 100)
    results = []
    naive = {}
    for workers in (0, 2):
        task = make_task(protocol, None, workers)
        dataset = naive_dataset(task, (naive_batches + 2) * BATCH_SIZE * max(workers, 1))
        if workers == 0:
            print(f"  {label}: {len(task.metadata.subsets['train'])} training files; naive vs ours on one batch: {check_agreement(task, dataset)}")
        loader = lambda: DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=workers, multiprocessing_context="fork" if workers else None)
        speed, probe = throughput(loader, naive_batches)
        naive[workers] = speed
        results.append(dict(data=label, reader="naive (soundfile)", workers=workers, speed=speed, probe=probe))
    for audio_cache in ("int16", None):
        for workers in (0, 2):
            task = make_task(protocol, audio_cache, workers)
            speed, probe = throughput(task.train_dataloader, ours_batches)
            results.append(
                dict(data=label, reader=f"ours ({audio_cache or 'file'})", workers=workers, speed=speed, probe=probe,
                     vs_naive=speed / naive[workers], vs_copy=speed / limit)
            )
            del task
    return results


def main() -> None:
    quick = common.quick_mode()
    # loading is measured on one core, as in a dataloader worker (which torch limits to one
    # thread): on a busy machine, intra-op threads in collate's torch.stack only add noise
    torch.set_num_threads(1)
    print(f"== data: VAD training samples/s, {DURATION:g}-s chunks, batch {BATCH_SIZE}{' (quick)' if quick else ''}, 1 torch thread")
    print(f"  RSS after imports: {common.rss_mib():.0f} MiB ('RSS main' below is the whole process: imports, task, model, loading)")
    limit = copy_limit(50 if quick else 300)
    print(f"  copy limit: np.copyto of a ({BATCH_SIZE}, {round(DURATION * common.SAMPLE_RATE)}) float32 batch: {common.number(limit)} chunks/s on one core")
    results = []
    protocol = common.debug_speech_protocol()
    if protocol is not None:
        results += run_dataset("debug-speech", protocol, quick, limit)
    started = time.perf_counter()
    large = common.large_protocol()
    print(f"  large protocol ready in {time.perf_counter() - started:.1f} s (generated once in {common.bench_dir()})")
    results += run_dataset("large 1000x10min", large, quick, limit)

    rows = [
        [r["data"], r["reader"], r["workers"], common.number(r["speed"]), f"{1000 * BATCH_SIZE / r['speed']:.1f}",
         f"{r['vs_naive']:.1f}x" if "vs_naive" in r else "", f"{r['vs_copy']:.2f}" if "vs_copy" in r else "",
         f"{r['probe'].rss_main:.0f}", f"{r['probe'].rss_children:.0f}", f"{r['probe'].pss_total:.0f}"]
        for r in results
    ]
    common.table(
        ["data", "reader", "workers", "samples/s", "ms/batch", "ours/naive", "ours/copy", "RSS main MiB", "RSS workers MiB", "PSS total MiB"],
        rows, title="Throughput (RSS: peak per process, shared pages counted in each; PSS: peak of the sum, shared pages split)",
    )
    print(f"  pyannote.audio 4.0.7 on debug-speech (quoted in the issue, not measured here): {PYANNOTE_AUDIO[0]} samples/s with 0 workers, {PYANNOTE_AUDIO[2]} with 2")
    for r in results:
        if r["data"] == "debug-speech" and r["reader"].startswith("ours"):
            print(f"    {r['reader']}, {r['workers']} workers: {r['speed'] / PYANNOTE_AUDIO[r['workers']]:.0f}x that figure")
    single = [r["speed"] for r in results if r["reader"].startswith("ours") and r["workers"] == 0]
    print("\nTargets")
    print(common.target_line("VAD samples/s, one process (worst of ours with 0 workers)", min(single), 5000, "samples/s"))
    print(common.target_line("VAD samples/s, one process (best of ours with 0 workers), aim", max(single), 10000, "samples/s"))


if __name__ == "__main__":
    main()
