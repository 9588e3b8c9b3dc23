"""Exceptions raised by medfuse.

Every error medfuse raises on purpose derives from :class:`MedfuseError`, so ``except MedfuseError``
catches them all. Each subclass also derives from the builtin a caller would expect (``ValueError`` for
bad values, ``ImportError`` for a missing optional dependency, ...), so generic handlers keep working.

Messages follow one pattern: the argument, what was expected, what was received, and the fix, e.g.
"`weights` must have one entry per member (4); got 3."
"""

from __future__ import annotations

__all__ = [
    "CaseMismatchError",
    "FolderLockedError",
    "FormatError",
    "GeometryMismatchError",
    "MedfuseError",
    "MissingDependencyError",
    "OutputError",
    "UnsafePickleError",
    "ValidationError",
]


class MedfuseError(Exception):
    """Base class of every error medfuse raises on purpose."""


class ValidationError(MedfuseError, ValueError):
    """An argument has the wrong shape, dtype, range or value."""


class GeometryMismatchError(ValidationError):
    """Volumes that must share a geometry (shape, spacing, origin, direction) do not."""


class CaseMismatchError(ValidationError):
    """Folders that must hold the same cases do not (missing, extra or duplicated cases)."""


class FormatError(MedfuseError, ValueError):
    """A file is missing, truncated, corrupt, or not in the format medfuse expected."""


class UnsafePickleError(FormatError):
    """A ``.pkl`` file references something other than numpy arrays, builtins and OrderedDict."""


class MissingDependencyError(MedfuseError, ImportError):
    """An optional dependency is not installed; the message names the pip extra to install."""


class OutputError(MedfuseError, OSError):
    """The operating system refused an operation on a file or folder (disk full, read-only, no permission,
    a folder where a file was expected, file-size limit...), or a file just written did not verify.

    The message names the path, the operation ("create folder", "write", "fsync", "rename", "read",
    "verify"), the errno name and text (``ENOSPC (No space left on device)``) and the fix. The attributes
    ``errno``, ``strerror`` and ``filename`` are those of the underlying :class:`OSError` (``errno`` is
    None when a verification failed); ``operation`` is the operation. Build one with
    :func:`medfuse._core.oserrors.output_error`.
    """

    operation: str | None = None

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:  # keep errno & co. across processes
        return _rebuild_output_error, (type(self), self.args, self.errno, self.strerror, self.filename,
                                       self.operation)


def _rebuild_output_error(cls: type[OutputError], args: tuple[object, ...], code: int | None,
                          strerror: str | None, filename: str | None, operation: str | None) -> OutputError:
    err = cls(*args)
    err.errno, err.strerror, err.filename, err.operation = code, strerror, filename, operation
    return err



class FolderLockedError(ValidationError):
    """Another run holds the output folder's lock (one folder, one run at a time); the message names it."""
