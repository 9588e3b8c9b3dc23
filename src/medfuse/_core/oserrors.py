"""OS errors as one line: the path, the operation, the errno name and text, and the fix.

:func:`output_error` turns an :class:`OSError` into a :class:`~medfuse.errors.OutputError` (a
``MedfuseError`` that is still an ``OSError``); :func:`os_error_line` formats any ``OSError`` the same
way (the command line's safety net). Temporary names of :func:`medfuse.io.atomic_write` are shown as the
final file they stand for.
"""

from __future__ import annotations

import errno as errno_module
import os
import re

from ..errors import OutputError

__all__ = ["FIXES", "final_name", "os_error_line", "output_error"]

#: errno -> what the user can do about it.
FIXES: dict[int, str] = {
    errno_module.ENOSPC: "free space on that disk or choose an output folder on another disk",
    errno_module.EDQUOT: "free space within your disk quota or choose an output folder elsewhere",
    errno_module.EFBIG: "the file exceeds the file-size limit (see 'ulimit -f') or the file system's largest "
                        "file; raise the limit or choose an output folder on another file system",
    errno_module.EROFS: "the file system is read-only; choose a writable folder",
    errno_module.EACCES: "you have no permission there; choose a writable folder or fix its permissions",
    errno_module.EPERM: "the operation is not permitted there; choose a writable folder or fix its permissions",
    errno_module.EISDIR: "a folder exists under that name; give a file path instead (e.g. submission.zip)",
    errno_module.ENOTDIR: "a part of that path is a file, not a folder; choose another path",
    errno_module.ENOENT: "check the path (a file or folder in it does not exist)",
    errno_module.EEXIST: "something already exists under that name; remove it or choose another name",
    errno_module.EIO: "the disk reported an input/output error; check the disk and retry",
    errno_module.EMFILE: "too many open files; raise 'ulimit -n' or use fewer parallel jobs",
    errno_module.ENFILE: "too many open files on the system; use fewer parallel jobs",
    errno_module.ENAMETOOLONG: "the file name is too long; choose a shorter path",
}
_DEFAULT_FIX = "check the path and the disk, then retry"
_TEMP = re.compile(r"^\.medfuse-tmp-[0-9A-Za-z]+-(?P<name>.+)$")


def final_name(path: str | os.PathLike[str]) -> str:
    """``path`` with a temporary ``.medfuse-tmp-<token>-<name>`` file name replaced by ``<name>``."""
    text = os.fspath(path)
    head, sep, tail = text.rpartition(os.sep)
    m = _TEMP.match(tail)
    return f"{head}{sep}{m.group('name')}" if m else text


def _errno_text(exc: OSError) -> str:
    if exc.errno is None:
        return str(exc) or type(exc).__name__
    name = errno_module.errorcode.get(exc.errno, f"errno {exc.errno}")
    return f"{name} ({exc.strerror or os.strerror(exc.errno)})"


def _fix(exc: OSError) -> str:
    return FIXES.get(exc.errno, _DEFAULT_FIX) if exc.errno is not None else _DEFAULT_FIX


def output_error(exc: OSError, *, path: str | os.PathLike[str] | None = None,
                 operation: str | None = None) -> OutputError:
    """An :class:`OutputError` for ``exc`` that names ``path`` (default: the error's file name), the
    ``operation`` ("write", "create folder", "fsync", "rename", "read", ...) and the errno."""
    if isinstance(exc, OutputError):
        return exc
    where = final_name(path if path is not None else (exc.filename or "?"))
    what = f"cannot {operation} {where!r}" if operation else f"error on {where!r}"
    err = OutputError(f"{what}: {_errno_text(exc)}; {_fix(exc)}.")
    err.errno, err.strerror, err.filename = exc.errno, exc.strerror, where
    err.operation = operation
    return err


def os_error_line(exc: OSError) -> str:
    """One line for any ``OSError``: the path(s), the errno name and text, and the fix."""
    if isinstance(exc, OutputError):
        return str(exc)
    if exc.filename is None:
        return f"{_errno_text(exc)}; {_fix(exc)}."
    where = repr(final_name(exc.filename))
    if exc.filename2 is not None:
        where += f" -> {final_name(exc.filename2)!r}"
    return f"error on {where}: {_errno_text(exc)}; {_fix(exc)}."
