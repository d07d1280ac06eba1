"""A protocol's fingerprint: changes whenever what it would yield may have changed.

For protocols declared in ``database.yml`` files (the common case), the fingerprint hashes
those files and the size and modification time of every file they name (lists,
annotations, UEMs), so checking a cache costs a few ``stat`` calls, not a pass over the
protocol. Other protocols are hashed by content.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


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


def content_fingerprint(protocol, subsets) -> list:
    """Everything ``protocol`` yields for ``subsets`` (slow: iterates the protocol)."""
    rows = []
    for subset in subsets:
        for file in getattr(protocol, subset)():
            annotation = file["annotation"]
            rows.append([subset, str(file["uri"]), str(file.get("audio", "")), repr(sorted(annotation.itertracks(yield_label=True), key=str))])
    return rows


def protocol_fingerprint(protocol, subsets, parameters: dict) -> str:
    """Hex digest keyed on the protocol and the task ``parameters`` that change targets."""
    name = getattr(protocol, "name", type(protocol).__qualname__)
    from_registry = type(protocol).__module__.startswith("pyannote.database") and registry_fingerprint()
    source = from_registry or content_fingerprint(protocol, subsets)
    key = json.dumps([name, sorted(protocol.preprocessors), list(subsets), parameters, source], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]
