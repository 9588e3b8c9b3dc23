"""One run per output folder: an exclusive lock on ``<folder>/.medfuse.lock`` for the length of a run.

The lock is an operating-system lock on an open file (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
Windows), not the mere existence of a file: the kernel releases it when the holder exits, however it exits
(SIGKILL and power loss included), so a lock left by a dead process is simply taken over by the next run,
which rewrites the holder information. The file itself stays in the folder (deleting it while another
process waits on it would let two runs hold "the" lock on two different files); it is hidden, so folder
layout detection and submissions ignore it.

The file holds the holder's host, PID, start time and command (JSON) so that a refused run can say who
holds the folder. Only the standard library is used.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import FolderLockedError

__all__ = ["LOCK_NAME", "folder_lock", "lock_holder"]

#: Name of the lock file inside a locked folder.
LOCK_NAME = ".medfuse.lock"

# Windows locks a byte range and hides it from readers; lock one byte far past the holder text.
_WINDOWS_LOCK_OFFSET = 1 << 20


def _try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` without waiting; False when another open file holds it."""
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _unlock(fd: int) -> None:
    if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
        import msvcrt

        os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def lock_holder(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The holder information in ``folder``'s lock file (empty when there is none or it is unreadable)."""
    try:
        data = json.loads((Path(folder) / LOCK_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that has not written its details yet"
    since = holder.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else "?"
    return (f"host {holder.get('host', '?')}, PID {holder.get('pid', '?')}, since {when}, "
            f"command {holder.get('command', '?')!r}")


def _write_holder(fd: int, command: str) -> None:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "since": round(time.time(), 3), "command": command}
    data = (json.dumps(info) + "\n").encode("utf-8")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, data)


@contextmanager
def folder_lock(folder: str | os.PathLike[str], *, command: str, name: str = "output") -> Iterator[Path]:
    """Hold the exclusive lock of ``folder`` (created if missing) for the ``with`` block.

    Parameters
    ----------
    folder : path-like
        The output folder of a run.
    command : str
        What runs (e.g. ``"fuse_folders"`` or the command line), written into the lock file.
    name : str
        The argument that named ``folder``, for the error message.

    Yields
    ------
    pathlib.Path
        The lock file.

    Raises
    ------
    FolderLockedError
        Another run (in this or another process) holds the folder; the message names it.
    """
    path = Path(folder) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            raise FolderLockedError(
                f"`{name}` {str(folder)!r} is in use by another medfuse run ({_describe(lock_holder(folder))}); "
                "wait for it to finish or choose another folder (two runs on one folder would destroy each "
                "other's files)."
            )
        try:
            _write_holder(fd, command)
            yield path
        finally:
            os.ftruncate(fd, 0)  # released: no holder to name; the file stays (see the module docstring)
            _unlock(fd)
    finally:
        os.close(fd)
