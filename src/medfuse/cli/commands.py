"""Sub-commands of the ``medfuse`` command line.

Each module here defines ``NAME`` (the sub-command), ``HELP`` (one line), ``EPILOG`` (examples, may be
empty), ``configure(parser)`` that adds its arguments to an ``argparse.ArgumentParser``, and
``run(args) -> int`` that does the work through the public API. ``medfuse.cli.main`` wires them together,
turns :class:`medfuse.MedfuseError` into a one-line message and a non-zero exit code.
"""

from __future__ import annotations

#: sub-command modules, in the order ``medfuse --help`` lists them
COMMANDS: tuple[str, ...] = ("demo", "fuse", "evaluate", "submit", "search", "postprocess", "infer", "bench")
