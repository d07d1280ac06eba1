"""Files written whole or not at all, and where caches live.

Every file that another process (or a later run) may read while it is written, or after a
kill mid-write, goes through :func:`replaced_atomically`: it is written under a temporary
name of this writer (``NAME.HOST.PID.partial``), then renamed over its path (``os.replace``
is atomic on one file system), so a reader sees the previous file or the new one, never
half of one. A crash leaves the temporary file behind, named by its writer, for
``engine.locks.remove_leftovers`` to recognise.

Caches (prepared metadata, decoded audio, generated protocols) live below
:func:`default_cache_root` unless a task is given its own folder.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union


def default_cache_root() -> Path:
    """``$AUDIOTASK_CACHE``, else ``~/.cache/audiotask``."""
    return Path(os.environ.get("AUDIOTASK_CACHE", Path.home() / ".cache" / "audiotask"))


def writer_tag() -> str:
    """``host.pid``: names a writer's temporary files uniquely, even on a file system that
    several machines (or containers with equal pids) share."""
    return f"{socket.gethostname()}.{os.getpid()}"


@contextmanager
def replaced_atomically(path: Union[str, Path], *, sync: bool = False) -> Iterator[Path]:
    """The temporary path to write ``path``'s new content into; renamed over ``path`` when the
    block ends without error (after an ``fsync`` with ``sync``: the rename must not reach the
    disk before the data), removed when it raises."""
    path = Path(path)
    partial = path.parent / f"{path.name}.{writer_tag()}.partial"
    try:
        yield partial
        if sync:
            with open(partial, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_text_atomically(path: Union[str, Path], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole (see :func:`replaced_atomically`)."""
    with replaced_atomically(path) as partial:
        partial.write_text(text, encoding="utf-8")
    return Path(path)
