"""Plumbing every other room uses: typing aliases, argument checks, optional imports, progress, jobs.

Layer 0 (with :mod:`medfuse.errors`, :mod:`medfuse.geometry` and ``_version``): imports numpy and the standard
library only, never another medfuse room.
"""
