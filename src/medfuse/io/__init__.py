"""Reading and writing the files segmentation models produce.

- :func:`open_folder` detects a prediction folder's layout (PaddleSeg MedicalSeg / nnU-Net v1, nnU-Net v2,
  or label maps only) and gives a :class:`CaseSource` per case: geometry, crop box, probabilities (whole
  or streamed one class channel at a time), labels. :func:`check_same_geometry` checks members agree.
- :func:`read_nifti` / :func:`write_nifti` / :func:`read_geometry`: SimpleITK, exact geometry, atomic.
- :func:`load_pickle` / :func:`save_pickle`: properties files through a restricted unpickler.
- :func:`read_npz` / :func:`npz_member`: streamed npz members with fast inflate (isal / zlib-ng).
- :func:`write_v1_case` / :func:`write_v2_case` / :func:`v1_properties`: write cases as the models do.
- :func:`atomic_write`: temporary file + ``os.replace``.

This package imports numpy and the standard library only; SimpleITK, isal and zlib-ng load on first use.
"""

from __future__ import annotations

from .atomic import atomic_write, is_temporary
from .folders import CaseSource, Layout, PredictionFolder, check_same_geometry, open_folder
from .nifti import label_map_files, read_geometry, read_nifti, write_nifti
from .npz import InflateBackend, NpzMember, inflate_backend, iter_npz_channels, npz_keys, npz_member, read_npz
from .pickles import load_pickle, loads_pickle, save_pickle
from .v1 import WrittenCase, v1_properties, write_v1_case
from .v2 import v2_properties, write_v2_case

__all__ = [
    "CaseSource",
    "InflateBackend",
    "Layout",
    "NpzMember",
    "PredictionFolder",
    "WrittenCase",
    "atomic_write",
    "check_same_geometry",
    "inflate_backend",
    "is_temporary",
    "iter_npz_channels",
    "label_map_files",
    "load_pickle",
    "loads_pickle",
    "npz_keys",
    "npz_member",
    "open_folder",
    "read_geometry",
    "read_nifti",
    "read_npz",
    "save_pickle",
    "v1_properties",
    "v2_properties",
    "write_nifti",
    "write_v1_case",
    "write_v2_case",
]
