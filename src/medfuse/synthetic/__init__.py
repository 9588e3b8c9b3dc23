"""Seeded synthetic data for tests, examples and benchmarks.

- :mod:`.shapes`: :func:`phantom`, an abdominal-CT-like label map with image and geometry.
- :mod:`.members`: :func:`simulate_probabilities`, :func:`simulate_labels`, :func:`simulate_members`.
- :mod:`.demo`: :func:`run_demo`, the ``medfuse demo`` walk-through (fuse, evaluate, submit).
"""

from __future__ import annotations

from .members import simulate_labels, simulate_members, simulate_probabilities
from .shapes import ORGAN_NAMES, Phantom, phantom

__all__ = ["ORGAN_NAMES", "Phantom", "phantom", "simulate_labels", "simulate_members", "simulate_probabilities"]
