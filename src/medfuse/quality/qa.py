"""Per-case QA of a fusion: how likely is the fused segmentation wrong, from what the ensemble knows about itself.

:func:`case_qa` reads one case's fused labels and its :class:`~medfuse.fusion.UncertaintyMaps` and returns a
:class:`CaseQA`: named components (the maps averaged over the fused foreground and over its boundary band,
member-vs-fused Dice, the spread of member volumes, classes some members predict and others do not) and one
``qa_score`` built from them, higher meaning more suspicious. Ranking cases by ``qa_score`` tells a team which
fused results deserve a look before they submit (``docs/uncertainty.md`` has the definitions, the
calibration on simulated ensembles of real label maps, and the limits).

The score estimates the fused case's Dice loss, ``1 - Dice``, taking each member as a plausible truth,
plus the disagreement at the fused boundaries::

    qa_score = expected_dice_gap + 0.25 * disagreement_band

(:data:`SCORE_COEFFICIENTS`). Both terms are 0 when every member agrees with the fused labels, so
identical members (or a single member) give the minimum, 0.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.validation import as_label_map, as_spacing, describe
from ..errors import ValidationError
from ..fusion.uncertainty import UncertaintyMaps

__all__ = ["COMPONENTS", "SCORE_COEFFICIENTS", "CaseQA", "boundary_band", "case_qa"]

#: Coefficients of the components that make ``qa_score`` (fitted once on half of the simulated real-label
#: cases of ``benchmarks/calibrate_qa.py``, then fixed; see docs/uncertainty.md).
SCORE_COEFFICIENTS: Mapping[str, float] = {"expected_dice_gap": 1.0, "disagreement_band": 0.25}

#: The components of a :class:`CaseQA`, in the order tables list them.
COMPONENTS: tuple[str, ...] = (
    "expected_dice_gap",
    "member_dice_gap",
    "worst_class_gap",
    "disagreement_band",
    "mutual_information_band",
    "entropy_band",
    "disagreement_fg",
    "mutual_information_fg",
    "entropy_fg",
    "volume_cv",
    "partial_classes",
)


@dataclass(frozen=True)
class CaseQA:
    """QA of one fused case: the score, its components and the per-class volumes.

    Attributes
    ----------
    case : str
        Case identifier.
    qa_score : float
        Higher = more suspicious: ``expected_dice_gap + 0.25 * disagreement_band``, about the fused case's
        Dice loss (``1 - Dice``) as far as the ensemble can see it; 0 when every member agrees with the
        fused labels.
    components : dict of str to float
        The components named in :data:`COMPONENTS` (all finite):

        - ``expected_dice_gap``: ``1 -`` the expected case Dice of the fused labels, each member taken as
          a plausible truth: ``1 - sum_m omega[m] * mean_c Dice(member m, fused, c)`` over the foreground
          classes in member ``m`` or the fused labels;
        - ``member_dice_gap``: ``1 -`` the members' Dice against the fused labels (per class, averaged over
          members with their shares, then over the case's foreground classes);
        - ``worst_class_gap``: the same gap of the worst class;
        - ``disagreement_band`` / ``mutual_information_band`` / ``entropy_band``: mean of the map over the
          boundary band (voxels with a face neighbour of another fused label, both sides);
        - ``disagreement_fg`` / ``mutual_information_fg`` / ``entropy_fg``: mean over the fused foreground;
        - ``volume_cv``: coefficient of variation of the member volumes, averaged over classes;
        - ``partial_classes``: number of foreground classes some members predict and others do not.

        Classes of the case: foreground classes that the fused labels or some member contain. With none,
        the class components are 0; with an empty fused foreground, the ``_fg`` means are 0.
    class_volumes : dict of str to int
        Fused voxels of each foreground class (keys ``"1"``, ``"2"``, ...).
    volume_cv : dict of str to float
        Per foreground class: coefficient of variation (share-weighted std / mean) of the member volumes
        (0 where no member predicts the class).
    volumes_ml : dict of str to float
        Fused volume of each foreground class in mL, when the voxel spacing was given (else empty).
    """

    case: str
    qa_score: float
    components: dict[str, float]
    class_volumes: dict[str, int]
    volume_cv: dict[str, float]
    volumes_ml: dict[str, float] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """Flat row for ``qa.csv`` / ``qa.json``: ``case``, ``qa_score``, the components, ``volume_<c>``,
        ``volume_cv_<c>`` (and ``volume_ml_<c>`` when the spacing was known)."""
        row: dict[str, Any] = {"case": self.case, "qa_score": self.qa_score, **self.components}
        row.update({f"volume_{c}": v for c, v in self.class_volumes.items()})
        row.update({f"volume_cv_{c}": v for c, v in self.volume_cv.items()})
        row.update({f"volume_ml_{c}": v for c, v in self.volumes_ml.items()})
        return row

    def __repr__(self) -> str:
        top = sorted(((self.components[k] * w, k) for k, w in SCORE_COEFFICIENTS.items() if w), reverse=True)
        parts = ", ".join(f"{k} {self.components[k]:.3f}" for _, k in top)
        return f"CaseQA({self.case!r}, qa_score {self.qa_score:.4f}: {parts})"


def boundary_band(labels: NDArray[Any]) -> NDArray[np.bool_]:
    """Voxels with a face neighbour (6-connectivity in 3D) of another label: both sides of every boundary
    between classes, background included, about two voxels thick."""
    band = np.zeros(labels.shape, dtype=bool)
    for axis in range(labels.ndim):
        if labels.shape[axis] < 2:
            continue
        lo = tuple(slice(None, -1) if a == axis else slice(None) for a in range(labels.ndim))
        hi = tuple(slice(1, None) if a == axis else slice(None) for a in range(labels.ndim))
        diff = labels[lo] != labels[hi]
        band[lo] |= diff
        band[hi] |= diff
    return band


def _masked_mean(values: NDArray[np.float32], mask: NDArray[np.bool_], n: int) -> float:
    if n == 0:
        return 0.0
    return float(values[mask].sum(dtype=np.float64) / n)


def _region_stats(lab: NDArray[Any], maps: UncertaintyMaps, n_classes: int,
                  pad: Sequence[int] = (0,) * 6) -> tuple[NDArray[np.int64], dict[str, float]]:
    """Voxels per label (``bincount``; longer than ``n_classes`` when a label is out of range) and the mean
    of each map over the boundary band and over the foreground (``<map>_band``, ``<map>_fg``; 0 over an
    empty region), in one numba pass (:func:`medfuse._kernels.qa._qa_sums`) for maps of up to 3 axes.
    ``pad``: the faces (z lo, z hi, y lo, y hi, x lo, x hi of a 3-axis map) beyond which the image goes on
    with background and maps 0 (:func:`case_qa_in_box`); the band then includes those background voxels."""
    if any(pad) and lab.ndim != 3:
        raise ValidationError(f"`pad` needs a 3-axis label map; got {describe(lab)}.")
    if lab.ndim > 3 or lab.size == 0:
        return _region_stats_numpy(lab, maps, n_classes)
    from .._kernels.qa import _qa_sums
    from .._kernels.threads import n_threads, run_chunked

    shape3 = (1,) * (3 - lab.ndim) + lab.shape
    if lab.dtype not in (np.uint8, np.uint16):  # non-negative (checked); out-of-range labels land in the spare
        lab = np.minimum(lab, n_classes).astype(np.uint16 if n_classes < 65535 else np.uint32)
    lab3 = np.ascontiguousarray(lab).reshape(shape3)
    planes = [np.ascontiguousarray(maps.map(name), dtype=np.float32).reshape(shape3)
              for name in UncertaintyMaps.MAP_NAMES]
    threads = n_threads()
    hist = np.zeros((threads, n_classes + 1), dtype=np.int64)  # the last column: labels >= n_classes
    counts = np.zeros((threads, 3), dtype=np.int64)
    sums = np.zeros((threads, 6), dtype=np.float64)
    run_chunked(_qa_sums, shape3[0], threads, lab3, *planes, np.asarray(pad, dtype=np.uint8), hist, counts, sums)
    per_label = hist.sum(axis=0)
    n_inside, n_fg, n_beyond = (int(n) for n in counts.sum(axis=0))
    n_band = n_inside + n_beyond
    total = sums.sum(axis=0)
    means = {}
    for k, name in enumerate(UncertaintyMaps.MAP_NAMES):
        means[f"{name}_band"] = float(total[k] / n_band) if n_band else 0.0
        means[f"{name}_fg"] = float(total[3 + k] / n_fg) if n_fg else 0.0
    return (per_label if per_label[n_classes] else per_label[:n_classes]), means


def _region_stats_numpy(lab: NDArray[Any], maps: UncertaintyMaps, n_classes: int) -> tuple[NDArray[np.int64],
                                                                                           dict[str, float]]:
    """:func:`_region_stats` with numpy, for any number of axes."""
    counts = np.bincount(lab.ravel(), minlength=n_classes) if lab.size else np.zeros(n_classes, np.int64)
    fg = lab > 0
    band = boundary_band(lab)
    n_fg, n_band = int(np.count_nonzero(fg)), int(np.count_nonzero(band))
    means = {}
    for name in UncertaintyMaps.MAP_NAMES:
        means[f"{name}_band"] = _masked_mean(maps.map(name), band, n_band)
        means[f"{name}_fg"] = _masked_mean(maps.map(name), fg, n_fg)
    return counts, means


def _expected_dice_gap(maps: UncertaintyMaps) -> float:
    """``1 - sum_m omega[m] * (case Dice of the fused labels against member m)``: each member taken as a
    plausible truth, its case Dice the mean over the foreground classes in it or in the fused labels."""
    dice = maps.member_dice()[:, 1:]
    valid = ~np.isnan(dice)
    n = valid.sum(axis=1)
    per_member = np.where(n > 0, np.where(valid, dice, 0.0).sum(axis=1) / np.maximum(n, 1), 1.0)
    return float(np.clip(1.0 - np.asarray(maps.member_shares, dtype=np.float64) @ per_member, 0.0, 1.0))


def _class_terms(maps: UncertaintyMaps) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_],
                                                  int]:
    """Per foreground class: share-weighted member Dice gap, volume CV, which classes count, partial count."""
    omega = np.asarray(maps.member_shares, dtype=np.float64)
    vols = np.asarray(maps.member_volumes, dtype=np.float64)[:, 1:]
    fused = np.asarray(maps.fused_volumes, dtype=np.float64)[1:]
    dice = maps.member_dice()[:, 1:]
    dice = np.where(np.isnan(dice), 1.0, dice)  # member and fused both without the class: they agree
    gap = np.clip(1.0 - omega @ dice, 0.0, 1.0)
    mean = omega @ vols
    sd = np.sqrt(np.maximum(omega @ (vols - mean) ** 2, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        cv = np.where(mean > 0, sd / np.where(mean > 0, mean, 1.0), 0.0)
    present = (fused > 0) | (vols > 0).any(axis=0)
    partial = int(((vols > 0).any(axis=0) & (vols == 0).any(axis=0)).sum())
    return gap, cv, present, partial


def case_qa(labels: ArrayLike, maps: UncertaintyMaps, *, case: str = "",
            spacing_mm: float | Sequence[float] | None = None) -> CaseQA:
    """QA components and score of one fused case.

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X) (or any shape), integer
        The fused label map the maps were computed with.
    maps : UncertaintyMaps
        Its uncertainty maps and per-member counts (from ``fusion_uncertainty`` or a fusion with
        uncertainty), of the same spatial shape.
    case : str
        Case identifier, carried into the result.
    spacing_mm : float or sequence of float, optional
        Voxel size in mm (array order); when given, the result also holds each class's volume in mL.

    Returns
    -------
    CaseQA
        Score, components (all finite), fused class volumes and member volume spreads.

    Raises
    ------
    ValidationError
        ``maps`` is not an :class:`UncertaintyMaps`, or ``labels`` does not match it (shape, classes, or
        voxel counts other than the maps' fused volumes).
    """
    if not isinstance(maps, UncertaintyMaps):
        raise ValidationError(f"`maps` must be an UncertaintyMaps (from fusion_uncertainty); got {describe(maps)}.")
    lab = as_label_map(labels, name="labels")
    if lab.shape != maps.entropy.shape:
        raise ValidationError(
            f"`labels` must have the spatial shape of `maps` {maps.entropy.shape}; got {describe(lab)}. "
            "Pass the fused labels the maps were computed with."
        )
    _check_non_negative(lab)
    return _case_qa(lab, maps, case, spacing_mm)


def _check_non_negative(lab: NDArray[Any]) -> None:
    if lab.size and lab.dtype.kind == "i" and int(lab.min()) < 0:
        raise ValidationError(f"`labels` must be non-negative class indices; got a minimum of {int(lab.min())}.")


def case_qa_in_box(labels: NDArray[Any], maps: UncertaintyMaps, box: Sequence[Sequence[int]], shape: Sequence[int],
                   *, case: str = "", spacing_mm: float | Sequence[float] | None = None) -> CaseQA:
    """:func:`case_qa` of an image of ``shape`` whose fused labels and maps are 0 outside ``box``, from the
    labels and maps of the box only (folder fusion's domain): the same result as on the whole image, without
    pasting the box into it. ``maps`` counts the voxels of the box only; the voxels beyond count for class 0
    for the members and the fused labels."""
    if not isinstance(maps, UncertaintyMaps):
        raise ValidationError(f"`maps` must be an UncertaintyMaps (from fusion_uncertainty); got {describe(maps)}.")
    lab = as_label_map(labels, name="labels")
    bounds = [(int(lo), int(hi)) for lo, hi in box]
    sizes = [int(n) for n in shape]
    inside = len(bounds) == len(sizes) == 3 and all(0 <= b[0] <= b[1] <= n for b, n in zip(bounds, sizes, strict=True))
    if not inside or lab.shape != tuple(hi - lo for lo, hi in bounds) or lab.shape != maps.entropy.shape:
        raise ValidationError(f"`labels` {describe(lab)} and `maps` {maps.entropy.shape} must be box {bounds} "
                              f"of an image of shape {tuple(sizes)}.")
    _check_non_negative(lab)
    beyond = int(np.prod(sizes)) - lab.size
    pad = [flag for (lo, hi), n in zip(bounds, sizes, strict=True) for flag in (int(lo > 0), int(hi < n))]
    volumes, overlap, fused = (a.copy() for a in (maps.member_volumes, maps.member_overlap, maps.fused_volumes))
    if fused.size:
        volumes[:, 0] += beyond
        overlap[:, 0] += beyond
        fused[0] += beyond
    whole = UncertaintyMaps(entropy=maps.entropy, mutual_information=maps.mutual_information,
                            disagreement=maps.disagreement, member_volumes=volumes, member_overlap=overlap,
                            fused_volumes=fused, member_shares=maps.member_shares)
    return _case_qa(lab, whole, case, spacing_mm, pad=pad, beyond=beyond)


def _case_qa(lab: NDArray[Any], maps: UncertaintyMaps, case: str, spacing_mm: float | Sequence[float] | None,
             *, pad: Sequence[int] = (0,) * 6, beyond: int = 0) -> CaseQA:
    """:func:`case_qa` after its argument checks; ``beyond`` background voxels outside the labels' box."""
    n_classes = maps.num_classes
    counts, means = _region_stats(lab, maps, n_classes, pad)
    if beyond and counts.size:
        counts[0] += beyond
    if counts.size > n_classes or not np.array_equal(counts, maps.fused_volumes):
        raise ValidationError(
            f"`labels` are not the fused labels of `maps`: their voxels per class {counts.tolist()} differ from "
            f"maps.fused_volumes {np.asarray(maps.fused_volumes).tolist()}. Pass the labels returned together "
            "with the maps."
        )
    spacing = as_spacing(spacing_mm, ndim=max(lab.ndim, 1)) if spacing_mm is not None else None
    comp: dict[str, float] = dict(means)
    gap, cv, present, partial = _class_terms(maps)
    comp["expected_dice_gap"] = _expected_dice_gap(maps)
    comp["member_dice_gap"] = float(gap[present].mean()) if present.any() else 0.0
    comp["worst_class_gap"] = float(gap[present].max()) if present.any() else 0.0
    comp["volume_cv"] = float(cv[present].mean()) if present.any() else 0.0
    comp["partial_classes"] = float(partial)
    components = {k: (v if math.isfinite(v) else 0.0) for k, v in ((k, comp[k]) for k in COMPONENTS)}
    score = float(sum(w * components[k] for k, w in SCORE_COEFFICIENTS.items()))
    keys = [str(c) for c in range(1, n_classes)]
    volumes_ml: dict[str, float] = {}
    if spacing is not None:
        voxel_ml = float(np.prod(spacing)) / 1000.0
        volumes_ml = {k: float(counts[c]) * voxel_ml for c, k in enumerate(keys, start=1)}
    return CaseQA(
        case=str(case), qa_score=score, components=components,
        class_volumes={k: int(counts[c]) for c, k in enumerate(keys, start=1)},
        volume_cv={k: float(cv[c - 1]) for c, k in enumerate(keys, start=1)},
        volumes_ml=volumes_ml,
    )
