"""A built-in, download-free sound event detection data set in the style of DESED's synthetic set.

Ten-second mono soundscapes mix synthesised foreground events of the ten DCASE classes over
coloured background noise, at random times and signal-to-noise ratios, with exact strong
labels. Everything is derived from a seed: the same seed gives byte-identical files.

Onsets and durations are drawn on a millisecond grid, so that the labels written with three
decimals are the exact sample boundaries of the event waveforms (at any sample rate that is
a multiple of 1 kHz; otherwise within half a sample).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import yaml

from audiotask.core.frames import seconds_to_samples
from audiotask.demo.synthesis import CLASSES, DURATION_RANGES, background, synthesize_event
from audiotask.protocols.dcase import write_dcase_tsv
from audiotask.protocols.uris import uri_of

PROTOCOL = "AudiotaskDemo.SpeakerDiarization.SoundEvents"
#: the same data with its training set split into label kinds, as DCASE's comes: a
#: pyannote.database meta-protocol uniting three protocols (strong, weak, unlabelled)
MIXED_PROTOCOL = "X.SpeakerDiarization.AudiotaskDemoMixed"
SPLITS = ("train", "development", "test")
#: shares of the training files kept strongly labelled, weakly labelled, unlabelled (DCASE's 1 : 1 : 2)
KIND_SHARES = {"strong": 0.25, "weak": 0.25, "unlabelled": 0.5}
#: bump whenever synthesis changes, so that cached data sets are rebuilt
VERSION = 2  # 2: the training set's label-kind split and the mixed meta-protocol

# ---------------------------------------------------------------------------------------------
# soundscapes: which events where ("specs"), then their rendering over a background
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventSpec:
    """One event of a soundscape: ``label`` from ``onset`` to ``offset`` seconds (1 ms grid).

    ``snr`` is the event's RMS over the background's RMS, in dB.
    """

    label: str
    onset: float
    offset: float
    snr: float = 0.0


def sample_events(
    rng: np.random.Generator, *, duration: float, max_events: int, snr_range: tuple[float, float]
) -> list[EventSpec]:
    """Draw 1 to ``max_events`` events (sorted by onset) lying fully inside ``duration`` seconds.

    Durations follow ``DURATION_RANGES`` (capped at ``duration``). Events of different classes
    may overlap; two events of the same class never do, so that each label is one event.
    """
    clip_ms = int(round(duration * 1000))
    events: list[EventSpec] = []
    for _ in range(int(rng.integers(1, max_events + 1))):
        for _attempt in range(10):  # retry a class/onset colliding with an event of its class
            label = CLASSES[int(rng.integers(len(CLASSES)))]
            low, high = (min(int(round(s * 1000)), clip_ms) for s in DURATION_RANGES[label])
            length = int(rng.integers(low, high + 1))
            onset = int(rng.integers(0, clip_ms - length + 1))
            if all(e.label != label or e.offset * 1000 <= onset or onset + length <= e.onset * 1000 for e in events):
                snr = float(rng.uniform(*snr_range))
                events.append(EventSpec(label, onset / 1000, (onset + length) / 1000, snr))
                break
    return sorted(events, key=lambda e: (e.onset, e.offset, e.label))


def render_events(
    events: list[EventSpec], rng: np.random.Generator, *, num_samples: int, sample_rate: int
) -> np.ndarray:
    """Sum of the synthesised ``events``, each at RMS ``10 ** (snr / 20)``, ``(num_samples,)`` float64.

    The event occupies exactly samples ``round(onset * sr)`` to ``round(offset * sr)``; the
    RMS is taken over those samples, relative to a unit-RMS background.
    """
    mix = np.zeros(num_samples)
    for event in events:
        start = seconds_to_samples(event.onset, sample_rate)
        end = seconds_to_samples(event.offset, sample_rate)
        if not 0 <= start < end <= num_samples:
            raise ValueError(f"{event} does not fit in {num_samples} samples at {sample_rate} Hz")
        wave = synthesize_event(event.label, (end - start) / sample_rate, sample_rate, rng).astype(np.float64)
        mix[start:end] += wave * (10 ** (event.snr / 20) / (np.sqrt(np.mean(wave**2)) + 1e-12))
    return mix


def make_soundscape(
    rng: np.random.Generator,
    *,
    duration: float = 10.0,
    sample_rate: int = 16000,
    max_events: int = 4,
    snr_range: tuple[float, float] = (0.0, 20.0),
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """One soundscape: background plus 1 to ``max_events`` events at random times and SNRs.

    Parameters
    ----------
    rng : np.random.Generator
        Source of all randomness.
    duration : float
        In seconds.
    sample_rate : int
        In Hz.
    max_events : int
        Most events in the soundscape (at least one).
    snr_range : (float, float)
        Event-to-background SNR in dB, drawn uniformly per event.

    Returns
    -------
    waveform : np.ndarray
        ``(samples,)`` float32, peak between 0.09 and 0.9 (random overall level).
    labels : list of (onset, offset, label)
        Sorted by onset; seconds on a 1 ms grid, the exact boundaries of each event waveform.
    """
    if duration < 0.3 or max_events < 1 or snr_range[0] > snr_range[1]:
        raise ValueError(
            f"Expected duration >= 0.3 s, max_events >= 1 and snr_range (low, high); "
            f"got {duration}, {max_events}, {snr_range}"
        )
    num_samples = seconds_to_samples(duration, sample_rate)
    events = sample_events(rng, duration=duration, max_events=max_events, snr_range=snr_range)
    mix = background(num_samples, sample_rate, rng)
    mix += render_events(events, rng, num_samples=num_samples, sample_rate=sample_rate)
    peak = 0.9 * 10 ** (-rng.uniform(0.0, 20.0) / 20)  # recording level varies across clips
    waveform = (mix * (peak / np.max(np.abs(mix)))).astype(np.float32)
    return waveform, [(e.onset, e.offset, e.label) for e in events]


# ---------------------------------------------------------------------------------------------
# the data set on disk, as a pyannote.database protocol
# ---------------------------------------------------------------------------------------------


def _to_pcm16(waveform: np.ndarray) -> np.ndarray:
    """float in [-1, 1] -> int16, converted here so that files do not depend on libsndfile's scaling."""
    return np.round(np.clip(waveform, -1.0, 1.0) * 32767).astype(np.int16)


def _write_split(
    root: Path, split: str, split_index: int, count: int, *, seed: int, duration: float, sample_rate: int
) -> None:
    """Write the ``count`` soundscapes of ``split`` and its metadata (labels, uris, durations)."""
    audio, metadata = root / "audio" / split, root / "metadata"
    audio.mkdir(parents=True, exist_ok=True)
    metadata.mkdir(parents=True, exist_ok=True)
    filenames = [f"{split}_{index:04d}.wav" for index in range(count)]
    for stale in set(p.name for p in audio.glob(f"{split}_*.wav")) - set(filenames):
        (audio / stale).unlink()  # left by an earlier, bigger build: would confuse a glob
    rows, durations = [], []
    for index, filename in enumerate(filenames):
        # one seed per file: a file does not depend on how many files other splits have
        rng = np.random.default_rng(np.random.SeedSequence([seed, split_index, index]))
        waveform, labels = make_soundscape(rng, duration=duration, sample_rate=sample_rate)
        soundfile.write(audio / filename, _to_pcm16(waveform), sample_rate, subtype="PCM_16")
        rows.extend((filename, onset, offset, label) for onset, offset, label in labels)
        durations.append(f"{filename}\t{len(waveform) / sample_rate:.3f}\n")
    write_dcase_tsv(metadata / f"{split}.tsv", rows)
    (metadata / f"{split}.lst").write_text("".join(f"{uri_of(name)}\n" for name in filenames))
    if split == "train":
        _write_label_kinds(metadata, filenames, rows)
    (metadata / f"{split}_durations.tsv").write_text("filename\tduration\n" + "".join(durations))


def kind_of_files(count: int) -> list[str]:
    """The label kind each of ``count`` training files keeps (:data:`KIND_SHARES`), by index."""
    strong = int(round(count * KIND_SHARES["strong"]))
    weak = int(round(count * KIND_SHARES["weak"]))
    return ["strong"] * strong + ["weak"] * weak + ["unlabelled"] * (count - strong - weak)


def _write_label_kinds(metadata: Path, filenames: list[str], rows: list) -> None:
    """``train_strong.tsv`` / ``.lst`` (strong labels), ``train_weak.tsv`` / ``.lst`` (which
    classes occur, DCASE's weak-label format) and ``train_unlabelled.lst`` (no label)."""
    kinds = dict(zip(filenames, kind_of_files(len(filenames))))
    for kind in ("strong", "weak", "unlabelled"):
        names = [name for name in filenames if kinds[name] == kind]
        (metadata / f"train_{kind}.lst").write_text("".join(f"{uri_of(name)}\n" for name in names))
    write_dcase_tsv(metadata / "train_strong.tsv", [row for row in rows if kinds[row[0]] == "strong"])
    tags: dict[str, set] = {name: set() for name in filenames if kinds[name] == "weak"}
    for filename, _, _, label in rows:
        if filename in tags:
            tags[filename].add(label)
    (metadata / "train_weak.tsv").write_text(
        "filename\tevent_labels\n" + "".join(f"{name}\t{','.join(sorted(labels))}\n" for name, labels in tags.items())
    )


def _database_yml(counts: dict[str, int], duration: float) -> str:
    """``database.yml`` text: one template per split directory; paths relative to the yml.

    ``duration`` (seconds, that of every file) is declared so that no one opens a file for it.
    """
    database, task, protocol = PROTOCOL.split(".")
    subsets = {
        split: {"uri": f"metadata/{split}.lst", "annotation": f"metadata/{split}.tsv", "duration": float(duration)}
        for split in SPLITS
        if counts[split] > 0  # pyannote.database cannot load an empty subset
    }
    # labels name the same classes in every file: "global" scope (pyannote's default is "file")
    entries = {"scope": "global", "classes": list(CLASSES), **subsets}
    protocols = {protocol: entries}
    if counts["train"] > 0:
        kinds = set(kind_of_files(counts["train"]))
        train_of = {
            "Strong": {"uri": "metadata/train_strong.lst", "annotation": "metadata/train_strong.tsv"},
            "Weak": {"uri": "metadata/train_weak.lst", "annotation": "metadata/train_weak.tsv"},
            "Unlabelled": {"uri": "metadata/train_unlabelled.lst"},  # no annotation: unlabelled files
        }
        for name, train in train_of.items():
            if name.lower() in kinds:
                protocols[name] = {"scope": "global", "classes": list(CLASSES), "train": {**train, "duration": float(duration)},
                                   **{k: v for k, v in subsets.items() if k != "train" and name == "Strong"}}
        # the meta-protocol: train unites the three parts, development and test are the strong part's
        meta = {"train": {f"{database}.{task}.{name}": ["train"] for name in train_of if name in protocols}}
        for split in ("development", "test"):
            if split in subsets and "Strong" in protocols:
                meta[split] = {f"{database}.{task}.Strong": [split]}
        if "Strong" in protocols:
            protocols_x = {"X": {task: {MIXED_PROTOCOL.split(".")[-1]: meta}}}
        else:
            protocols_x = {}
    else:
        protocols_x = {}
    config = {
        "Databases": {database: [f"audio/{split}/{{uri}}.wav" for split in SPLITS]},
        "Protocols": {database: {task: protocols}, **protocols_x},
    }
    return yaml.dump(config, Dumper=_PlainDumper, sort_keys=False)


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated values out in full: a database.yml that people read has no YAML anchors."""

    def ignore_aliases(self, data) -> bool:
        return True


def build_demo_dataset(
    root: str | Path,
    *,
    seed: int = 0,
    num_train: int = 200,
    num_development: int = 40,
    num_test: int = 40,
    duration: float = 10.0,
    sample_rate: int = 16000,
) -> Path:
    """Write the demo data set under ``root`` (skipped when already built) and return its database.yml.

    Layout: ``audio/{split}/{split}_0000.wav`` (mono PCM_16), ``metadata/{split}.tsv`` (DCASE
    strong labels), ``metadata/{split}.lst`` (uris), ``metadata/{split}_durations.tsv``,
    ``database.yml`` declaring protocol ``AudiotaskDemo.SpeakerDiarization.SoundEvents``, and
    ``manifest.json`` (the build parameters, written last: a build cut short is redone).

    Parameters
    ----------
    root : str or Path
        Output folder.
    seed : int
        Non-negative; the same seed gives byte-identical files.
    num_train, num_development, num_test : int
        Number of soundscapes per split (a split with none is left out of the protocol).
    duration : float
        Soundscape length, in seconds.
    sample_rate : int
        In Hz.
    """
    counts = dict(zip(SPLITS, (num_train, num_development, num_test)))
    if seed < 0 or min(counts.values()) < 0 or sum(counts.values()) == 0:
        raise ValueError(f"Expected a non-negative seed and file counts, not all zero; got {seed}, {counts}")
    root = Path(root)
    database_yml, manifest_json = root / "database.yml", root / "manifest.json"
    manifest = {"version": VERSION, "seed": int(seed), **{f"num_{s}": int(c) for s, c in counts.items()}}
    manifest.update(duration=float(duration), sample_rate=int(sample_rate))
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    if database_yml.is_file() and manifest_json.is_file() and manifest_json.read_text() == text:
        return database_yml
    root.mkdir(parents=True, exist_ok=True)
    manifest_json.unlink(missing_ok=True)
    for split_index, split in enumerate(SPLITS):
        _write_split(root, split, split_index, counts[split], seed=seed, duration=duration, sample_rate=sample_rate)
    database_yml.write_text(_database_yml(counts, seconds_to_samples(duration, sample_rate) / sample_rate))
    manifest_json.write_text(text)
    return database_yml


def build_isolated_events(
    root: str | Path, *, seed: int = 0, clips_per_class: int = 20, num_backgrounds: int = 10,
    sample_rate: int = 16000, background_duration: float = 30.0,
) -> tuple[Path, Path]:
    """Isolated synthetic event clips (``root/events/<class>/*.wav``) and background
    recordings (``root/backgrounds/*.wav``): what dynamic mixing (``tasks/sed/mixing.py``) builds
    soundscapes from. Skipped when already built with the same parameters.

    Drawn from their own seed stream: none of them is an event of the demo's soundscapes.
    Returns ``(events folder, backgrounds folder)``.
    """
    root = Path(root)
    events, backgrounds = root / "events", root / "backgrounds"
    manifest = root / "manifest.json"
    text = json.dumps({"version": VERSION, "seed": seed, "clips_per_class": clips_per_class, "num_backgrounds": num_backgrounds,
                       "sample_rate": sample_rate, "background_duration": background_duration}, sort_keys=True) + "\n"
    if manifest.is_file() and manifest.read_text() == text:
        return events, backgrounds
    for class_index, label in enumerate(CLASSES):
        folder = events / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(clips_per_class):
            rng = np.random.default_rng(np.random.SeedSequence([seed, 1 << 20, class_index, index]))
            low, high = DURATION_RANGES[label]
            clip = synthesize_event(label, float(rng.uniform(low, high)), sample_rate, rng)
            soundfile.write(folder / f"{label}_{index:03d}.wav", _to_pcm16(0.5 * clip), sample_rate, subtype="PCM_16")
    backgrounds.mkdir(parents=True, exist_ok=True)
    for index in range(num_backgrounds):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1 << 21, index]))
        noise = background(seconds_to_samples(background_duration, sample_rate), sample_rate, rng)
        soundfile.write(backgrounds / f"background_{index:03d}.wav", _to_pcm16(0.05 * noise), sample_rate, subtype="PCM_16")
    manifest.write_text(text)
    return events, backgrounds
