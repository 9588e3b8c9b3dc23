"""Evaluate a folder of predictions against references: one confusion pass per case, nnU-Net's summary.json."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.jobs import run_jobs
from .._core.progress import progress_bar
from ..errors import CaseMismatchError, GeometryMismatchError, ValidationError
from ..io.jsonfile import write_json

__all__ = ["Evaluation", "evaluate_folder"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Evaluation:
    """Scores of a prediction folder against references.

    Attributes
    ----------
    summary : medfuse.metrics.CaseSummary
        Per-case results, per-label means and the foreground mean.
    files : dict of str to (str, str)
        Reference and prediction file of each case.
    labels : tuple of int
        The labels scored.
    """

    summary: Any
    files: dict[str, tuple[str, str]]
    labels: tuple[int, ...]

    @property
    def foreground_mean_dice(self) -> float:
        return float(self.summary.foreground_mean["dice"])

    def to_dict(self) -> dict[str, Any]:
        """nnU-Net's ``summary.json`` structure (``metric_per_case``, ``mean``, ``foreground_mean``)."""
        d: dict[str, Any] = self.summary.to_nnunet_dict(files=self.files)
        return d

    def __repr__(self) -> str:
        from .._core.display import short_list

        return (f"Evaluation({len(self.files)} cases, labels {short_list(self.labels)}, "
                f"foreground mean dice {self.foreground_mean_dice:.4f})")

    def _repr_html_(self) -> str:
        html: str = self.summary._repr_html_()
        return html


def _case_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValidationError(f"`{what}` must be a folder of '<case>.nii.gz' files; got {str(folder)!r}.")
    from ..io import label_map_files

    files = label_map_files(folder)
    if not files:
        raise ValidationError(f"`{what}` folder {str(folder)!r} holds no '<case>.nii.gz' file.")
    return files


def _evaluate_case(item: tuple[str, str, str]) -> tuple[str, NDArray[np.int64], tuple[float, ...]]:
    """Read one pair, check its geometry, return (case, confusion matrix, spacing_mm). Runs in a worker.

    Both maps go through :func:`medfuse.io.labelmaps.label_map_from_file`, the rule every reader applies
    (a float map of whole numbers is cast; any other float map is a FormatError naming the file and case).
    """
    from ..io import read_nifti
    from ..io.labelmaps import label_map_from_file
    from ..metrics import confusion_matrix

    case, ref_path, pred_path = item
    ref_array, ref_geometry = read_nifti(ref_path)
    pred_array, pred_geometry = read_nifti(pred_path)
    reference = label_map_from_file(ref_array, source=ref_path, case=case)
    prediction = label_map_from_file(pred_array, source=pred_path, case=case)
    diff = ref_geometry.differences(pred_geometry)
    if diff:
        raise GeometryMismatchError(f"case {case!r}: prediction {pred_path!r} and reference {ref_path!r} differ: "
                                    + "; ".join(diff) + ".")
    return case, confusion_matrix(reference, prediction), ref_geometry.spacing


def _pad(cm: NDArray[np.int64], k: int) -> NDArray[np.int64]:
    out = np.zeros((k, k), dtype=np.int64)
    out[: cm.shape[0], : cm.shape[1]] = cm
    return out


def evaluate_folder(
    predictions: PathLike,
    references: PathLike,
    *,
    labels: Sequence[int] | None = None,
    ignore_label: int | None = None,
    json_path: PathLike | None = None,
    csv_path: PathLike | None = None,
    plot_path: PathLike | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> Evaluation:
    """Score every ``<case>.nii.gz`` of a prediction folder against the reference of the same name.

    Parameters
    ----------
    predictions, references : path
        Folders of label maps, matched by case name. Every case must be in both; the error lists
        the missing and extra ones. Each pair must share its geometry.
    labels : sequence of int, optional
        Foreground labels to score. By default every label present in any reference; a prediction that
        holds a label outside that set is an error (pass ``labels=`` to score it anyway).
    ignore_label : int, optional
        Reference voxels with this label are left out (nnU-Net v2 semantics).
    json_path, csv_path, plot_path : path, optional
        Write nnU-Net's ``summary.json`` structure, a per-case CSV, a per-class Dice box plot (PNG).
    executor : concurrent.futures.Executor, optional
        Runs cases in parallel.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Evaluation
    """
    from ..metrics import aggregate_cases, overlap_from_confusion

    pred_dir, ref_dir = Path(predictions), Path(references)
    preds, refs = _case_files(pred_dir, "predictions"), _case_files(ref_dir, "references")
    missing, extra = sorted(set(refs) - set(preds)), sorted(set(preds) - set(refs))
    if missing or extra:
        raise CaseMismatchError(
            f"predictions {str(pred_dir)!r} and references {str(ref_dir)!r} do not hold the same cases: "
            f"{len(missing)} without prediction {missing[:10]}, {len(extra)} without reference {extra[:10]}."
        )
    if ignore_label is not None and labels is not None and ignore_label in labels:
        raise ValidationError(f"`ignore_label` {ignore_label} must not be one of `labels` {list(labels)}.")
    cases = sorted(refs)
    items = [(c, str(refs[c]), str(preds[c])) for c in cases]
    matrices: dict[str, NDArray[np.int64]] = {}
    spacings: dict[str, tuple[float, ...]] = {}
    for case, cm, spacing in progress_bar(run_jobs(_evaluate_case, items, executor), enabled=progress,
                                          total=len(items), desc="evaluate"):
        matrices[case], spacings[case] = cm, spacing
    k = max(cm.shape[0] for cm in matrices.values())
    if ignore_label is not None:
        k = max(k, ignore_label + 1)
    matrices = {c: _pad(cm, k) for c, cm in matrices.items()}
    total = np.sum(list(matrices.values()), axis=0)
    if ignore_label is not None:
        total[ignore_label, :] = 0  # reference voxels with the ignore label do not count at all
    in_reference = {int(v) for v in np.flatnonzero(total.sum(axis=1))} - {0}
    in_prediction = {int(v) for v in np.flatnonzero(total.sum(axis=0))} - {0}
    if labels is None:
        chosen = tuple(sorted(in_reference - ({ignore_label} if ignore_label is not None else set())))
        pred_only = sorted(in_prediction - set(chosen) - ({ignore_label} if ignore_label is not None else set()))
        if pred_only:
            offenders = [c for c in cases if matrices[c][:, pred_only].sum() > 0]
            raise ValidationError(
                f"predictions hold labels {pred_only} that no reference holds (cases {offenders[:10]}); "
                "pass `labels=` to score them as false positives, or fix the label mapping."
            )
    else:
        chosen = tuple(sorted(int(v) for v in labels))
        if any(v <= 0 for v in chosen):
            raise ValidationError(f"`labels` must be foreground labels (>= 1); got {list(chosen)}.")
        k_needed = max(chosen, default=0) + 1
        if k_needed > k:
            matrices = {c: _pad(cm, k_needed) for c, cm in matrices.items()}
    results = {c: overlap_from_confusion(matrices[c], labels=chosen, ignore_label=ignore_label,
                                         spacing_mm=spacings[c]) for c in cases}
    summary = aggregate_cases(dict(sorted(results.items())))
    files = {c: (str(refs[c]), str(preds[c])) for c in cases}
    evaluation = Evaluation(summary=summary, files=files, labels=chosen)
    if json_path is not None:
        write_json(Path(json_path), evaluation.to_dict())
    if csv_path is not None:
        summary.to_csv(Path(csv_path))
    if plot_path is not None:
        from ..plots import dice_boxplot

        dice_boxplot({"predictions": summary}, Path(plot_path))
    return evaluation
