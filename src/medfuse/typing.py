"""Public type aliases of medfuse: what the names in signatures and ``help()`` mean.

Use them to annotate your own code (``from medfuse.typing import ProbMembers``); type checkers see the same
aliases medfuse's signatures use.

Arrays (volumes in SimpleITK array order ``(z, y, x)``)
--------------------------------------------------------
LabelArray
    ``NDArray[Any]``: an integer (or bool) label map of shape ``(Z, Y, X)`` (or any spatial shape),
    0 = background.
ProbArray
    ``NDArray[np.floating]``: class probabilities of shape ``(C, Z, Y, X)``, float16 or float32, channel 0 =
    background.
ProbMembers
    ``Sequence[ProbArray] | NDArray``: M probability members, a list of ``(C, ...)`` arrays (no stacking, no
    copy) or one ``(M, C, ...)`` array.
LabelMembers
    ``Sequence[LabelArray] | NDArray``: M label maps, a list of ``(...)`` arrays or one ``(M, ...)`` array.
Spacing
    ``tuple[float, ...]``: voxel size in mm, array order ``(z, y, x)``.

Options (``Literal`` strings and numbers)
-----------------------------------------
EmptyRule
    ``"nan" | "one" | "zero"``: the value of Dice and friends when a label is absent from both maps.
Connectivity
    ``6 | 18 | 26``: voxel neighbourhood of connected components (6: nnU-Net v1 / PaddleSeg, 26: v2).
TieRule
    ``"lowest" | "undecided" | "first"``: who wins a tied majority vote.
MetricName
    ``"dice" | "iou" | "precision" | "recall" | "volume_similarity"``.
Key
    ``int | tuple[int, ...]``: a label, or a region (labels merged into one foreground).
FusionMethod
    ``"mean" | "vote"``: how :func:`medfuse.fuse_folders` fuses.
LearnWeights
    ``"none" | "members" | "classes"``: which weights :func:`medfuse.search_ensembles` fits.
FolderLayout
    ``"v1" | "v2" | "labels"``: the layout of a prediction folder.
"""

from __future__ import annotations

from ._core.typing import Connectivity, EmptyRule, LabelArray, LabelMembers, ProbArray, ProbMembers, Spacing
from .folders.cases import Method as FusionMethod
from .fusion.run import TieRule
from .io.folders import Layout as FolderLayout
from .metrics.results import Key, MetricName
from .search.api import LearnWeights

__all__ = [
    "Connectivity",
    "EmptyRule",
    "FolderLayout",
    "FusionMethod",
    "Key",
    "LabelArray",
    "LabelMembers",
    "LearnWeights",
    "MetricName",
    "ProbArray",
    "ProbMembers",
    "Spacing",
    "TieRule",
]
