"""Fusing the outputs of several models (members) into one segmentation.

- :mod:`.arrays`: :func:`fuse_probabilities`, :func:`average_probabilities`, :func:`majority_vote`,
  :func:`softmax` on in-memory arrays.
- :mod:`.accumulators`: :class:`ProbabilityAccumulator`, :class:`VoteAccumulator` (one member at a time).
- :mod:`.run`: what arrays and accumulators share (tie rule, the threaded kernel run).
- :mod:`.inputs`: member checks and the views the kernels read; :mod:`.classwise`: class-major fusion;
  :mod:`.staple`: STAPLE;
  :mod:`.uncertainty`: :class:`UncertaintyMaps`, :func:`fusion_uncertainty` (maps from the fusion pass).

Importing this package does not load numba: the kernels load on the first call that needs them.
"""

from __future__ import annotations

from .accumulators import ProbabilityAccumulator, VoteAccumulator
from .arrays import average_probabilities, fuse_probabilities, majority_vote, softmax
from .inputs import RANGE_TOLERANCE, SUM_TOLERANCE
from .run import TieRule
from .uncertainty import UncertaintyMaps, fusion_uncertainty

__all__ = [
    "RANGE_TOLERANCE",
    "SUM_TOLERANCE",
    "ProbabilityAccumulator",
    "TieRule",
    "UncertaintyMaps",
    "VoteAccumulator",
    "average_probabilities",
    "fuse_probabilities",
    "fusion_uncertainty",
    "majority_vote",
    "softmax",
]
