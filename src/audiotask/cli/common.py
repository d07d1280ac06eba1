"""Helpers shared by the subcommands; light imports only (see ``cli/main.py``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

# the extensions ``audiotask apply`` looks for in folders are those a uri is stripped of
from audiotask.protocols.uris import AUDIO_EXTENSIONS, uri_of


class CommandError(Exception):
    """A user's mistake (missing file, conflicting options): reported in one line, exit status 2."""


def parse_options(pairs: Sequence[str]) -> dict:
    """``["key=value", ...]`` -> ``{key: value}``, values read as JSON when they parse as JSON.

    ``hidden_size=32`` gives an int, ``channels=[16,32]`` a list, ``name=abc`` the string "abc".
    """
    options = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key:
            raise CommandError(f"expected key=value, got {pair!r}")
        try:
            options[key] = json.loads(text)
        except json.JSONDecodeError:
            options[key] = text
    return options


def parse_classes(text: str | None) -> list[str] | None:
    """``"Dog,Cat"`` -> ``["Dog", "Cat"]``; None stays None (classes discovered from the data)."""
    if text is None:
        return None
    classes = [name.strip() for name in text.split(",") if name.strip()]
    if not classes:
        raise CommandError(f"--classes names no class: {text!r}")
    return classes


def find_audio_files(paths: Iterable[str | Path]) -> list[Path]:
    """Audio files among ``paths``: files as given, folders searched recursively (sorted).

    Raises ``CommandError`` for a missing path, when nothing is found, or when two files
    share a name (outputs are keyed by file name, as in DCASE files).
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"no such file or folder: {path}")
    if not found:
        raise CommandError("no audio file (" + ", ".join(AUDIO_EXTENSIONS) + ") found in " + ", ".join(map(str, paths)))
    names: dict[str, Path] = {}
    for path in found:
        if path.name in names and names[path.name] != path:
            raise CommandError(f"two files are named {path.name}: {names[path.name]} and {path}")
        names[path.name] = path
    return list(names.values())


def read_durations(path: str | Path) -> dict[str, float]:
    """``filename<TAB>duration`` file (a header line allowed) -> ``{filename: seconds}``."""
    from audiotask.metrics.events import read_durations as read

    if not Path(path).is_file():
        raise CommandError(f"no such file: {path}")
    try:
        return read(path)
    except ValueError as error:
        raise CommandError(str(error)) from None


def audio_durations(folder: str | Path, filenames: Iterable[str]) -> dict[str, float]:
    """Durations (seconds) of ``filenames``, read from the headers of the files under ``folder``.

    A name is a file's name (``clip.wav``) or its uri (``clip``), as ground truths name files.
    """
    import soundfile

    found = find_audio_files([folder])
    files = {path.name: path for path in found}
    by_uri = {uri_of(path.name): path for path in found}
    durations = {}
    for filename in filenames:
        path = files.get(filename, by_uri.get(uri_of(filename)))
        if path is None:
            raise CommandError(f"{filename} is not under {folder}: give its duration with --durations")
        durations[filename] = soundfile.info(str(path)).duration
    return durations


#: warnings that say nothing actionable to a command-line user
_NOISE = (
    r".*does not define the 'scope'",  # pyannote.database, for protocols without speaker labels
    r".*`IterableDataset` has `__len__` defined",  # the task gives each worker its own chunks
    r".*is smaller than the logging interval",  # tiny data sets log once per epoch: fine
    r".*`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning against a newer torch
)


def quiet_warnings() -> None:
    """Silence known, harmless warnings and Lightning's advertisement of its cloud logger."""
    import logging
    import warnings

    for message in _NOISE:
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not str(record.msg).startswith("💡")
    )
