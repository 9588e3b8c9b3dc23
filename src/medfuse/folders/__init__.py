"""Jobs over the cases of prediction folders: fuse them, evaluate them, write a submission.

- :mod:`.fuse`: :func:`fuse_folders` / :class:`FusionReport` (one case: :mod:`.cases`; QA: :mod:`.qa`).
- :mod:`.figures`: :func:`qa_figures` (``qa.png``, ``qa_<case>.png`` of a run with ``qa=True``).
- :mod:`.evaluate`: :func:`evaluate_folder` / :class:`Evaluation`.
- :mod:`.submission`: :func:`make_submission`, :func:`validate_submission`.
"""

from __future__ import annotations

from .evaluate import Evaluation, evaluate_folder
from .figures import qa_figures
from .fuse import FusionReport, fuse_folders
from .submission import SubmissionReport, make_submission, validate_submission

__all__ = ["Evaluation", "FusionReport", "SubmissionReport", "evaluate_folder", "fuse_folders",
           "make_submission", "qa_figures", "validate_submission"]
