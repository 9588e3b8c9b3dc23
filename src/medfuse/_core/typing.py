"""Type aliases shared across medfuse."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Connectivity",
    "EmptyRule",
    "LabelArray",
    "LabelMembers",
    "ProbArray",
    "ProbMembers",
    "Spacing",
]

#: An integer (or bool) label map of shape (Z, Y, X), or any spatial shape.
LabelArray = NDArray[Any]
#: Class probabilities of shape (C, Z, Y, X), float16 or float32.
ProbArray = NDArray[np.floating[Any]]
#: M probability members: a sequence of (C, ...) arrays or one (M, C, ...) array.
ProbMembers = Sequence[ProbArray] | NDArray[np.floating[Any]]
#: M label maps: a sequence of (...) integer arrays or one (M, ...) array.
LabelMembers = Sequence[LabelArray] | NDArray[Any]
#: Voxel spacing in mm, array order (z, y, x).
Spacing = tuple[float, ...]
#: What Dice and friends are when a label is absent from both maps.
EmptyRule = Literal["nan", "one", "zero"]
#: Voxel connectivity of connected components in 3D.
Connectivity = Literal[6, 18, 26]
