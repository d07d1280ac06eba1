"""Caches that several processes share: a lock per preparation, and what crashed writers left.

Two training runs started together, the local rank 0 of every node of a job on a shared
file system, a notebook next to a run: several processes may prepare the same cache at once.
Entries are written under a temporary name and renamed into place (``os.replace`` is
atomic), so a reader sees a whole entry or none; a lock around each preparation makes the
second process wait for the first and reuse its work rather than do it again.

The lock is ``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows: the kernel releases it
when its holder dies, however it dies, so a crashed run never blocks the next one, and a
waiting process waits as long as the holder lives (no timeout: decoding a large corpus
legitimately takes hours). Where the file system refuses locks, preparation goes on
unlocked with a warning: renames still keep every entry whole, work may be done twice.

Temporary names carry their writer, ``<entry>.<host>.<pid>.partial`` (see
:func:`writer_tag`); a crash leaves them behind, and :func:`remove_leftovers` removes those
whose writer is gone.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from audiotask.io import writer_tag

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # POSIX
    msvcrt = None

#: suffixes of temporary entries: being written, or moved aside to be deleted
LEFTOVER_SUFFIXES = (".partial", ".stale")
#: a leftover older than this is removed whoever wrote it (whether a process of another
#: machine lives cannot be checked): writing one cache entry never takes this long
LEFTOVER_AGE = 6 * 3600.0


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine is running (True when it cannot be told)."""
    if os.name != "posix":
        return True  # os.kill would terminate it on Windows: the leftover's age decides there
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def local_writer(name: str) -> Optional[int]:
    """Pid of the process of this machine whose temporary entry ``name`` is, else None
    (another machine's, or not a temporary name)."""
    for suffix in LEFTOVER_SUFFIXES:
        if name.endswith(suffix):
            head, _, pid = name[: -len(suffix)].rpartition(".")
            if pid.isdigit() and head.endswith(f".{socket.gethostname()}"):
                return int(pid)
    return None


def remove_leftovers(folder: str | Path, prefix: str = "", *, max_age: float = LEFTOVER_AGE) -> list[Path]:
    """Remove the temporary entries in ``folder`` (names starting with ``prefix``) whose writer
    is gone: written on this machine by a process that no longer runs, or older than
    ``max_age`` seconds. Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return removed
    now = time.time()
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.name.endswith(LEFTOVER_SUFFIXES):
            continue
        pid = local_writer(entry.name)
        try:
            old = now - entry.stat(follow_symlinks=False).st_mtime > max_age
        except FileNotFoundError:  # its writer renamed or removed it meanwhile
            continue
        if old or (pid is not None and not process_alive(pid)):
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path)
                else:
                    Path(entry.path).unlink()
            except FileNotFoundError:  # another process removed it first
                pass
            except OSError:  # a read-only cache: left where it is
                continue
            removed.append(Path(entry.path))
    return removed


def _try_lock(fd: int) -> bool:
    """Take the lock without waiting: False when another process holds it. OSError when the
    file system does not lock."""
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as error:
        if error.errno in (errno.EACCES, errno.EDEADLK):
            return False
        raise
    return True


def _wait_lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)  # Ctrl-C interrupts the wait
        return
    while not _try_lock(fd):
        time.sleep(0.2)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _acquire(fd: int, path: Path, doing: str) -> bool:
    """Take the lock, waiting for its holder; False when the file system cannot lock."""
    try:
        if not _try_lock(fd):
            warnings.warn(f"waiting for {_holder(path)} to release {path} before {doing}.", stacklevel=4)
            _wait_lock(fd)
    except OSError as error:
        warnings.warn(f"cannot lock {path} ({error}): {doing} unlocked; a concurrent process may do the same work.")
        return False
    return True


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another process"
    except OSError:  # Windows: the holder's locked byte cannot be read
        return "another process"


@contextmanager
def file_lock(path: str | Path, doing: str) -> Iterator[None]:
    """Hold the exclusive lock ``path`` (a file, created if needed) for the block.

    When another process holds it, warn that this one waits (``doing`` says for what, e.g.
    "decoding 3 audio files into ~/.cache/audiotask/audio"), then wait as long as the holder
    lives. Not re-entrant: a process must not take a lock it holds. Forked children share
    their parent's lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        locked = _acquire(fd, path, doing)
    except BaseException:  # Ctrl-C while waiting
        os.close(fd)
        raise
    try:
        if locked:
            # the holder's name, for the message of a process that waits (flock is advisory)
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, writer_tag().encode())
        yield
    finally:
        if locked:
            _unlock(fd)
        os.close(fd)
