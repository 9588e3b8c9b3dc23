"""QA figures of a fused folder: ``qa.png`` (the ranking) and ``qa_<case>.png`` (the worst slices of a case).

Drawn after fusion from a :class:`~medfuse.folders.fuse.FusionReport` of a run with ``qa=True``. The slice
figures of the ``top`` most suspicious cases re-read those cases' members (their labels: a probability
member's argmax) and take the entropy map from ``uncertainty/<case>_entropy.nii.gz`` when the run saved it; otherwise
the case is fused once more, with its uncertainty, into a temporary folder that is removed afterwards.
matplotlib is imported lazily (extra ``plot``); figures are written atomically.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError
from .fuse import FusionReport, fuse_folders
from .qa import map_file

__all__ = ["qa_figures"]

QA_PNG = "qa.png"


def _member_labels(folder: str, case: str) -> NDArray[Any]:
    from .. import io

    source = io.open_folder(folder).case(case)
    return source.argmax_labels(full=True) if source.has_probabilities else source.read_labels()


def _entropy(report: FusionReport, case: str) -> NDArray[np.float32]:
    from .. import io

    saved = report.output / map_file(case, "entropy")
    if saved.is_file():
        return np.asarray(io.read_nifti(saved)[0], dtype=np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="medfuse-qa-"))
    try:
        fuse_folders(list(report.members), tmp / "case", method=report.method, weights=report.weights,
                     cases=[case], progress=False, space="log" if report.space == "log" else "probability",
                     qa=True, save_uncertainty=["entropy"])
        return np.asarray(io.read_nifti(tmp / "case" / map_file(case, "entropy"))[0], dtype=np.float32)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def qa_figures(report: FusionReport, *, top: int = 0, n_slices: int = 3) -> list[Path]:
    """Write ``qa.png`` and, for the ``top`` most suspicious cases, ``qa_<case>.png`` into the output folder.

    Parameters
    ----------
    report : FusionReport
        Of a :func:`fuse_folders` run with ``qa=True`` (its rows rank the cases).
    top : int, default 0
        How many cases get a slice figure (the first ``top`` rows of ``report.qa``).
    n_slices : int, default 3
        Slices per case figure: the axial slices with the largest summed entropy.

    Returns
    -------
    list of Path
        The figures written, ``qa.png`` first.
    """
    from .. import io
    from ..plots import qa_ranking_plot, qa_slices_plot

    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValidationError(f"`top` must be an integer >= 0 (cases with a slice figure); got {top!r}.")
    if isinstance(n_slices, bool) or not isinstance(n_slices, int) or n_slices < 1:
        raise ValidationError(f"`n_slices` must be an integer >= 1; got {n_slices!r}.")
    if not report.qa:
        raise ValidationError("`report` holds no QA rows; fuse with qa=True first.")
    written = [qa_ranking_plot(report.qa, report.output / QA_PNG,
                               title=f"QA of {len(report.qa)} fused cases ({report.method}), most suspicious first")]
    names = [Path(m).name for m in report.members]
    for row in report.qa[:top]:
        case = row.case
        labels = io.read_nifti(report.output / f"{case}.nii.gz")[0]
        entropy = _entropy(report, case)
        members = [_member_labels(m, case) for m in report.members]
        written.append(qa_slices_plot(report.output / f"qa_{case}.png", labels, entropy, members, member_names=names,
                                      n_slices=n_slices, title=f"{case}: qa_score {row.qa_score:.4g}"))
        del members, entropy, labels
    return written
