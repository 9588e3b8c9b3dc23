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
    n_classes = maps.num_classes
    if lab.size and lab.dtype.kind == "i" and int(lab.min()) < 0:
        raise ValidationError(f"`labels` must be non-negative class indices; got a minimum of {int(lab.min())}.")
    counts = np.bincount(lab.ravel(), minlength=n_classes) if lab.size else np.zeros(n_classes, np.int64)
    if counts.size > n_classes or not np.array_equal(counts, maps.fused_volumes):
        raise ValidationError(
            f"`labels` are not the fused labels of `maps`: their voxels per class {counts.tolist()} differ from "
            f"maps.fused_volumes {np.asarray(maps.fused_volumes).tolist()}. Pass the labels returned together "
            "with the maps."
        )
    spacing = as_spacing(spacing_mm, ndim=max(lab.ndim, 1)) if spacing_mm is not None else None
    fg = lab > 0
    n_fg = int(counts[1:].sum())
    band = boundary_band(lab)
    n_band = int(np.count_nonzero(band))
    comp: dict[str, float] = {}
    gap, cv, present, partial = _class_terms(maps)
    comp["expected_dice_gap"] = _expected_dice_gap(maps)
    comp["member_dice_gap"] = float(gap[present].mean()) if present.any() else 0.0
    comp["worst_class_gap"] = float(gap[present].max()) if present.any() else 0.0
    for name in UncertaintyMaps.MAP_NAMES:
        comp[f"{name}_band"] = _masked_mean(maps.map(name), band, n_band)
    for name in UncertaintyMaps.MAP_NAMES:
        comp[f"{name}_fg"] = _masked_mean(maps.map(name), fg, n_fg)
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
