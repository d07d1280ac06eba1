"""Clip corpora: a folder of audio clips and a CSV table of their labels (and folds).

Every clip classification or tagging corpus ships its labels the same way: one CSV row per
clip, with a header naming its columns, e.g. ESC-50's ``filename,fold,target,category,...``,
UrbanSound8K's ``slice_file_name,...,fold,classID,class`` or FSD50K's
``fname,labels,mids,split``. :func:`read_clip_csv` reads any of them:

- the clip's file from the first column named ``filename``, ``fname`` or ``slice_file_name``;
- its label from ``label``, ``labels``, ``category`` or ``class`` (a ``labels`` cell may
  hold several comma-separated labels: a tagging corpus);
- its cross-validation fold from ``fold`` and its subset from ``split``, when present;
- any other column is ignored.

:class:`ClipLoader` is registered as the pyannote.database loader of ``.csv`` files, so a
``database.yml`` can say ``annotation: path/to/labels.csv``: each file's annotation is then
a :class:`ClipLabels`, weak labels (the engine stores them as the file's tags) that also
carry the clip's fold. :func:`write_clip_database` writes such a ``database.yml``.
"""

from __future__ import annotations

import csv
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

from audiotask.io import naming_bad_text
from audiotask.protocols.dcase import WeakLabels, read_dcase_weak_tsv
from audiotask.protocols.uris import audio_files_below, uri_of

__all__ = [
    "FILENAME_COLUMNS", "LABEL_COLUMNS", "ClipLabels", "ClipRow", "ClipLoader",
    "read_clip_csv", "write_clip_database", "clip_protocol",
]

PathLike = Union[str, Path]

#: names of the column holding a clip's file, in order of preference (compared lowercase)
FILENAME_COLUMNS = ("filename", "fname", "slice_file_name")
#: names of the column holding a clip's label(s)
LABEL_COLUMNS = ("label", "labels", "category", "class")
#: the column whose cells hold several comma-separated labels
MULTI_LABEL_COLUMN = "labels"
FOLD_COLUMN = "fold"
SPLIT_COLUMN = "split"
#: protocol subset of each ``split`` value corpora use (FSD50K: train / val)
SPLITS = {
    "train": "train", "training": "train",
    "development": "development", "dev": "development", "val": "development", "valid": "development",
    "validation": "development",
    "test": "test", "eval": "test", "evaluation": "test",
}


class ClipLabels(WeakLabels):
    """The labels of one clip (sorted, unique: weak labels) and its fold ("" for none).

    A :class:`~audiotask.protocols.dcase.WeakLabels`, so that the engine's preparation treats
    the clip as weakly labelled (its labels become its tags); the fold rides along as an
    attribute, which ``core.protocol_files.file_attribute(file, "fold")`` reads.
    """

    def __new__(cls, labels: Iterable[str] = (), fold: str = "") -> "ClipLabels":
        labels = super().__new__(cls, labels)
        labels.fold = str(fold)
        return labels

    def __repr__(self) -> str:
        return f"ClipLabels({tuple(self)!r}, fold={self.fold!r})"


@dataclass(frozen=True)
class ClipRow:
    """What the CSV says of one clip: its file name, labels, fold and subset, and the line."""

    filename: str
    labels: tuple[str, ...]
    fold: str
    split: str  # "train", "development" or "test"; "train" without a split column
    line: int


def read_clip_csv(path: PathLike) -> dict[str, ClipRow]:
    """``{uri: ClipRow}`` of a clip CSV (see the module's docstring for the columns).

    Cached until the file changes. A clip listed on several rows gets the union of their
    labels. ``ValueError`` naming the file (and line) for a table without a filename or label
    column, an empty filename, an unknown ``split`` value, or one clip given two folds.
    """
    path = Path(path)
    try:
        stamp = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        raise ValueError(f"no clip CSV file {path}") from None
    return _read_cached(str(path.resolve()), stamp)


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int) -> dict[str, ClipRow]:
    with naming_bad_text(path), open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        # the header is the first line, even blank (then refused): not the first row with cells
        columns = _columns(path, next(reader, None))
        rows: dict[str, ClipRow] = {}
        for row in reader:
            if any(cell.strip() for cell in row):
                _add_row(path, reader.line_num, row, columns, rows)
    return rows


def _columns(path: str, header: Optional[list[str]]) -> dict[str, int]:
    """Position of the filename, label, and (when present) fold and split columns."""
    if not header:
        raise ValueError(f"{path}: empty clip CSV file (expected a header such as filename,label,fold)")
    names = [name.strip().lower() for name in header]

    def position(candidates: tuple[str, ...], required: bool) -> Optional[int]:
        for candidate in candidates:
            if candidate in names:
                return names.index(candidate)
        if required:
            raise ValueError(
                f"{path}, line 1: the header {header!r} names no {'/'.join(candidates)} column "
                f"(a clip CSV needs a filename column {FILENAME_COLUMNS} and a label column {LABEL_COLUMNS})"
            )
        return None

    columns = {"filename": position(FILENAME_COLUMNS, True), "label": position(LABEL_COLUMNS, True)}
    columns["multi_label"] = names[columns["label"]] == MULTI_LABEL_COLUMN
    for name in (FOLD_COLUMN, SPLIT_COLUMN):
        found = position((name,), False)
        if found is not None:
            columns[name] = found
    return columns


def _add_row(path: str, line: int, row: list[str], columns: dict, rows: dict[str, ClipRow]) -> None:
    def cell(name: str) -> str:
        index = columns.get(name)
        if index is None:
            return ""
        if index >= len(row):
            raise ValueError(f"{path}, line {line}: {len(row)} columns, no {name} (column {index + 1}): {row!r}")
        return row[index].strip()

    filename = cell("filename")
    if not filename:
        raise ValueError(f"{path}, line {line}: empty filename: {row!r}")
    labels = _labels(cell("label"), columns["multi_label"])
    fold, split = cell(FOLD_COLUMN), _split(path, line, cell(SPLIT_COLUMN)) if SPLIT_COLUMN in columns else "train"
    uri = uri_of(filename)
    earlier = rows.get(uri)
    if earlier is not None:
        if earlier.fold != fold or earlier.split != split:
            raise ValueError(
                f"{path}, line {line}: {filename!r} is in fold {fold!r} / split {split!r}, but line "
                f"{earlier.line} puts it in fold {earlier.fold!r} / split {earlier.split!r}"
            )
        labels = tuple(sorted({*earlier.labels, *labels}))
    rows[uri] = ClipRow(filename, labels, fold, split, line if earlier is None else earlier.line)


def _labels(value: str, multi_label: bool) -> tuple[str, ...]:
    if not multi_label:
        return (value,) if value else ()
    return tuple(sorted({name.strip() for name in value.split(",") if name.strip()}))


def _split(path: str, line: int, value: str) -> str:
    subset = SPLITS.get(value.lower())
    if subset is None:
        raise ValueError(f"{path}, line {line}: unknown split {value!r}; expected one of {sorted(SPLITS)}")
    return subset


class ClipLoader:
    """pyannote.database loader of clip CSV files: ``loader(file)`` is the :class:`ClipLabels`
    of ``file["uri"]``; ``ValueError`` naming the CSV when the uri is not in it."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self.rows = read_clip_csv(self.path)

    def __call__(self, file) -> ClipLabels:
        uri = file["uri"]
        row = self.rows.get(uri)
        if row is None:
            raise ValueError(f"{self.path}: no row for file {uri!r} (the protocol lists a clip this CSV does not label)")
        return ClipLabels(row.labels, row.fold)


# ---- writing a database.yml --------------------------------------------------------------
def audio_files(folder: PathLike) -> dict[str, Path]:
    """``{uri: path}`` of the audio files in ``folder`` and its sub-folders (UrbanSound8K keeps
    its clips in ``fold1/``...); ``ValueError`` when two of them share a uri."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"no audio folder {folder}")
    found: dict[str, Path] = {}
    for path in audio_files_below(folder):
        uri = uri_of(path.name)
        if uri in found:
            raise ValueError(f"two audio files in {folder} name the clip {uri!r}: {found[uri]} and {path}")
        found[uri] = path
    return found


def labelled_clips(labels: PathLike) -> dict[str, tuple[str, int]]:
    """``{uri: (subset, line)}`` of the clips a clip CSV or a DCASE weak-label TSV lists."""
    labels = Path(labels)
    if labels.suffix.lower() == ".tsv":
        # a weak TSV has no subset column and reports its own errors with their lines
        return {uri: ("train", 0) for uri in read_dcase_weak_tsv(labels)}
    return {uri: (row.split, row.line) for uri, row in read_clip_csv(labels).items()}


def write_clip_database(audio_folder: PathLike, csv_path: PathLike, database_yml: PathLike, name: str = "Clips") -> str:
    """Write ``database_yml`` declaring the clips of a CSV (or DCASE weak TSV) as a protocol.

    Parameters
    ----------
    audio_folder : str or Path
        Folder of the clips (sub-folders included), named ``{uri}.{extension}``.
    csv_path : str or Path
        Their clip CSV (see :func:`read_clip_csv`) or DCASE weak-label TSV; the protocol's
        ``annotation`` entry names it, so each file's annotation is its :class:`ClipLabels`.
    database_yml : str or Path
        The file to write; the uri lists are written beside it (``<name>.<subset>.lst``) and
        paths are relative to it.
    name : str
        Database name (an identifier, as pyannote.database requires).

    Returns
    -------
    str
        ``"<name>.Protocol.Clips"``: its train subset holds every clip, or, when the CSV has
        a ``split`` column, the clips of each split (train, development, test).

    ``ValueError`` naming the CSV, line and file when a row names a clip missing from the folder.
    """
    import yaml

    if not name.isidentifier():
        raise ValueError(f"the database name must be an identifier (letters, digits, _), got {name!r}")
    audio_folder, csv_path, yml = Path(audio_folder), Path(csv_path), Path(database_yml)
    clips, found = labelled_clips(csv_path), audio_files(audio_folder)
    missing = [(uri, line) for uri, (_, line) in clips.items() if uri not in found]
    if missing:
        where = ", ".join(f"{uri!r} (line {line})" if line else repr(uri) for uri, line in missing[:5])
        raise ValueError(f"{csv_path}: {len(missing)} listed clip(s) have no audio file in {audio_folder}: "
                         f"{where}{', ...' if len(missing) > 5 else ''}")
    yml.parent.mkdir(parents=True, exist_ok=True)
    relative = lambda path: os.path.relpath(Path(path).resolve(), yml.parent.resolve())  # noqa: E731
    subsets = {}
    for subset in ("train", "development", "test"):
        uris = [uri for uri, (split, _) in clips.items() if split == subset]
        if uris:
            listing = yml.parent / f"{name}.{subset}.lst"
            _write_if_changed(listing, "".join(f"{uri}\n" for uri in uris))
            subsets[subset] = {"uri": relative(listing), "annotation": relative(csv_path)}
    # one template per folder and extension that holds a listed clip
    templates = sorted({f"{relative(found[uri].parent)}/{{uri}}{found[uri].suffix}" for uri in clips})
    config = {"Databases": {name: templates}, "Protocols": {name: {"Protocol": {"Clips": subsets}}}}
    _write_if_changed(yml, yaml.safe_dump(config, sort_keys=False))
    return f"{name}.Protocol.Clips"


def _write_if_changed(path: Path, text: str) -> None:
    # the prepared-metadata cache is keyed on these files' modification times: writing the
    # same database again must not make it prepare the same clips again
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def clip_protocol(audio_folder: PathLike, csv_path: PathLike, database_yml: Optional[PathLike] = None, name: str = "Clips"):
    """The protocol of :func:`write_clip_database`, loaded (audio found by ``FileFinder``).

    ``database_yml`` defaults to a folder of the audiotask cache named after the two paths:
    the same clips always get the same file, so prepared metadata is found again.
    """
    if database_yml is None:
        import hashlib

        from audiotask.io import default_cache_root

        key = hashlib.sha1(f"{Path(audio_folder).resolve()}\n{Path(csv_path).resolve()}\n{name}".encode()).hexdigest()[:16]
        database_yml = default_cache_root() / "protocols" / key / "database.yml"
    from audiotask.protocols.loading import load_protocol

    protocol_name = write_clip_database(audio_folder, csv_path, database_yml, name)
    return load_protocol(protocol_name, [database_yml])
