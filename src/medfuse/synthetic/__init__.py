"""Seeded synthetic data for tests, examples and benchmarks.

- :mod:`.shapes`: :func:`phantom`, an abdominal-CT-like label map with image and geometry.
- :mod:`.members`: :func:`simulate_probabilities`, :func:`simulate_labels`, :func:`simulate_members`.
- :mod:`.folds`: :func:`make_fold_tree`, a small cross-validation tree for ensemble search.
- :mod:`.demo`: :func:`run_demo`, the ``medfuse demo`` walk-through (fuse, evaluate, submit).
"""

from __future__ import annotations

from .folds import FOLD_TREE_MODELS, FoldTree, make_fold_tree, write_fold_tree
from .members import simulate_labels, simulate_members, simulate_probabilities
from .shapes import ORGAN_NAMES, Phantom, phantom

__all__ = [
    "FOLD_TREE_MODELS",
    "ORGAN_NAMES",
    "FoldTree",
    "Phantom",
    "make_fold_tree",
    "phantom",
    "simulate_labels",
    "simulate_members",
    "simulate_probabilities",
    "write_fold_tree",
]
