"""Atomic, verified file writes: temporary file beside the target, fsync, integrity check, rename.

A file counts as written only after it has been read back and checked (:mod:`medfuse._core.verify`
chooses the check from the file name: a full decode of a ``.nii.gz`` gzip stream against the size its
NIfTI header announces, every member's CRC of an ``.npz``/``.zip``, a restricted unpickle of a ``.pkl``,
...). Some writers do not report failed writes (SimpleITK's gzip writer returns normally after ``EFBIG``
or ``ENOSPC``); the check catches exactly that. A failed, interrupted or unverifiable write never leaves a
file under its final name, and an older file there is left untouched.

The temporary file lives in the same folder (so ``os.replace`` is an atomic rename on one file system),
starts with a dot and carries :data:`TEMP_MARKER`, so folder layout detection ignores it, and keeps the
target's full name as its suffix, so writers that pick the format from the file ending (SimpleITK,
``np.savez``, matplotlib) still see ``.nii.gz`` / ``.npz`` / ``.png``.

Final files get the mode any new file gets (``0o666`` minus the umask: ``0644`` under the usual umask 022),
so a submission zip or a fused label map is readable by others, even when the writer replaced the temporary
file by one of its own created ``0600`` (as ``tempfile.mkstemp`` does).
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Literal

from ..errors import MedfuseError, OutputError, ValidationError
from .oserrors import output_error
from .verify import check_for, has_check

__all__ = ["TEMP_MARKER", "Verify", "atomic_write", "atomic_writes", "is_temporary"]

#: Part of every temporary file name medfuse writes (``.medfuse-tmp-<token>-<final name>``).
TEMP_MARKER = ".medfuse-tmp-"

#: ``"auto"`` (check chosen by the file ending), a callable ``check(path)`` that raises when the file at
#: ``path`` is not whole, or None (no check; only for endings that have no check).
Verify = Literal["auto"] | Callable[[Path], object] | None

_Check = Callable[[Path], object]
#: errors of a directory fsync that mean "not supported here", not "failed"
_FSYNC_UNSUPPORTED = {errno.EINVAL, errno.EBADF, errno.EISDIR, getattr(errno, "ENOTSUP", -1),
                      getattr(errno, "EOPNOTSUPP", -1)}


def is_temporary(name: str | os.PathLike[str]) -> bool:
    """Whether ``name`` (a file name or path) is a temporary file of :func:`atomic_write`."""
    return Path(name).name.startswith(TEMP_MARKER)


def _no_check(path: Path) -> None:
    return None


def _resolve_check(final: Path, verify: Verify) -> _Check:
    if verify == "auto":
        return check_for(final)
    if verify is None:
        if has_check(final):
            raise ValidationError(
                f"`verify=None` is refused for {final.name!r}: files ending like this have an integrity "
                "check, and an unchecked write may be truncated without any error. Pass verify='auto' "
                "(default) or a callable check."
            )
        return _no_check
    if callable(verify):
        return verify
    raise ValidationError(f"`verify` must be 'auto', a callable check or None; got {verify!r}.")


def _create_temporary(final: Path) -> Path:
    """Create the parent folder and an empty temporary file beside ``final`` (errors as OutputError)."""
    if final.is_dir():
        raise output_error(IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)), path=final,
                           operation="write")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, path=exc.filename or final.parent, operation="create folder") from exc
    tmp = final.with_name(f"{TEMP_MARKER}{secrets.token_hex(4)}-{final.name}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _MODES[str(tmp)] = os.fstat(fd).st_mode & 0o777  # 0o666 minus the umask
        finally:
            os.close(fd)
    except OSError as exc:
        raise output_error(exc, path=final, operation="write") from exc
    return tmp


#: temporary file -> the mode it was created with (the umask-respecting mode its final file must have)
_MODES: dict[str, int] = {}


def _restore_mode(tmp: Path) -> None:
    """Give ``tmp`` its creation mode back when a writer replaced it by a file of another mode (0600)."""
    mode = _MODES.get(str(tmp))
    if mode is not None and os.name != "nt" and os.stat(tmp).st_mode & 0o777 != mode:
        os.chmod(tmp, mode)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _seal(tmp: Path, final: Path, check: _Check, durable: bool) -> None:
    """fsync and verify the temporary file (before it may take the final name)."""
    try:
        _restore_mode(tmp)
    except OSError as exc:
        raise output_error(exc, path=final, operation="set the mode of") from exc
    if durable:
        try:
            _fsync(tmp)
        except OSError as exc:
            raise output_error(exc, path=final, operation="fsync") from exc
    try:
        check(tmp)
    except OSError as exc:
        raise output_error(exc, path=final, operation="read back") from exc
    except Exception as exc:  # a failed check, whatever it raised
        reason = str(exc).replace(str(tmp), final.name).rstrip(".") or type(exc).__name__
        err = OutputError(
            f"writing {str(final)!r} failed: what was written does not verify ({reason}); nothing was kept "
            "under that name. A full disk or a file-size limit ('ulimit -f') can cut a write short without "
            "any error: free space or choose another output folder, then retry."
        )
        err.filename, err.operation = str(final), "verify"
        raise err from exc


def _commit(tmp: Path, final: Path, durable: bool) -> None:
    """Rename into place, then fsync the folder so the rename itself survives a power cut."""
    _MODES.pop(str(tmp), None)
    try:
        os.replace(tmp, final)
    except OSError as exc:
        raise output_error(exc, path=final, operation="rename into") from exc
    if not durable or os.name == "nt":
        return
    try:
        _fsync(final.parent)
    except OSError as exc:
        if exc.errno not in _FSYNC_UNSUPPORTED:
            raise output_error(exc, path=final, operation="fsync the folder of") from exc


def _discard(tmp: Path) -> None:
    _MODES.pop(str(tmp), None)
    with suppress(OSError):
        os.unlink(tmp)


def _block_error(exc: OSError, staged: dict[str, Path], folder: Path) -> BaseException:
    """An OSError raised while writing: an OutputError when it concerns a temporary file."""
    if isinstance(exc, MedfuseError):
        return exc
    if exc.filename is None:
        finals = list(staged.values())
        return output_error(exc, path=finals[0] if len(finals) == 1 else folder, operation="write")
    name = os.fspath(exc.filename)
    if name in staged:
        return output_error(exc, path=staged[name], operation="write")
    return exc  # about another file (an input): not ours to rename


@contextmanager
def atomic_write(path: str | os.PathLike[str], *, verify: Verify = "auto",
                 durable: bool = True) -> Iterator[Path]:
    """Context manager yielding a temporary path to write; it replaces ``path`` once written and verified.

    Parameters
    ----------
    path : path-like
        Final file name. Missing parent folders are created.
    verify : "auto", callable or None, default "auto"
        How to check the written file before it takes its name. ``"auto"``: by the ending of ``path``
        (see :mod:`medfuse._core.verify`); a callable ``check(tmp_path)`` that raises when the file is not
        whole; None: no check, only allowed for endings that have no check.
    durable : bool, default True
        ``fsync`` the file before the check and the folder after the rename (survives a power cut).

    Yields
    ------
    pathlib.Path
        ``<folder>/.medfuse-tmp-<token>-<name>`` (already created, empty): write the whole file there (it
        ends like ``path``, so format-by-extension writers work).

    Raises
    ------
    OutputError
        The folder could not be created, the file could not be written, synced or renamed (the message
        names the path, the operation and the errno, e.g. ENOSPC), or it does not verify. Then the
        temporary file is removed, nothing exists under ``path`` that was not there before, and an older
        file under ``path`` is untouched. An exception raised by the block itself is passed on (an
        ``OSError`` about the temporary file becomes an ``OutputError``), with the same clean-up.

    Examples
    --------
    >>> with atomic_write(folder / "case.nii.gz") as tmp:   # doctest: +SKIP
    ...     sitk.WriteImage(image, str(tmp), True)
    """
    final = Path(path)
    check = _resolve_check(final, verify)
    tmp = _create_temporary(final)
    try:
        try:
            yield tmp
        except OSError as exc:
            raise _block_error(exc, {str(tmp): final}, final.parent) from exc
        _seal(tmp, final, check, durable)
        _commit(tmp, final, durable)
    except BaseException:
        _discard(tmp)
        raise


@contextmanager
def atomic_writes(folder: str | os.PathLike[str], *, verify: Verify = "auto",
                  durable: bool = True) -> Iterator[Callable[[str], Path]]:
    """Several files of one folder written together: all are verified before any takes its name.

    Yields ``stage(name) -> temporary path``; call it once per file and write the file there. When the
    block succeeds every file is fsynced and verified (see :func:`atomic_write`), then all are renamed.
    When the block or a check fails, every temporary file is removed and no final file is touched.
    """
    out = Path(folder)
    staged: dict[str, Path] = {}

    def stage(name: str) -> Path:
        final = out / name
        check = _resolve_check(final, verify)
        tmp = _create_temporary(final)
        staged[str(tmp)] = final
        checks.append((tmp, final, check))
        return tmp

    checks: list[tuple[Path, Path, _Check]] = []
    try:
        try:
            yield stage
        except OSError as exc:
            raise _block_error(exc, staged, out) from exc
        for tmp, final, check in checks:
            _seal(tmp, final, check, durable)
        for tmp, final, _ in checks:
            _commit(tmp, final, durable)
    except BaseException:
        for tmp, _, _ in checks:
            _discard(tmp)
        raise

