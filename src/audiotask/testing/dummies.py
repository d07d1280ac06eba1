"""Tiny deterministic data factories for tests and examples (no download, no shared data)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import soundfile

from audiotask.protocols.dcase import write_dcase_tsv

#: frequency (Hz) of the tone that stands for each class in generated data
TONES = {"Alarm_bell_ringing": 1000.0, "Dog": 400.0, "Speech": 2500.0}


def tone(frequency: float, duration: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(duration * sample_rate))) / sample_rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def make_clip(
    events: Sequence[tuple[float, float, str]], *, duration: float, sample_rate: int, seed: int, noise: float = 0.01
) -> np.ndarray:
    """Low noise plus one tone per event ``(onset, offset, label)`` (label -> frequency in TONES)."""
    rng = np.random.default_rng(seed)
    samples = (noise * rng.standard_normal(int(round(duration * sample_rate)))).astype(np.float32)
    for onset, offset, label in events:
        start = int(round(onset * sample_rate))
        burst = tone(TONES[label], offset - onset, sample_rate)
        samples[start : start + len(burst)] += burst[: len(samples) - start]
    return samples


def random_events(rng: np.random.Generator, duration: float, classes: Sequence[str], count: int) -> list:
    events = []
    for _ in range(count):
        length = float(rng.uniform(0.5, min(3.0, duration / 2)))
        onset = float(np.round(rng.uniform(0, duration - length), 3))
        events.append((onset, float(np.round(onset + length, 3)), str(rng.choice(list(classes)))))
    return sorted(events)


def make_sound_event_protocol(
    root: str | Path,
    *,
    name: str = "Tiny",
    files_per_subset: Sequence[int] = (3, 1, 1),
    duration: float = 6.0,
    sample_rate: int = 16000,
    classes: Sequence[str] = tuple(TONES),
    events_per_file: int = 3,
    seed: int = 0,
) -> Path:
    """Write a tiny sound event protocol and return its ``database.yml``.

    Protocol ``{name}.SpeakerDiarization.Events`` with train / development / test subsets,
    tones as events, DCASE TSV strong labels and UEM-free annotations.
    """
    root = Path(root)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    subsets = {}
    for subset, count in zip(("train", "development", "test"), files_per_subset):
        rows, uris = [], []
        for index in range(count):
            uri = f"{subset}{index:02d}"
            events = random_events(rng, duration, classes, events_per_file)
            clip = make_clip(events, duration=duration, sample_rate=sample_rate, seed=int(rng.integers(1 << 31)))
            soundfile.write(root / "audio" / f"{uri}.wav", clip, sample_rate, subtype="PCM_16")
            rows.extend((f"{uri}.wav", onset, offset, label) for onset, offset, label in events)
            uris.append(uri)
        write_dcase_tsv(root / f"{subset}.tsv", rows)
        (root / f"{subset}.lst").write_text("".join(f"{uri}\n" for uri in uris))
        subsets[subset] = {"uri": f"{subset}.lst", "annotation": f"{subset}.tsv"}
    write_database_yml(root / "database.yml", name, "Events", subsets, audio="audio/{uri}.wav")
    return root / "database.yml"


def write_database_yml(path: Path, database: str, protocol: str, subsets: dict, *, audio: str) -> None:
    """Minimal pyannote.database configuration with one SpeakerDiarization protocol."""
    import yaml

    config = {
        "Databases": {database: audio},
        "Protocols": {database: {"SpeakerDiarization": {protocol: subsets}}},
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def load_protocol(database_yml: str | Path, name: str):
    """Load ``database_yml`` into pyannote.database's registry and return protocol ``name``."""
    from audiotask.protocols.loading import load_protocol as load

    return load(name, [database_yml])
