"""Preparing metadata at scale: a generated protocol of 100,000 files.

Durations come from a ``duration`` preprocessor (a dict), "audio" is a fake path (metadata
only stores it), annotations come from one DCASE TSV through the cached ``.tsv`` loader.
Times: reading the TSV into pyannote annotations, preparing the metadata cache, loading it
back in a fresh process, and a first pass of ``segments_in`` lookups (one per file).

    .venv/bin/python benchmarks/prepare.py [--quick]
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SEGMENTS_PER_FILE = 5


def generated_protocol(num_files: int):
    """``num_files`` files of 10 s to 10 min, ``SEGMENTS_PER_FILE`` segments each."""
    name = f"Many{num_files}x{SEGMENTS_PER_FILE}"
    root = common.bench_dir() / name
    rng = np.random.default_rng(0)
    durations = np.round(rng.uniform(10.0, 600.0, num_files), 3)
    uris = [f"clip{i:06d}" for i in range(num_files)]
    if not (root / "database.yml").is_file():
        root.mkdir(parents=True, exist_ok=True)
        onsets, offsets = common.random_segments(rng, durations, SEGMENTS_PER_FILE, longest=5.0)
        common.write_protocol_files(root, name, uris, lambda path: common.write_tsv(path, uris, onsets, offsets, ["spk1", "spk2", "spk3"]))
    from audiotask.protocols.loading import load_protocol

    duration_of = dict(zip(uris, durations.tolist()))
    protocol = load_protocol(
        f"{name}.SpeakerDiarization.Bench", [root / "database.yml"],
        preprocessors={"audio": lambda file: f"/not/decoded/{file['uri']}.wav", "duration": lambda file: duration_of[file["uri"]]},
    )
    return protocol, root / "train.tsv"


def reload(folder: str) -> dict:
    """In a fresh process: load the prepared metadata, then one lookup per training file."""
    from audiotask.engine.metadata import ProtocolMetadata

    seconds_load, metadata = common.timed(ProtocolMetadata.load, folder)
    train = metadata.subsets["train"]
    rng = np.random.default_rng(0)
    starts = rng.uniform(0.0, 1.0, len(train)) * np.maximum(np.asarray(train.duration) - 5.0, 0.0)

    def lookups():
        return sum(len(train.segments_in(file, start, start + 5.0)[0]) for file, start in enumerate(starts.tolist()))

    seconds_lookups, found = common.timed(lookups)
    seconds_again, _ = common.timed(lookups)
    return {"load": seconds_load, "lookups": seconds_lookups, "again": seconds_again, "files": len(train),
            "segments": int(len(train.segment_start)), "found": found, "rss": common.rss_mib()}


def main() -> None:
    quick = common.quick_mode()
    num_files = 20_000 if quick else 100_000
    print(f"== prepare: metadata of a generated protocol of {num_files:,} files, {SEGMENTS_PER_FILE} segments each{' (quick)' if quick else ''}")
    started = time.perf_counter()
    protocol, tsv = generated_protocol(num_files)
    print(f"  protocol ready in {time.perf_counter() - started:.1f} s (generated once in {common.bench_dir()})")

    from audiotask.protocols.dcase import read_dcase_tsv
    from audiotask.tasks import VoiceActivityDetection

    cache = common.bench_dir() / "prepare-cache"
    shutil.rmtree(cache, ignore_errors=True)
    task = VoiceActivityDetection(protocol, duration=5.0, num_workers=0, cache=cache)
    with common.MemoryProbe() as probe:
        baseline = common.rss_mib()
        seconds_tsv, _ = common.timed(read_dcase_tsv, tsv)  # the loader caches it for prepare_data
        seconds_prepare, _ = common.timed(task.prepare_data)
    folder = task.metadata_folder()
    # what a new task's setup pays, once the cache exists, to find it (the protocol's
    # fingerprint: its "duration" and "audio" preprocessors are functions, whose values are
    # read and hashed), check it (a stat per audio file) and load it
    again = VoiceActivityDetection(protocol, duration=5.0, num_workers=0, cache=cache)
    seconds_key, _ = common.timed(again.load_metadata)
    size = sum(path.stat().st_size for path in folder.rglob("*")) / 2**20

    command = [sys.executable, __file__, "--reload", str(folder)]
    loaded = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
    shutil.rmtree(cache, ignore_errors=True)

    total = seconds_tsv + seconds_prepare
    common.table(
        ["step", "seconds", "notes"],
        [
            ["read TSV into pyannote annotations", f"{seconds_tsv:.2f}", f"{loaded['segments']:,} segments"],
            ["prepare_data (iterate protocol, build, save)", f"{seconds_prepare:.2f}", f"cache {size:.1f} MiB on disk"],
            ["  total preparation", f"{total:.2f}", f"peak RSS {probe.rss_main:.0f} MiB (before preparing: {baseline:.0f} MiB)"],
            ["found again by a new task (load_metadata)", f"{seconds_key:.2f}", "cache key, audio stat check, load"],
            ["ProtocolMetadata.load (fresh process)", f"{loaded['load']:.4f}", "memory-mapped .npy arrays"],
            [f"first pass of segments_in ({loaded['files']:,} lookups)", f"{loaded['lookups']:.3f}",
             f"{1e6 * loaded['lookups'] / loaded['files']:.1f} us each; {loaded['found']:,} segments found"],
            ["second pass of segments_in", f"{loaded['again']:.3f}", f"RSS of the reloading process {loaded['rss']:.0f} MiB"],
        ],
        title="Metadata preparation",
    )
    print("\nTargets" + (" (quick run: 20,000 files; the targets are for 100,000)" if quick else ""))
    print(common.target_line("metadata prepared (TSV + prepare_data)", total, 60.0, "s", higher_is_better=False))
    print(common.target_line("metadata reloaded (load + first lookup pass)", loaded["load"] + loaded["lookups"], 2.0, "s", higher_is_better=False))
    print(common.target_line("metadata found by a new task and reloaded (+ lookups)", seconds_key + loaded["lookups"], 2.0, "s", higher_is_better=False))
    print(common.target_line("peak memory while preparing", probe.rss_main / 1024, 2.0, "GiB", higher_is_better=False))


if __name__ == "__main__":
    if "--reload" in sys.argv:
        print(json.dumps(reload(sys.argv[sys.argv.index("--reload") + 1])))
    else:
        main()
