"""STAPLE label fusion through SimpleITK (optional dependency, extra ``nifti``).

STAPLE (Warfield et al., 2004) estimates each rater's performance (a confusion matrix per rater for the
multi-label version, sensitivity/specificity for the binary one) and the most probable true label by
expectation-maximisation; raters that disagree with the consensus count less. medfuse hands the arrays
to SimpleITK's ``MultiLabelSTAPLEImageFilter`` / ``STAPLEImageFilter`` and takes care of dtypes, label
ranges and undecided voxels.

It is much slower than averaging or voting (SimpleITK took 41 s for 5 x 128 x 256 x 256 on the 2-core dev
machine): use it on label maps when no probabilities are available.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.optional import import_optional
from .._core.typing import LabelMembers
from .._core.validation import as_int, describe
from ..errors import ValidationError

__all__ = ["staple", "staple_binary"]

#: Largest class count: SimpleITK's filter is used with uint16 labels (plus one undecided value).
_MAX_CLASSES = 65535


def _sitk() -> Any:
    return import_optional("SimpleITK", purpose="STAPLE")


def _as_maps(label_maps: LabelMembers | Sequence[ArrayLike], *, name: str) -> list[NDArray[Any]]:
    """Validate M same-shape 2-D/3-D integer or bool maps (a sequence, or an (M, ...) array)."""
    if isinstance(label_maps, np.ndarray):
        if label_maps.ndim not in (3, 4):
            raise ValidationError(
                f"`{name}` as one array must have shape (M, Y, X) or (M, Z, Y, X); got {describe(label_maps)}."
            )
        maps = list(label_maps)
    elif isinstance(label_maps, (str, bytes)) or not isinstance(label_maps, Sequence):
        raise ValidationError(f"`{name}` must be a sequence of label maps or an (M, Z, Y, X) array; "
                              f"got {describe(label_maps)}.")
    else:
        maps = [np.asarray(m) for m in label_maps]
    if not maps:
        raise ValidationError(f"`{name}` must hold at least one label map; got none.")
    shape = maps[0].shape
    for i, m in enumerate(maps):
        if m.dtype.kind not in "biu":
            raise ValidationError(f"`{name}[{i}]` must be an integer or boolean label map; got {describe(m)}.")
        if m.ndim not in (2, 3):
            raise ValidationError(f"`{name}[{i}]` must be a 2-D or 3-D map (SimpleITK's STAPLE); got {describe(m)}.")
        if m.shape != shape:
            raise ValidationError(
                f"every map of `{name}` must have the shape of the first {shape}; `{name}[{i}]` has {m.shape}."
            )
    return maps


def staple(
    label_maps: LabelMembers | Sequence[ArrayLike],
    *,
    num_classes: int | None = None,
    undecided_label: int | None = None,
    max_iterations: int | None = None,
    termination_threshold: float = 1e-5,
    prior_probabilities: ArrayLike | None = None,
) -> NDArray[np.unsignedinteger[Any]]:
    """Multi-label STAPLE consensus of several label maps (SimpleITK ``MultiLabelSTAPLEImageFilter``).

    Parameters
    ----------
    label_maps : sequence of ndarray of shape (Z, Y, X) or (Y, X), or ndarray of shape (M, Z, Y, X)
        The raters' label maps (integer or bool, same shape).
    num_classes : int, optional
        ``K``; labels must lie in ``[0, K)``. By default the largest label + 1.
    undecided_label : int, optional
        Label written where STAPLE cannot decide (two labels with exactly the same posterior). By default
        those voxels get the majority vote of the raters instead (ties to the lowest label).
    max_iterations : int, optional
        Cap on EM iterations; by default SimpleITK iterates until convergence.
    termination_threshold : float, default 1e-5
        EM stops when no rater's confusion matrix changes by more than this.
    prior_probabilities : array_like of shape (K,), optional
        Prior probability of each label; by default SimpleITK estimates them from the label frequencies.

    Returns
    -------
    ndarray of shape (Z, Y, X), uint8 (uint16 when a label or ``undecided_label`` exceeds 255)
        The consensus labels.

    Raises
    ------
    MissingDependencyError
        SimpleITK is not installed (``pip install 'medfuse[nifti]'``).
    ValidationError
        Maps of different shapes or dtypes that are not integer, labels outside ``[0, K)``, bad options.
    """
    sitk = _sitk()
    maps = _as_maps(label_maps, name="label_maps")
    high = 0
    for i, m in enumerate(maps):
        if m.size == 0:
            continue
        low = int(m.min())
        if low < 0:
            raise ValidationError(f"`label_maps[{i}]` holds the negative label {low}; labels must be >= 0.")
        high = max(high, int(m.max()))
    if num_classes is None:
        k = high + 1
    else:
        k = as_int(num_classes, name="num_classes", minimum=1)
        if high >= k:
            raise ValidationError(
                f"`label_maps` hold label {high}, outside [0, {k}) for `num_classes`={k}; "
                f"pass num_classes={high + 1} or leave it unset."
            )
    if k > _MAX_CLASSES:
        raise ValidationError(f"`num_classes` must be at most {_MAX_CLASSES} for STAPLE; got {k}.")
    undecided = None if undecided_label is None else as_int(undecided_label, name="undecided_label", minimum=0)
    if undecided is not None and undecided > _MAX_CLASSES:
        raise ValidationError(f"`undecided_label` must be at most {_MAX_CLASSES}; got {undecided}.")
    if maps[0].size == 0:
        return np.zeros(maps[0].shape, dtype=np.uint8 if max(k - 1, undecided or 0) <= 255 else np.uint16)

    work_dtype = np.uint8 if k <= 255 else np.uint16  # room for the internal undecided value k
    f = sitk.MultiLabelSTAPLEImageFilter()
    f.SetLabelForUndecidedPixels(k)
    if not np.isfinite(termination_threshold) or termination_threshold <= 0:
        raise ValidationError(f"`termination_threshold` must be positive; got {termination_threshold!r}.")
    f.SetTerminationUpdateThreshold(float(termination_threshold))
    if max_iterations is not None:
        f.SetMaximumNumberOfIterations(as_int(max_iterations, name="max_iterations", minimum=1))
    if prior_probabilities is not None:
        prior = np.asarray(prior_probabilities, dtype=np.float64)
        if prior.shape != (k,) or not np.all(np.isfinite(prior)) or np.any(prior < 0) or prior.sum() <= 0:
            raise ValidationError(
                f"`prior_probabilities` must hold {k} non-negative finite values (one per label), not all 0; "
                f"got {describe(prior_probabilities)}."
            )
        f.SetPriorProbabilities((prior / prior.sum()).tolist())
    images = [sitk.GetImageFromArray(np.ascontiguousarray(m, dtype=work_dtype)) for m in maps]
    fused = sitk.GetArrayFromImage(f.Execute(images))

    out_dtype = np.uint8 if max(k - 1, undecided or 0) <= 255 else np.uint16
    out = fused.astype(out_dtype, copy=False)
    where = np.flatnonzero(fused == k)
    if where.size:
        if undecided is not None:
            out.reshape(-1)[where] = undecided
        else:
            out.reshape(-1)[where] = _majority_at(maps, where, k)
    result: NDArray[np.unsignedinteger[Any]] = out
    return result


def _majority_at(maps: list[NDArray[Any]], flat_index: NDArray[np.intp], k: int) -> NDArray[np.intp]:
    """Most frequent label of the raters at a few voxels (ties to the lowest label)."""
    votes = np.zeros((flat_index.size, k), dtype=np.int64)
    rows = np.arange(flat_index.size)
    for m in maps:
        np.add.at(votes, (rows, m.reshape(-1)[flat_index].astype(np.intp)), 1)
    winner: NDArray[np.intp] = votes.argmax(axis=1)
    return winner


def staple_binary(
    masks: LabelMembers | Sequence[ArrayLike],
    *,
    foreground_value: int = 1,
    max_iterations: int | None = None,
    confidence_weight: float = 1.0,
) -> NDArray[np.float32]:
    """Binary STAPLE (SimpleITK ``STAPLEImageFilter``): probability that each voxel is foreground.

    Parameters
    ----------
    masks : sequence of ndarray of shape (Z, Y, X) or (Y, X), or ndarray of shape (M, Z, Y, X)
        The raters' masks: bool, or integer maps where ``foreground_value`` marks the foreground.
    foreground_value : int, default 1
        Value of the foreground in integer maps (ignored for bool masks).
    max_iterations : int, optional
        Cap on EM iterations; by default SimpleITK iterates until convergence.
    confidence_weight : float, default 1.0
        SimpleITK's weight of the prior: values above 1 favour the estimated prior, below 1 the raters.

    Returns
    -------
    ndarray of shape (Z, Y, X), float32
        Estimated probability of foreground (SimpleITK computes in float64; threshold at 0.5 for a mask).
    """
    sitk = _sitk()
    maps = _as_maps(masks, name="masks")
    value = as_int(foreground_value, name="foreground_value")
    if not np.isfinite(confidence_weight) or confidence_weight <= 0:
        raise ValidationError(f"`confidence_weight` must be positive and finite; got {confidence_weight!r}.")
    if maps[0].size == 0:
        return np.zeros(maps[0].shape, dtype=np.float32)
    f = sitk.STAPLEImageFilter()
    f.SetForegroundValue(1.0)
    f.SetConfidenceWeight(float(confidence_weight))
    if max_iterations is not None:
        f.SetMaximumIterations(as_int(max_iterations, name="max_iterations", minimum=1))
    images = [sitk.GetImageFromArray((m if m.dtype == np.bool_ else m == value).astype(np.uint8)) for m in maps]
    probabilities: NDArray[np.float32] = sitk.GetArrayFromImage(f.Execute(images)).astype(np.float32)
    return probabilities
