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
    "FormatError",
    "GeometryMismatchError",
    "MedfuseError",
    "MissingDependencyError",
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


class FolderLockedError(ValidationError):
    """Another run holds the output folder's lock (one folder, one run at a time); the message names it."""


__all__ += ["FolderLockedError"]
