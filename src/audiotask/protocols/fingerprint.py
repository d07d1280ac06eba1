"""A protocol's fingerprint: changes whenever what it would yield may have changed.

For protocols declared in ``database.yml`` files (the common case), the fingerprint hashes
those files and the size and modification time of every file they name (lists,
annotations, UEMs), so checking a cache costs a few ``stat`` calls, not a pass over the
protocol. That holds for preprocessors whose output follows from those files:
pyannote.database's ``FileFinder`` and cropping wrappers, and our own wrappers from
``core.protocol_files`` wrapping nothing else. The entries given by any other preprocessor (a
lambda, a function, a callable object) are read from every file and hashed; a protocol not
from the registry is hashed by content.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

def _named_files(config: Any, root: Path) -> Iterator[Path]:
    """Every string in a yml config that names an existing file (templates are skipped)."""
    if isinstance(config, dict):
        for value in config.values():
            yield from _named_files(value, root)
    elif isinstance(config, list):
        for value in config:
            yield from _named_files(value, root)
    elif isinstance(config, str) and "{" not in config:
        path = Path(config) if os.path.isabs(config) else root / config
        if path.is_file():
            yield path


def registry_fingerprint() -> list:
    """Content of loaded database.yml files, and stat of the files they name."""
    from pyannote.database import registry

    fingerprint = []
    for yml, config in sorted(registry.configs.items(), key=lambda item: str(item[0])):
        stats = [(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(set(_named_files(config, yml.parent)))]
        fingerprint.append([str(yml), json.dumps(config, sort_keys=True, default=str), stats])
    return fingerprint


def _determined_by_files(preprocessor: Any) -> bool:
    """Whether ``preprocessor``'s output follows from what ``registry_fingerprint`` covers.

    A callable's behaviour cannot be hashed (two lambdas look alike and may return
    anything), so only known preprocessors are trusted, and only when everything they
    wrap is trusted too; anything else sends the fingerprint to the content.
    """
    from pyannote.database import FileFinder, registry
    from pyannote.database.protocol.segmentation import crop_annotated, crop_annotation

    from audiotask.core.audio import Audio

    if preprocessor is None:  # wraps nothing: the file's own entry
        return True
    if type(preprocessor) is FileFinder:
        # it reads the "Databases" templates of its registry: hashed only for the global one
        return preprocessor.registry is registry
    if isinstance(preprocessor, functools.partial):
        return (
            preprocessor.func in (crop_annotated, crop_annotation)
            and not preprocessor.args
            and set(preprocessor.keywords) <= {"existing_preprocessor"}
            and _determined_by_files(preprocessor.keywords.get("existing_preprocessor"))
        )
    # our wrappers (core.protocol_files) say what they hold: the wrapped preprocessors and, for
    # "duration", an Audio (a subclass might compute durations its own way)
    inside = getattr(preprocessor, "audiotask_wraps", None)
    if inside is None or getattr(preprocessor, "__module__", None) != "audiotask.core.protocol_files":
        return False
    return all(type(value) is Audio or _determined_by_files(value) for value in inside)


def _from_registry(protocol) -> bool:
    """Whether ``protocol`` was built by pyannote.database's registry from a database.yml."""
    return type(protocol).__module__ == "pyannote.database.custom"


def _describe(value: Any) -> Any:
    """A JSON-able description of a protocol file's entry (annotation, UEM, number, path...)."""
    from pyannote.core import Annotation, Timeline

    if isinstance(value, Annotation):
        return sorted([segment.start, segment.end, str(label)] for segment, _, label in value.itertracks(yield_label=True))
    if isinstance(value, Timeline):
        return [[segment.start, segment.end] for segment in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, (tuple, list)):  # weak labels, lists of classes
        return [str(item) for item in value]
    return None if value is None else str(value)


def _file_row(file, keys: Sequence[str]) -> list:
    """The uri of ``file`` and a description of each of its ``keys`` (None when absent)."""
    from audiotask.core.protocol_files import file_attribute

    return [str(file["uri"]), *(_describe(file_attribute(file, key)) for key in keys)]


#: what prepared metadata stores of a file, besides its uri (the default of ``stored``)
STORED = ("audio", "duration", "annotated", "annotation", "database")


def _rows(files: Callable[[str], list], subsets: Sequence[str], keys: Sequence[str]) -> list:
    rows = []
    # the files are read again when metadata is built; report their problems there, once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for subset in subsets:
            rows.extend([subset, *_file_row(file, keys)] for file in files(subset))
    return rows


def protocol_fingerprint(
    protocol, subsets: Sequence[str], parameters: dict, *, files: Optional[Callable[[str], list]] = None,
    stored: Sequence[str] = STORED,
) -> str:
    """Hex digest keyed on the protocol and the ``parameters`` of its preparation.

    A registry protocol costs ``stat`` calls, plus, for each preprocessor of a ``stored``
    entry whose output does not follow from its files (see ``_determined_by_files``: a
    callable's behaviour cannot be hashed), that entry read from every file (about 1 s per
    100,000 files for a duration). Any other protocol is hashed by content: every ``stored``
    entry of every file. Entries that preparation does not store change nothing and are
    not read. ``files(subset)`` gives a subset's files (default: iterating the protocol; a
    task passes the files it keeps, so that preparing reads the protocol once).
    """
    files = files or (lambda subset: getattr(protocol, subset)())
    name = getattr(protocol, "name", type(protocol).__qualname__)
    preprocessors = protocol.preprocessors
    if _from_registry(protocol):
        unknown = sorted(
            key for key, preprocessor in preprocessors.items() if key in stored and not _determined_by_files(preprocessor)
        )
        source = ["registry", registry_fingerprint(), unknown, _rows(files, subsets, unknown) if unknown else []]
    else:
        source = ["content", _rows(files, subsets, sorted(stored))]
    key = json.dumps([name, sorted(preprocessors), list(subsets), parameters, source], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]
