"""Argument helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import errno
import json
import os
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np

from .._core.oserrors import output_error
from ..errors import OutputError, ValidationError

__all__ = ["add_executor_arguments", "align_weights", "check_output_file", "check_output_folder", "make_executor",
           "parse_float_list", "parse_int_list", "read_weights_file"]


def parse_float_list(text: str, *, name: str) -> list[float]:
    """``"1,2,0.5"`` -> ``[1.0, 2.0, 0.5]`` with an error naming the option."""
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValidationError(f"`{name}` must be comma-separated numbers like 1,2,0.5; got {text!r}.") from None


def parse_int_list(text: str, *, name: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValidationError(f"`{name}` must be comma-separated integers like 1,2,3; got {text!r}.") from None


def read_weights_file(path: str | os.PathLike[str]) -> tuple[list[Any], list[str] | None]:
    """Weights from JSON, and the member names they belong to when the file says.

    Accepted: a list (one weight per member), a list of lists (per member and class), an object with a
    ``"weights"`` key and optionally ``"members"`` (``medfuse search``'s ``weights.json``, or the ``best``
    entry of its ``search.json``, or the whole ``search.json``).
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(f"`--weights-file` {str(p)!r} is not a readable JSON file ({exc}).") from exc
    if isinstance(data, dict) and isinstance(data.get("best"), dict):
        data = data["best"]
    names: list[str] | None = None
    if isinstance(data, dict):
        members = data.get("members")
        if isinstance(members, list) and all(isinstance(m, str) for m in members):
            names = list(members)
        data = data.get("weights")
    if not isinstance(data, list) or not data:
        raise ValidationError(f"`--weights-file` {str(p)!r} must hold a list of weights (or an object with a "
                              "'weights' list).")
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValidationError(f"`--weights-file` {str(p)!r}: the weights must be numbers, one per member "
                              "(or one list per member with one number per class).") from None
    if names is not None and len(names) != arr.shape[0]:
        raise ValidationError(f"`--weights-file` {str(p)!r} names {len(names)} members but holds "
                              f"{arr.shape[0]} rows of weights.")
    return list(arr.tolist()), names


def align_weights(weights: list[Any], names: list[str] | None, members: list[str]) -> tuple[list[Any], str | None]:
    """Put weights in the order of the MEMBER folders when the file names them by folder name.

    Returns the weights and a note for the user (None when nothing needs saying).
    """
    if names is None:
        return weights, None
    folder_names = [Path(m).name for m in members]
    if sorted(folder_names) == sorted(names) and len(set(names)) == len(names):
        return [weights[names.index(n)] for n in folder_names], None
    return weights, (f"note: the weights file names members {names}, which are not the MEMBER folders' names "
                     f"{folder_names}; the weights apply in the order the folders are given.")


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("parallelism")
    group.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                       help="cases processed in parallel in N worker processes (default 1: serial)")
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help="run cases on a Dask cluster (e.g. tcp://host:8786); needs the 'dask' extra")
    group.add_argument("--no-progress", dest="progress", action="store_false", help="hide progress bars")


def make_executor(args: argparse.Namespace) -> tuple[Executor | None, Any]:
    """(executor, closer) from ``--jobs`` / ``--scheduler``; call ``closer()`` when done (may be None)."""
    if args.scheduler:
        from .._core.optional import import_optional

        distributed = import_optional("distributed", purpose="--scheduler")
        client = distributed.Client(args.scheduler)
        return client.get_executor(), client.close
    if args.jobs and args.jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"))
        return pool, pool.shutdown
    if args.jobs is not None and args.jobs < 1:
        raise ValidationError(f"`--jobs` must be >= 1; got {args.jobs}.")
    return None, None


def _flagged(exc: OSError, path: Path, operation: str, flag: str) -> OutputError:
    err = output_error(exc, path=path, operation=operation)
    err.args = (f"{flag} {err.args[0]}",)
    return err


def _refused(code: int, path: Path, operation: str, flag: str) -> OutputError:
    return _flagged(OSError(code, os.strerror(code)), path, operation, flag)


def _check_writable(folder: Path, flag: str) -> None:
    """``folder`` (or, when missing, its nearest existing ancestor) must be a folder we may write in."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise _refused(errno.ENOTDIR, folder, "create folders in", flag)
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = hasattr(os, "statvfs") and bool(os.statvfs(folder).f_flag & getattr(os, "ST_RDONLY", 1))
        raise _refused(errno.EROFS if read_only else errno.EACCES, folder, "write in", flag)


def check_output_file(path: str | os.PathLike[str] | None, *, flag: str) -> None:
    """Fail before a long run when the file a flag names cannot be written: it is a folder (EISDIR), or
    its folder is read-only (EROFS), not writable (EACCES) or a file (ENOTDIR). One-line OutputError."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise _refused(errno.EISDIR, p, "write", flag)
    _check_writable(p.parent, flag)


def check_output_folder(path: str | os.PathLike[str], *, flag: str) -> None:
    """Fail before a long run when the output folder a flag names cannot be created or written in."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise _refused(errno.ENOTDIR, p, "use as output folder", flag)
    _check_writable(p, flag)
