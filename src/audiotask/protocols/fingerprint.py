"""A protocol's fingerprint: changes whenever what it would yield may have changed.

For protocols declared in ``database.yml`` files (the common case), the fingerprint hashes
those files and the size and modification time of every file they name (lists,
annotations, UEMs), so checking a cache costs a few ``stat`` calls, not a pass over the
protocol. That holds only while every preprocessor's output follows from those files:
pyannote.database's ``FileFinder`` and cropping wrappers, and our own wrappers from
``protocols.files`` wrapping nothing else. Any other preprocessor (a lambda, a function, a
callable object), and any protocol not from the registry, is hashed by content.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

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
    # our wrappers (protocols.files) say what they hold: the wrapped preprocessors and, for
    # "duration", an Audio (a subclass might compute durations its own way)
    inside = getattr(preprocessor, "audiotask_wraps", None)
    if inside is None or getattr(preprocessor, "__module__", None) != "audiotask.protocols.files":
        return False
    return all(type(value) is Audio or _determined_by_files(value) for value in inside)


def _from_registry(protocol) -> bool:
    """Whether ``protocol`` was built by pyannote.database's registry from a database.yml."""
    return type(protocol).__module__ == "pyannote.database.custom"


def _file_row(file) -> list:
    """What prepared metadata stores of ``file``: uri, audio, duration, UEM, labelled segments."""
    duration, annotated, annotation = file.get("duration"), file.get("annotated"), file.get("annotation")
    tracks = [] if annotation is None else annotation.itertracks(yield_label=True)
    return [
        str(file["uri"]),
        str(file.get("audio", "")),
        None if duration is None else float(duration),
        None if annotated is None else [[segment.start, segment.end] for segment in annotated],
        sorted([segment.start, segment.end, str(label)] for segment, _, label in tracks),
    ]


def content_fingerprint(protocol, subsets: Sequence[str]) -> list:
    """Everything prepared metadata stores, per file of ``subsets`` (slow: iterates the protocol).

    Uri, audio, duration, annotated regions (UEM) and labelled annotation segments:
    duration and annotated are always in, since a user's preprocessor or UEM may change them
    while everything else stays the same.
    """
    rows = []
    # the files are read again when metadata is built; report their problems there, once
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for subset in subsets:
            rows.extend([subset, *_file_row(file)] for file in getattr(protocol, subset)())
    return rows


def protocol_fingerprint(protocol, subsets, parameters: dict) -> str:
    """Hex digest keyed on the protocol and the task ``parameters`` that change targets.

    Cheap (``stat`` calls) for a registry protocol whose preprocessors are all known; by
    content otherwise (see ``_determined_by_files`` for why).
    """
    name = getattr(protocol, "name", type(protocol).__qualname__)
    preprocessors = protocol.preprocessors
    fast = _from_registry(protocol) and all(_determined_by_files(p) for p in preprocessors.values())
    source = ["registry", registry_fingerprint()] if fast else ["content", content_fingerprint(protocol, subsets)]
    key = json.dumps([name, sorted(preprocessors), list(subsets), parameters, source], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]
