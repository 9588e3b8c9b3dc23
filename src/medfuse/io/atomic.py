"""Atomic file writes: write a temporary file beside the target, then ``os.replace`` it into place.

An interrupted run therefore never leaves a truncated ``.nii.gz`` / ``.npz`` / ``.pkl`` under the final
name, and re-running a job can trust every file it finds. The temporary file lives in the same folder (so
``os.replace`` is an atomic rename on one file system), starts with a dot and carries :data:`TEMP_MARKER`,
so folder layout detection ignores it, and keeps the target's full name as its suffix, so writers that pick
the format from the file ending (SimpleITK, ``np.savez``) still see ``.nii.gz`` / ``.npz``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

__all__ = ["TEMP_MARKER", "atomic_write", "is_temporary"]

#: Part of every temporary file name medfuse writes (``.medfuse-tmp-<token>-<final name>``).
TEMP_MARKER = ".medfuse-tmp-"


def is_temporary(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` (a file name or path) is a temporary file of :func:`atomic_write`."""
    return Path(name).name.startswith(TEMP_MARKER)


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Path]:
    """Context manager yielding a temporary path to write; it replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        Final file name. Missing parent folders are created.
    durable : bool, default False
        Also ``fsync`` the file before the rename (survives a power cut, costs time on network drives).

    Yields
    ------
    pathlib.Path
        ``<folder>/.medfuse-tmp-<token>-<name>``: write the whole file there (it ends like ``path``, so
        format-by-extension writers work). If the block raises, the temporary file is removed and ``path``
        is left untouched.

    Examples
    --------
    >>> with atomic_write(folder / "case.nii.gz") as tmp:   # doctest: +SKIP
    ...     sitk.WriteImage(image, str(tmp), True)
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{TEMP_MARKER}{secrets.token_hex(4)}-{final.name}")
    try:
        yield tmp
        if durable:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
