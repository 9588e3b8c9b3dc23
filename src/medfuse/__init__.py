"""medfuse: ensembling of nnU-Net / PaddleSeg MedicalSeg segmentation models.

Metrics (:func:`dice`, :func:`overlap`, :func:`confusion_matrix`), fusion (:func:`fuse_probabilities`,
:func:`average_probabilities`, :func:`majority_vote`, streaming accumulators), adapters for the folders the
models write, ensemble search, and Paddle inference.

``import medfuse`` imports numpy only; submodules (and numba, which compiles kernels on first use) load
when one of their names is first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .errors import (
    CaseMismatchError,
    FormatError,
    GeometryMismatchError,
    MedfuseError,
    MissingDependencyError,
    UnsafePickleError,
    ValidationError,
)
from .geometry import Geometry

# public name -> submodule that defines it (imported lazily on first access)
_LAZY: dict[str, str] = {
    # metrics
    "confusion_matrix": "metrics",
    "dice": "metrics",
    "overlap": "metrics",
    "OverlapResult": "metrics",
    "LabelOverlap": "metrics",
    "aggregate_cases": "metrics",
    "overlap_from_confusion": "metrics",
    "CaseSummary": "metrics",
    "surface_metrics": "surface", "SurfaceResult": "surface", "LabelSurface": "surface",
    # fusion
    "average_probabilities": "fusion",
    "fuse_probabilities": "fusion",
    "majority_vote": "fusion",
    "softmax": "fusion",
    "ProbabilityAccumulator": "fusion",
    "VoteAccumulator": "fusion",
    # staple
    "staple": "staple",
    "staple_binary": "staple",
    # postprocessing
    "keep_largest_component": "postprocess",
    "apply_postprocessing": "postprocess",
    "Postprocessing": "postprocess",
    "determine_postprocessing": "postprocess",
    # folders
    "fuse_folders": "ensemble",
    "evaluate_folder": "evaluation",
    "FusionReport": "ensemble",
    "Evaluation": "evaluation",
    # io
    "open_folder": "io",
    "read_nifti": "io",
    "write_nifti": "io",
    "write_v1_case": "io",
    "check_same_geometry": "io",
    # submission
    "make_submission": "submission",
    "validate_submission": "submission",
    # inference
    "Predictor": "inference",
    # selection
    "search_ensembles": "search",
    "SearchResult": "search",
    "Candidate": "search",
    "OutOfFold": "oof",
    "assemble_oof": "oof",
}

_SUBMODULES = {"synthetic", "io", "inference", "metrics", "fusion", "postprocess", "ensemble", "search",
               "staple", "geometry", "errors", "submission", "demo", "plots", "oof", "report", "evaluation"}

__all__ = [
    "CaseMismatchError",
    "FormatError",
    "Geometry",
    "GeometryMismatchError",
    "MedfuseError",
    "MissingDependencyError",
    "UnsafePickleError",
    "ValidationError",
    "__version__",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'medfuse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | _SUBMODULES)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .ensemble import FusionReport, fuse_folders
    from .evaluation import Evaluation, evaluate_folder
    from .fusion import (
        ProbabilityAccumulator,
        VoteAccumulator,
        average_probabilities,
        fuse_probabilities,
        majority_vote,
        softmax,
    )
    from .inference import Predictor
    from .io import check_same_geometry, open_folder, read_nifti, write_nifti, write_v1_case
    from .metrics import (
        CaseSummary,
        LabelOverlap,
        OverlapResult,
        aggregate_cases,
        confusion_matrix,
        dice,
        overlap,
        overlap_from_confusion,
    )
    from .oof import OutOfFold, assemble_oof
    from .postprocess import Postprocessing, apply_postprocessing, determine_postprocessing, keep_largest_component
    from .search import Candidate, SearchResult, search_ensembles
    from .staple import staple, staple_binary
    from .submission import make_submission, validate_submission
    from .surface import LabelSurface, SurfaceResult, surface_metrics
