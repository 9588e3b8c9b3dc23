"""Reading and writing the files segmentation models produce.

- :func:`read_nifti` / :func:`write_nifti` / :func:`read_geometry`: SimpleITK, exact geometry, atomic.
- :func:`load_pickle` / :func:`save_pickle`: properties files through a restricted unpickler.
- :func:`atomic_write`: temporary file + ``os.replace``.

This package imports numpy and the standard library only; SimpleITK loads on first use.
"""

from __future__ import annotations

from .atomic import atomic_write, is_temporary
from .nifti import read_geometry, read_nifti, write_nifti
from .pickles import load_pickle, loads_pickle, save_pickle

__all__ = [
    "atomic_write",
    "is_temporary",
    "load_pickle",
    "loads_pickle",
    "read_geometry",
    "read_nifti",
    "save_pickle",
    "write_nifti",
]
