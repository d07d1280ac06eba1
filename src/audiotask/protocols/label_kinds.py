"""A protocol whose training files come in several label kinds, as DCASE's data does.

DCASE's domestic sound event detection data has strongly labelled clips (a strong TSV),
weakly labelled clips (a weak TSV: which classes occur), unlabelled clips (a folder) and a
strongly labelled development set. :func:`write_label_kinds_database` writes the
``database.yml`` that declares them for pyannote.database: one protocol per set of files,
and a meta-protocol ``X.SpeakerDiarization.NAME`` whose train subset unites them, which any
task then loads with ``registry.get_protocol``. Each file's label kind follows from what its
annotation is (see ``engine.preparation``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import yaml

from audiotask.protocols.uris import has_audio_extension, uri_of

PathLike = Union[str, Path]


@dataclass(frozen=True)
class Files:
    """A set of audio files of one label kind.

    Parameters
    ----------
    audio : str or Path
        Folder of the audio files (named ``{uri}.{extension}``).
    labels : str or Path, optional
        Their DCASE strong-label or weak-label TSV; None for unlabelled files.
    uris : str, Path or sequence of str, optional
        Which files: a list file (one uri per line) or the uris; default: every audio file
        in ``audio`` (not below it).
    """

    audio: PathLike
    labels: Optional[PathLike] = None
    uris: Optional[Union[PathLike, Sequence[str]]] = None

    def uri_list(self) -> list[str]:
        """The uris of the files, checked to have an audio file in ``audio``."""
        folder = Path(self.audio)
        if not folder.is_dir():
            raise ValueError(f"no audio folder {folder}")
        found = {uri_of(path.name): path for path in sorted(folder.iterdir()) if has_audio_extension(path.name)}
        if self.uris is None:
            if not found:
                raise ValueError(f"{folder} holds no audio file")
            return sorted(found)
        if isinstance(self.uris, (str, Path)):
            uris = [line.strip() for line in Path(self.uris).read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            uris = [str(uri) for uri in self.uris]
        missing = [uri for uri in uris if uri not in found]
        if missing:
            raise ValueError(f"{len(missing)} listed file(s) have no audio file in {folder}: {', '.join(missing[:5])}")
        return uris

    def extensions(self) -> list[str]:
        """The audio file extensions in ``audio`` (one path template each)."""
        return sorted({path.suffix for path in Path(self.audio).iterdir() if has_audio_extension(path.name)})


def write_label_kinds_database(
    yml: PathLike, name: str, *, train: Sequence[Files], development: Files, test: Optional[Files] = None,
    classes: Optional[Sequence[str]] = None,
) -> str:
    """Write ``yml`` declaring the meta-protocol ``X.SpeakerDiarization.<name>``; returns its name.

    Parameters
    ----------
    yml : str or Path
        The ``database.yml`` to write; the uri lists are written beside it
        (``<name>Train0.lst``...), paths are relative to it. Each set is a database
        ``<name>Train0``... ``<name>Development``, ``<name>Test`` with one protocol ``Files``.
    name : str
        Name of the data set (a Python identifier, as pyannote.database requires).
    train : sequence of Files
        The training sets, e.g. ``[Files(strong_dir, "strong.tsv"), Files(weak_dir,
        "weak.tsv"), Files(unlabelled_dir)]``.
    development, test : Files
        Strongly labelled sets (test optional).
    classes : sequence of str, optional
        The classes, declared in the protocols (labels then have "global" scope).
    """
    if not name.isidentifier():
        raise ValueError(f"the data set's name must be an identifier (letters, digits, _), got {name!r}")
    if not train:
        raise ValueError("give at least one set of training files")
    yml = Path(yml)
    yml.parent.mkdir(parents=True, exist_ok=True)
    relative = lambda path: os.path.relpath(Path(path).resolve(), yml.parent.resolve())  # noqa: E731
    databases, protocols, meta = {}, {}, {}
    sets = [(f"Train{index}", "train", files) for index, files in enumerate(train)]
    sets += [(split.capitalize(), split, files) for split, files in (("development", development), ("test", test)) if files]
    declared = {"scope": "global", **({"classes": list(classes)} if classes else {})}
    for part, split, files in sets:
        # one database per set: its own audio folder, and a file's "database" tells its set
        database = f"{name}{part}"
        databases[database] = [f"{relative(files.audio)}/{{uri}}{extension}" for extension in files.extensions()]
        uri_file = yml.parent / f"{database}.lst"
        uri_file.write_text("".join(f"{uri}\n" for uri in files.uri_list()), encoding="utf-8")
        subset = {"uri": relative(uri_file)}
        if files.labels is not None:
            subset["annotation"] = relative(files.labels)
        protocols[database] = {"SpeakerDiarization": {"Files": {**declared, split: subset}}}
        meta.setdefault(split, {})[f"{database}.SpeakerDiarization.Files"] = [split]
    config = {"Databases": databases, "Protocols": {**protocols, "X": {"SpeakerDiarization": {name: meta}}}}
    yml.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return f"X.SpeakerDiarization.{name}"

