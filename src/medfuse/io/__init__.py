"""Reading and writing the files segmentation models produce.

- :func:`read_nifti` / :func:`write_nifti` / :func:`read_geometry`: SimpleITK, exact geometry, atomic.
- :func:`load_pickle` / :func:`save_pickle`: properties files through a restricted unpickler.
- :func:`read_npz` / :func:`npz_member`: streamed npz members with fast inflate (isal / zlib-ng).
- :func:`atomic_write`: temporary file + ``os.replace``.

This package imports numpy and the standard library only; SimpleITK, isal and zlib-ng load on first use.
"""

from __future__ import annotations

from .atomic import atomic_write, is_temporary
from .nifti import read_geometry, read_nifti, write_nifti
from .npz import InflateBackend, NpzMember, inflate_backend, iter_npz_channels, npz_keys, npz_member, read_npz
from .pickles import load_pickle, loads_pickle, save_pickle

__all__ = [
    "InflateBackend",
    "NpzMember",
    "atomic_write",
    "inflate_backend",
    "is_temporary",
    "iter_npz_channels",
    "load_pickle",
    "loads_pickle",
    "npz_keys",
    "npz_member",
    "read_geometry",
    "read_nifti",
    "read_npz",
    "save_pickle",
    "write_nifti",
]
