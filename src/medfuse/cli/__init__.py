"""The ``medfuse`` command: :mod:`.main` builds the parser and runs a sub-command; one module per command
(:mod:`.fuse`, :mod:`.evaluate`, ...), shared argument helpers in :mod:`._common`; the list and the contract
of the sub-commands is in :mod:`.commands`."""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
