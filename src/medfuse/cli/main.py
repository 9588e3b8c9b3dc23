"""The ``medfuse`` command: a thin shell over the public API.

Each sub-command lives in :mod:`medfuse.cli.commands` (see its docstring for the contract). Errors that
medfuse raises on purpose become a one-line message on stderr and exit code 2, with the API's keyword
spellings rewritten to the command's flags by the command's ``FLAG_NAMES`` (``"overwrite=True"`` ->
``"--overwrite"``). Any other ``OSError`` (disk full, read-only folder, no permission...) becomes the same
kind of line: the path, the errno name and text, the fix; exit code 2. ``--debug`` shows the traceback
instead. Anything else is a bug and keeps its traceback.

Every sub-command takes ``-q/--quiet``: no progress bars and no information lines on stdout (a command's
``--no-progress`` is implied); errors, warnings and notes still go to stderr, and data a command was asked
to write to stdout (``--json -``, ``--csv -``) still goes there.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from types import ModuleType

from .._core.oserrors import os_error_line
from .._version import __version__
from ..errors import MedfuseError
from .commands import COMMANDS

__all__ = ["build_parser", "cli_message", "main"]


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f".{name}", __package__)
    except ModuleNotFoundError as exc:
        if exc.name == f"{__package__}.{name}":
            return None  # sub-command not shipped in this build
        raise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medfuse",
        description="Ensemble nnU-Net / PaddleSeg MedicalSeg segmentation models: fuse prediction folders, "
        "evaluate, choose the best ensemble, run exported Paddle models, write a submission.",
        epilog="Run 'medfuse COMMAND --help' for a command's options and examples. "
        "Start with 'medfuse demo'.",
    )
    parser.add_argument("--version", action="version", version=f"medfuse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        if module is None:
            continue
        p = sub.add_parser(
            module.NAME, help=module.HELP, description=module.HELP, epilog=getattr(module, "EPILOG", None),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the full traceback on errors")
        p.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars or information lines (errors are still printed)")
        module.configure(p)
        p.set_defaults(_run=module.run, _flag_names=dict(getattr(module, "FLAG_NAMES", {})))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``medfuse`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 1
    if args.quiet and hasattr(args, "progress"):
        args.progress = False
    try:
        with _quiet_stdout(args):
            code: int = args._run(args)
    except MedfuseError as exc:
        if args.debug:
            raise
        print(f"medfuse {args.command}: error: {cli_message(str(exc), args._flag_names)}", file=sys.stderr)
        return 2
    except OSError as exc:  # safety net: an OS error no medfuse writer has turned into an OutputError
        if args.debug:
            raise
        print(f"medfuse {args.command}: error: {os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"medfuse {args.command}: interrupted; finished cases are kept, re-run to resume",
              file=sys.stderr)
        return 130
    return code


#: options whose value ``-`` means "write this data to stdout" (kept by --quiet)
_STDOUT_DATA_OPTIONS = ("json", "csv")


@contextlib.contextmanager
def _quiet_stdout(args: argparse.Namespace) -> Iterator[None]:
    """With ``--quiet``, what the command prints to stdout is dropped, unless it writes data there."""
    if not args.quiet or any(getattr(args, o, None) == "-" for o in _STDOUT_DATA_OPTIONS):
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def cli_message(message: str, flag_names: Mapping[str, str]) -> str:
    """``message`` with API spellings replaced by CLI flags (longest first) and on one line."""
    for api in sorted(flag_names, key=len, reverse=True):
        message = message.replace(api, flag_names[api])
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
