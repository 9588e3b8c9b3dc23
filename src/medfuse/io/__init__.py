"""Reading and writing the files segmentation models produce.

- :func:`open_folder` detects a prediction folder's layout (PaddleSeg MedicalSeg / nnU-Net v1, nnU-Net v2,
  or label maps only) and gives a :class:`CaseSource` per case: geometry, crop box, probabilities (whole
  or streamed one class channel at a time), labels. :func:`check_same_geometry` checks members agree.
- :func:`read_nifti` / :func:`write_nifti` / :func:`read_geometry`: SimpleITK, exact geometry, atomic.
- :func:`load_pickle` / :func:`save_pickle`: properties files through a restricted unpickler.
- :func:`read_npz`: npz members with fast inflate (isal / zlib-ng); streaming in :mod:`.npz`.
- :func:`write_v1_case` / :func:`write_v2_case` / :func:`v1_properties`: write cases as the models do.
- Plumbing (importable here, documented in its module): :mod:`.atomic` (temporary file + ``os.replace``),
  :mod:`.jsonfile`, the npz streams of :mod:`.npz`.

This package imports numpy and the standard library only; SimpleITK, isal and zlib-ng load on first use.
"""

from __future__ import annotations

# ``name as name``: plumbing kept importable from here for code written against earlier releases, but not
# part of the documented surface (``__all__``).
from .._core.atomic import atomic_write as atomic_write
from .._core.atomic import is_temporary as is_temporary
from .folders import CaseSource, Layout, PredictionFolder, check_same_geometry, open_folder
from .nifti import label_map_files as label_map_files
from .nifti import read_geometry, read_nifti, write_nifti
from .npz import InflateBackend as InflateBackend
from .npz import NpzMember as NpzMember
from .npz import inflate_backend as inflate_backend
from .npz import iter_npz_channels as iter_npz_channels
from .npz import npz_keys as npz_keys
from .npz import npz_member as npz_member
from .npz import read_npz
from .pickles import load_pickle, save_pickle
from .pickles import loads_pickle as loads_pickle
from .v1 import WrittenCase, v1_properties, write_v1_case
from .v2 import v2_properties, write_v2_case

__all__ = [
    "CaseSource",
    "Layout",
    "PredictionFolder",
    "WrittenCase",
    "check_same_geometry",
    "load_pickle",
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
