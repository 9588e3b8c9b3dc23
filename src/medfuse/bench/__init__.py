"""``medfuse bench``: medfuse's kernels and folder jobs timed against their peers.

- :mod:`.runner`: :func:`run_benchmark` and its sections; :mod:`.report`: the report and its targets.
"""

from __future__ import annotations

from .report import BenchmarkReport, Measurement, Sizes, Target
from .runner import SECTIONS, run_benchmark

__all__ = ["SECTIONS", "BenchmarkReport", "Measurement", "Sizes", "Target", "run_benchmark"]
