"""medfuse: ensembling of nnU-Net / PaddleSeg MedicalSeg segmentation models.

Metrics (:func:`dice`, :func:`overlap`, :func:`confusion_matrix`), fusion (:func:`fuse_probabilities`,
:func:`average_probabilities`, :func:`majority_vote`, streaming accumulators), adapters for the folders the
models write, ensemble search, and Paddle inference.

``import medfuse`` imports numpy only; submodules (and numba, which compiles kernels on first use) load
when one of their names is first touched. The export list is ``__init__.pyi`` (what type checkers and
IDEs read); ``tests/test_package.py`` checks the lazy table below against it.
"""

from __future__ import annotations

import importlib
from typing import Any

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
    "surface_metrics": "metrics",
    "SurfaceResult": "metrics",
    "LabelSurface": "metrics",
    # fusion
    "average_probabilities": "fusion",
    "fuse_probabilities": "fusion",
    "majority_vote": "fusion",
    "softmax": "fusion",
    "ProbabilityAccumulator": "fusion",
    "VoteAccumulator": "fusion",
    "UncertaintyMaps": "fusion",
    "fusion_uncertainty": "fusion",
    # quality
    "CaseQA": "quality",
    "case_qa": "quality",
    # staple
    "staple": "fusion.staple",
    "staple_binary": "fusion.staple",
    # postprocessing
    "keep_largest_component": "postprocess",
    "apply_postprocessing": "postprocess",
    "Postprocessing": "postprocess",
    "determine_postprocessing": "postprocess",
    # folders
    "fuse_folders": "folders",
    "evaluate_folder": "folders",
    "FusionReport": "folders",
    "Evaluation": "folders",
    # io
    "open_folder": "io",
    "read_nifti": "io",
    "write_nifti": "io",
    "write_v1_case": "io",
    "check_same_geometry": "io",
    # submission
    "make_submission": "folders",
    "validate_submission": "folders",
    # inference
    "Predictor": "inference",
    # selection
    "search_ensembles": "search",
    "SearchResult": "search",
    "Candidate": "search",
    "OutOfFold": "search",
    "assemble_oof": "search",
}

# attribute -> submodule: today's rooms, and the module names of earlier releases (``medfuse.ensemble`` ...)
_SUBMODULES: dict[str, str] = {
    **{name: name for name in ("bench", "cli", "errors", "folders", "fusion", "geometry", "inference", "io",
                               "metrics", "plots", "postprocess", "quality", "search", "synthetic")},
    "demo": "synthetic.demo",
    "ensemble": "folders.fuse",
    "evaluation": "folders.evaluate",
    "oof": "search.oof",
    "report": "search.report",
    "submission": "folders.submission",
}

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
        return importlib.import_module(f".{_SUBMODULES[name]}", __name__)
    raise AttributeError(f"module 'medfuse' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(__all__) | set(_SUBMODULES))
