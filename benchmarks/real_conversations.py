"""Conversations of 2 to 4 real speakers, built from the speech recordings of the real-recordings
benchmark, to measure speaker diarization on voices nobody here recorded.

``real_recordings.py build`` leaves every Speech source under ``ROOT/isolated/Speech`` and its
group (one speaker: a KTuberling language's volunteer, a Hedgewars or Kajongg voice, ALSA's
test voice) and split in ``ROOT/metadata/sources.tsv``. This script mixes them into
conversations: a file's speakers are 2 to 4 groups of one split (splits stay disjoint by
speaker), turns of 1 to 3 utterances of one speaker follow each other with gaps drawn from
-0.6 to 0.8 s (a negative gap overlaps the previous turn), each speaker at its own level
(-6 to +6 dB), over a faint noise floor. The reference RTTM has a line per utterance, the UEM
covers each whole file, and ``database.yml`` is a pyannote.database protocol
(``RealConversations.SpeakerDiarization.Real``) that ``audiotask train --task diarization``,
``tune`` and ``evaluate --task diarization`` read. Beside it, the trivial hypotheses
(``SUBSET.annotated-one-speaker.rttm``: all annotated time one speaker;
``SUBSET.speech-one-speaker.rttm``: the reference speech as one speaker).

    python benchmarks/real_conversations.py build /path/to/real-recordings --output /path/to/conversations
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from audiotask.inference.formats import write_rttm

sys.path.insert(0, str(Path(__file__).parent))  # real_recordings.py, beside this file

SAMPLE_RATE = 16_000
#: conversations per split and their duration (seconds)
SIZES = {"train": 200, "development": 20, "test": 40}
DURATION = 30.0
SPEAKERS_PER_FILE = (2, 4)
UTTERANCES_PER_TURN = (1, 3)
PAUSE_IN_TURN = (0.1, 0.4)
GAP_BETWEEN_TURNS = (-0.6, 0.8)
LEVEL_DB = (-6.0, 6.0)
NOISE_RMS = 1e-3


def speakers_by_split(root: Path) -> dict[str, dict[str, list[np.ndarray]]]:
    """``{split: {speaker group: [utterances]}}``: the Speech sources of the packages that
    real_recordings.py downloaded under ``ROOT/downloads``, decoded and trimmed as it does,
    each group in the split that its build gave it (``ROOT/metadata/sources.tsv``)."""
    import real_recordings as rr

    splits: dict[str, str] = {}
    with open(root / "metadata" / "sources.tsv", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["label"] == "Speech":
                splits[row["group"]] = row["split"]
    packages = {rule.package for rule in rr.EVENT_RULES if rule.label == "Speech"}
    archives = {name: (rr.download(rr.PACKAGES[name], root / "downloads"), "") for name in sorted(packages)}
    result: dict[str, dict[str, list[np.ndarray]]] = {split: {} for split in SIZES}
    for source in rr.load_sources(archives):
        if source.label == "Speech" and source.group in splits:
            result[splits[source.group]].setdefault(source.group, []).append(source.audio)
    for split in result:  # a speaker needs a few utterances to hold turns
        result[split] = {group: clips for group, clips in result[split].items() if len(clips) >= 3}
    return result


def conversation(rng: random.Random, speakers: dict[str, list[np.ndarray]]) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """One file: its samples and its reference turns ``(start, end, speaker)``."""
    chosen = rng.sample(sorted(speakers), rng.randint(*SPEAKERS_PER_FILE))
    gains = {s: 10 ** (rng.uniform(*LEVEL_DB) / 20) for s in chosen}
    total = int(DURATION * SAMPLE_RATE)
    mix = np.random.default_rng(rng.getrandbits(32)).normal(0, NOISE_RMS, total).astype(np.float32)
    segments: list[tuple[float, float, str]] = []
    time, previous = 0.2, None
    free = {s: 0.0 for s in chosen}  # when each speaker's last utterance ended: nobody overlaps themself
    while True:
        speaker = rng.choice([s for s in chosen if s != previous])
        start = time if previous is None else max(0.0, time + rng.uniform(*GAP_BETWEEN_TURNS))
        start = max(start, free[speaker] + PAUSE_IN_TURN[0])
        for index in range(rng.randint(*UTTERANCES_PER_TURN)):
            audio = rng.choice(speakers[speaker])
            audio = gains[speaker] * 0.1 * audio / max(1e-6, float(np.sqrt(np.mean(audio ** 2))))
            first = int(start * SAMPLE_RATE)
            if first + len(audio) > total:
                return np.clip(mix, -1, 1), segments
            mix[first:first + len(audio)] += audio
            end = start + len(audio) / SAMPLE_RATE
            segments.append((start, end, speaker))
            free[speaker] = end
            start = end + rng.uniform(*PAUSE_IN_TURN)
        time, previous = end, speaker


def annotations(uri: str, segments: list[tuple[float, float, str]], duration: float):
    """The reference of a conversation (a turn per utterance) and its two trivial hypotheses:
    all of its ``duration`` one speaker, its speech (the union of the turns) one speaker."""
    from pyannote.core import Annotation, Segment

    reference, annotated, speech = (Annotation(uri=uri) for _ in range(3))
    for start, end, speaker in segments:
        reference[Segment(start, end), len(reference)] = speaker.replace(" ", "_")  # RTTM labels have no spaces
    annotated[Segment(0.0, duration)] = "everyone"
    for span in reference.get_timeline().support():
        speech[span] = "everyone"
    return reference, annotated, speech


def build(source_root: Path, output: Path, seed: int = 0) -> None:
    rng = random.Random(seed)
    splits = speakers_by_split(source_root)
    (output / "audio").mkdir(parents=True, exist_ok=True)
    for split, count in SIZES.items():
        speakers = splits[split]
        if len(speakers) < SPEAKERS_PER_FILE[1]:
            raise SystemExit(f"{split}: {len(speakers)} speakers, {SPEAKERS_PER_FILE[1]} needed")
        uris, written = [], ([], [], [])
        for index in range(count):
            uri = f"{split}{index:03d}"
            audio, segments = conversation(rng, speakers)
            sf.write(output / "audio" / f"{uri}.wav", audio, SAMPLE_RATE, subtype="PCM_16")
            for kept, annotation in zip(written, annotations(uri, segments, len(audio) / SAMPLE_RATE)):
                kept.append(annotation)
            uris.append(uri)
        for name, kept in zip(("", ".annotated-one-speaker", ".speech-one-speaker"), written):
            write_rttm(output / f"{split}{name}.rttm", kept)
        (output / f"{split}.lst").write_text("".join(f"{uri}\n" for uri in uris))
        (output / f"{split}.uem").write_text("".join(f"{uri} 1 0.000 {DURATION:.3f}\n" for uri in uris))
        print(f"{split}: {count} conversations of {DURATION:g} s, {len(speakers)} speakers", flush=True)
    subsets = "".join(
        f"            {split}:\n               uri: {split}.lst\n               annotation: {split}.rttm\n"
        f"               annotated: {split}.uem\n" for split in SIZES
    )
    (output / "database.yml").write_text(
        "Protocols:\n   RealConversations:\n      SpeakerDiarization:\n         Real:\n            scope: database\n"
        + subsets + "\nDatabases:\n   RealConversations: ./audio/{uri}.wav\n"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("build", help="mix the conversations")
    command.add_argument("source", type=Path, help="the real-recordings benchmark's folder (ROOT of its build)")
    command.add_argument("--output", type=Path, required=True)
    command.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build(args.source, args.output, seed=args.seed)


if __name__ == "__main__":
    main()
