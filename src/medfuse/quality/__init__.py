"""Per-case quality assurance of a fusion: which fused cases deserve a look before submission.

- :mod:`.qa`: :func:`case_qa` turns one case's fused labels and :class:`~medfuse.fusion.UncertaintyMaps`
  into a :class:`CaseQA` (components and one ``qa_score``, higher = more suspicious).
- :mod:`.files`: :func:`qa_table` (rows sorted, most suspicious first), :func:`write_qa` (``qa.csv`` and
  ``qa.json``, atomic).
- :mod:`.calibration`: :func:`qa_calibration`, the Spearman correlation of the score with the case Dice and
  its bootstrap interval (:class:`QACalibration`).

Definitions, calibration and limits: ``docs/uncertainty.md``. Importing this package does not load numba.
"""

from __future__ import annotations

from .calibration import QACalibration, qa_calibration
from .files import qa_table, write_qa
from .qa import COMPONENTS, SCORE_COEFFICIENTS, CaseQA, boundary_band, case_qa

__all__ = [
    "COMPONENTS",
    "SCORE_COEFFICIENTS",
    "CaseQA",
    "QACalibration",
    "boundary_band",
    "case_qa",
    "qa_calibration",
    "qa_table",
    "write_qa",
]
