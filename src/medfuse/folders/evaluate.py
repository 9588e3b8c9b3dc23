"""Evaluate predictions against references (reference first): one confusion pass per case (and, with
``surface=True``, boundary metrics), nnU-Net's summary.json."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.atomic import atomic_write
from .._core.jobs import run_jobs
from .._core.progress import progress_bar
from ..errors import CaseMismatchError, GeometryMismatchError, ValidationError
from ..io.jsonfile import write_json
from ..metrics.results import Key, key_to_str
from ..metrics.surface_results import LabelSurface
from ..metrics.surface_summary import SurfaceSummary

__all__ = ["Evaluation", "evaluate_folder"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Evaluation:
    """Scores of a prediction folder against references.

    Attributes
    ----------
    summary : medfuse.metrics.CaseSummary
        Per-case overlap results, per-label means and the foreground mean.
    files : dict of str to (str, str)
        Reference and prediction file of each case (reference first).
    labels : tuple of int or tuple of int
        The labels and regions scored.
    surface : medfuse.metrics.surface_summary.SurfaceSummary or None
        Boundary metrics (HD, HD95, ASSD, MASD, NSD) when ``surface=True``.
    """

    summary: Any
    files: dict[str, tuple[str, str]]
    labels: tuple[Key, ...]
    surface: SurfaceSummary | None = None

    @property
    def foreground_mean_dice(self) -> float:
        return float(self.summary.foreground_mean["dice"])

    def to_dict(self) -> dict[str, Any]:
        """nnU-Net's ``summary.json`` structure (``metric_per_case``, ``mean``, ``foreground_mean``).

        With boundary metrics every label entry also holds ``HD``, ``HD95``, ``ASSD``, ``MASD``, ``NSD``
        (``NSD@<tol>`` for further tolerances), and a top-level ``surface`` entry says what they mean.
        """
        d: dict[str, Any] = self.summary.to_nnunet_dict(files=self.files)
        s = self.surface
        if s is not None:
            for case, entry in zip(self.summary.per_case, d["metric_per_case"], strict=True):
                for k in s.keys:
                    entry["metrics"][key_to_str(k)].update(s.per_case[case][k])
            for k in s.keys:
                d["mean"][key_to_str(k)].update(s.mean[k])
            d["foreground_mean"].update(s.foreground_mean)
            d["surface"] = s.settings()
        return d

    def to_rows(self) -> list[dict[str, Any]]:
        """The CSV rows: :meth:`CaseSummary.to_rows` with the boundary metrics' columns when present."""
        rows: list[dict[str, Any]] = self.summary.to_rows()
        s = self.surface
        if s is None:
            return rows
        by_key = {key_to_str(k): k for k in s.keys}
        for row in rows:
            if row["case"] == "foreground_mean":
                values = s.foreground_mean
            elif row["case"] == "mean":
                values = s.mean[by_key[row["label"]]]
            else:
                values = s.per_case[row["case"]][by_key[row["label"]]]
            row.update({n.lower(): values[n] for n in s.names})
        return rows

    def to_csv(self, path: PathLike) -> Path:
        """Write :meth:`to_rows` as CSV (atomically, verified). Returns the path."""
        rows = self.to_rows()
        out = Path(path)
        with atomic_write(out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        return out

    def __repr__(self) -> str:
        from .._core.display import short_list

        return (f"Evaluation({len(self.files)} cases, labels {short_list(self.labels)}, "
                f"foreground mean dice {self.foreground_mean_dice:.4f})")

    def _repr_html_(self) -> str:
        html: str = self.summary._repr_html_()
        return html


#: What a prediction folder holds and a reference folder never does (the guard against swapped arguments).
_PREDICTION_MARKERS = ("fusion.json", ".medfuse", "postprocessing.json")


def _case_files(folder: Path, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise ValidationError(f"`{what}` must be a folder of '<case>.nii.gz' files; got {str(folder)!r}.")
    from ..io import label_map_files

    files = label_map_files(folder)
    if not files:
        raise ValidationError(f"`{what}` folder {str(folder)!r} holds no '<case>.nii.gz' file.")
    return files


def check_reference_folder(folder: Path) -> None:
    """Refuse a ``references`` folder that looks like a prediction folder (the arguments were swapped).

    A folder of reference label maps never holds probabilities (``.npz``), properties or plans
    (``.pkl``), nor what medfuse and nnU-Net write beside predictions (``fusion.json``, the journal
    ``.medfuse/``, ``postprocessing.json``).
    """
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    found = sorted(names & set(_PREDICTION_MARKERS))
    found += sorted({f"*{suffix}" for n in names for suffix in (".npz", ".pkl") if n.endswith(suffix)})
    if found:
        raise ValidationError(
            f"`references` folder {str(folder)!r} holds {', '.join(found)}: it looks like a prediction folder. "
            "The order is reference first, prediction second: evaluate_folder(references, predictions) "
            "(CLI: medfuse evaluate REF PRED)."
        )


def _surface_of(ref: NDArray[Any], pred: NDArray[Any], spacing: tuple[float, ...],
                opts: tuple[tuple[int, ...] | None, tuple[tuple[int, ...], ...], tuple[float, ...], float]
                ) -> dict[Key, LabelSurface]:
    """Boundary metrics of the labels (every label present when None) and regions of one case."""
    from ..metrics import surface_metrics

    labels, regions, tolerances, percentile = opts
    out: dict[Key, LabelSurface] = {}
    if labels is None or labels:
        result = surface_metrics(ref, pred, spacing_mm=spacing, tolerance_mm=tolerances, percentile=percentile,
                                 labels=labels)
        out.update(dict(result.entries.items()))
    for region in regions:
        r = surface_metrics(np.isin(ref, region), np.isin(pred, region), spacing_mm=spacing,
                            tolerance_mm=tolerances, percentile=percentile, labels=[1])
        out[region] = r[1]
    return out


CaseItem = tuple[str, str, str, Any]
CaseOutput = tuple[str, NDArray[np.int64], tuple[float, ...], dict[Key, LabelSurface] | None]


def _evaluate_case(item: CaseItem) -> CaseOutput:
    """Read one pair, check its geometry, return (case, confusion matrix, spacing_mm, boundary metrics or
    None). Runs in a worker.

    Both maps go through :func:`medfuse.io.labelmaps.label_map_from_file`, the rule every reader applies
    (a float map of whole numbers is cast; any other float map is a FormatError naming the file and case).
    """
    from ..io import read_nifti
    from ..io.labelmaps import label_map_from_file
    from ..metrics import confusion_matrix

    case, ref_path, pred_path, surface_opts = item
    ref_array, ref_geometry = read_nifti(ref_path)
    pred_array, pred_geometry = read_nifti(pred_path)
    reference = label_map_from_file(ref_array, source=ref_path, case=case)
    prediction = label_map_from_file(pred_array, source=pred_path, case=case)
    diff = ref_geometry.differences(pred_geometry)
    if diff:
        raise GeometryMismatchError(f"case {case!r}: reference {ref_path!r} and prediction {pred_path!r} differ: "
                                    + "; ".join(diff) + ".")
    spacing = ref_geometry.spacing
    surf = None if surface_opts is None else _surface_of(reference, prediction, spacing, surface_opts)
    return case, confusion_matrix(reference, prediction), spacing, surf


def _pad(cm: NDArray[np.int64], k: int) -> NDArray[np.int64]:
    out = np.zeros((k, k), dtype=np.int64)
    out[: cm.shape[0], : cm.shape[1]] = cm
    return out


def _surface_options(surface: bool, tolerance_mm: float | Sequence[float] | None, percentile: float | None,
                     ignore_label: int | None) -> tuple[tuple[float, ...], float] | None:
    if not isinstance(surface, bool):
        raise ValidationError(f"`surface` must be True or False; got {surface!r}.")
    if not surface:
        for value, name in ((tolerance_mm, "tolerance_mm"), (percentile, "percentile")):
            if value is not None:
                raise ValidationError(f"`{name}` only applies to boundary metrics; pass `surface=True` too "
                                      "(or leave it out).")
        return None
    if ignore_label is not None:
        raise ValidationError(
            f"`surface=True` cannot honour `ignore_label` ({ignore_label}): a surface through ignored voxels has "
            "no agreed definition. Score boundaries without `ignore_label`, or leave `surface` off."
        )
    from ..metrics.surface import _percentile, _tolerances

    return _tolerances(1.0 if tolerance_mm is None else tolerance_mm), _percentile(95.0 if percentile is None
                                                                                 else percentile)


def _regions(regions: Iterable[Iterable[int]] | None) -> tuple[tuple[int, ...], ...]:
    if regions is None:
        return ()
    from ..metrics.measures import _as_regions

    out = tuple(_as_regions(regions))
    if not out:
        raise ValidationError("`regions` must name at least one region; got an empty sequence. Omit it to score "
                              "labels.")
    return out


def evaluate_folder(
    references: PathLike,
    predictions: PathLike,
    *,
    labels: Sequence[int] | None = None,
    regions: Iterable[Iterable[int]] | None = None,
    ignore_label: int | None = None,
    surface: bool = False,
    tolerance_mm: float | Sequence[float] | None = None,
    percentile: float | None = None,
    json_path: PathLike | None = None,
    csv_path: PathLike | None = None,
    plot_path: PathLike | None = None,
    executor: Executor | None = None,
    progress: bool = True,
) -> Evaluation:
    """Score every ``<case>.nii.gz`` of a prediction folder against the reference of the same name.

    Reference first, prediction second (as nnU-Net's ``nnUNetv2_evaluate_folder`` and :func:`medfuse.dice`).

    Parameters
    ----------
    references, predictions : path
        Folders of label maps, matched by case name: the references (ground truth) FIRST, then the
        predictions. Every case must be in both; the error lists the missing and extra ones. Each pair
        must share its geometry. A ``references`` folder that holds ``.npz``/``.pkl`` files,
        ``fusion.json``, a ``.medfuse/`` journal or ``postprocessing.json`` is refused:
        it is a prediction folder, and the arguments were swapped.
    labels : sequence of int, optional
        Foreground labels to score. By default every label present in any reference (none when
        ``regions`` is given); a prediction that holds a label outside that set is an error (pass
        ``labels=`` to score it anyway).
    regions : sequence of sequence of int, optional
        Regions to score, each a tuple of labels merged into one foreground (nnU-Net's region-based
        evaluation, e.g. BraTS's ``[(1, 2, 3), (2, 3), (3,)]``); keyed ``"(1, 2, 3)"`` in the outputs.
    ignore_label : int, optional
        Reference voxels with this label are left out of the overlap (nnU-Net v2 semantics); not with
        ``surface=True``.
    surface : bool, default False
        Also compute boundary metrics (:func:`medfuse.surface_metrics`: HD, HD95, ASSD, MASD, NSD) per case
        and label, with each reference file's spacing. Means over cases leave NaN (label absent from both
        maps) out, but a case where the label is absent from exactly one map is ``inf`` and makes the
        label's mean distance ``inf`` (see ``docs/metrics.md``).
    tolerance_mm : float or sequence of float, optional
        NSD tolerance(s) in mm (default 1.0): the first is reported as ``NSD``, further ones as
        ``NSD@<tol>``. Only with ``surface=True`` (refused otherwise, rather than silently unused).
    percentile : float, optional
        Percentile of ``HD95`` (default 95); only with ``surface=True``.
    json_path, csv_path, plot_path : path, optional
        Write nnU-Net's ``summary.json`` structure, a per-case CSV, a per-class Dice box plot (PNG; with
        ``surface=True`` also one box plot per boundary metric beside it, ``<stem>_hd95.png`` ...).
    executor : concurrent.futures.Executor, optional
        Runs cases in parallel.
    progress : bool
        Show a progress bar.

    Returns
    -------
    Evaluation
    """
    from ..metrics import aggregate_cases, overlap_from_confusion
    from ..metrics.surface_summary import summarize_surface

    ref_dir, pred_dir = Path(references), Path(predictions)
    refs, preds = _case_files(ref_dir, "references"), _case_files(pred_dir, "predictions")
    check_reference_folder(ref_dir)
    missing, extra = sorted(set(refs) - set(preds)), sorted(set(preds) - set(refs))
    if missing or extra:
        raise CaseMismatchError(
            f"references {str(ref_dir)!r} and predictions {str(pred_dir)!r} do not hold the same cases: "
            f"{len(missing)} without prediction {missing[:10]}, {len(extra)} without reference {extra[:10]}."
        )
    if ignore_label is not None and labels is not None and ignore_label in labels:
        raise ValidationError(f"`ignore_label` {ignore_label} must not be one of `labels` {list(labels)}.")
    region_list = _regions(regions)
    surf = _surface_options(surface, tolerance_mm, percentile, ignore_label)
    given = None if labels is None else tuple(sorted(int(v) for v in labels))
    if given is not None and any(v <= 0 for v in given):
        raise ValidationError(f"`labels` must be foreground labels (>= 1); got {list(given)}.")
    surface_labels = given if given is not None or not region_list else ()
    opts = None if surf is None else (surface_labels, region_list, *surf)
    cases = sorted(refs)
    items: list[CaseItem] = [(c, str(refs[c]), str(preds[c]), opts) for c in cases]
    matrices: dict[str, NDArray[np.int64]] = {}
    spacings: dict[str, tuple[float, ...]] = {}
    surfaces: dict[str, dict[Key, LabelSurface]] = {}
    for case, cm, spacing, s in progress_bar(run_jobs(_evaluate_case, items, executor), enabled=progress,
                                             total=len(items), desc="evaluate"):
        matrices[case], spacings[case] = cm, spacing
        if s is not None:
            surfaces[case] = s
    chosen, matrices = _choose_labels(matrices, given, ignore_label, bool(region_list), cases)
    results = {c: overlap_from_confusion(matrices[c], labels=chosen if chosen or not region_list else None,
                                         regions=region_list or None, ignore_label=ignore_label,
                                         spacing_mm=spacings[c]) for c in cases}
    summary = aggregate_cases(dict(sorted(results.items())))
    files = {c: (str(refs[c]), str(preds[c])) for c in cases}
    keys: tuple[Key, ...] = (*chosen, *region_list)
    surface_summary = None if surf is None else summarize_surface(surfaces, keys, tolerance_mm=surf[0],
                                                                  percentile=surf[1])
    evaluation = Evaluation(summary=summary, files=files, labels=keys, surface=surface_summary)
    _write_outputs(evaluation, json_path, csv_path, plot_path)
    return evaluation


def _choose_labels(matrices: dict[str, NDArray[np.int64]], given: tuple[int, ...] | None, ignore_label: int | None,
                   has_regions: bool, cases: list[str]) -> tuple[tuple[int, ...], dict[str, NDArray[np.int64]]]:
    """The labels scored (given, or every label of the references) and the matrices padded to one size."""
    k = max(cm.shape[0] for cm in matrices.values())
    if ignore_label is not None:
        k = max(k, ignore_label + 1)
    matrices = {c: _pad(cm, k) for c, cm in matrices.items()}
    if given is not None:
        k_needed = max(given, default=0) + 1
        if k_needed > k:
            matrices = {c: _pad(cm, k_needed) for c, cm in matrices.items()}
        return given, matrices
    total = np.sum(list(matrices.values()), axis=0)
    if ignore_label is not None:
        total[ignore_label, :] = 0  # reference voxels with the ignore label do not count at all
    skip = {0} | ({ignore_label} if ignore_label is not None else set())
    in_reference = {int(v) for v in np.flatnonzero(total.sum(axis=1))} - skip
    in_prediction = {int(v) for v in np.flatnonzero(total.sum(axis=0))} - skip
    pred_only = sorted(in_prediction - in_reference)
    if pred_only and not has_regions:
        offenders = [c for c in cases if matrices[c][:, pred_only].sum() > 0]
        raise ValidationError(
            f"predictions hold labels {pred_only} that no reference holds (cases {offenders[:10]}); "
            "pass `labels=` to score them as false positives, or fix the label mapping."
        )
    return (() if has_regions else tuple(sorted(in_reference))), matrices


def _write_outputs(evaluation: Evaluation, json_path: PathLike | None, csv_path: PathLike | None,
                   plot_path: PathLike | None) -> None:
    if json_path is not None:
        write_json(Path(json_path), evaluation.to_dict())
    if csv_path is not None:
        evaluation.to_csv(Path(csv_path))
    if plot_path is not None:
        from ..plots import dice_boxplot

        path = Path(plot_path)
        dice_boxplot({"predictions": evaluation.summary}, path)
        s = evaluation.surface
        if s is not None:
            for name in s.names:
                values = {k: [s.per_case[c][k][name] for c in s.per_case] for k in s.keys}
                dice_boxplot({"predictions": values}, path.with_name(f"{path.stem}_{name.lower()}{path.suffix}"),
                             metric=name)
