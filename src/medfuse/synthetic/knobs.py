"""The knobs of a simulated member (noise, dilation, confidence, missed labels, blobs), checked and drawn
per class from the user's arguments (:func:`_knobs`)."""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
from numpy.typing import NDArray

from .._core.validation import as_int, as_spacing, describe
from ..errors import ValidationError

__all__ = ["PerClass"]

PerClass = Union[float, Sequence[float], Mapping[int, float], NDArray[Any]]  # noqa: UP007 (runtime alias, py3.10)


@dataclass(frozen=True)
class _Knobs:
    num_classes: int
    spacing: tuple[float, ...]
    noise_mm: NDArray[np.float64]  # (C,)
    dilation_mm: NDArray[np.float64]  # (C,)
    slope: NDArray[np.float64]  # (C,) logit per mm
    missed: frozenset[int]
    blobs: int
    correlation_mm: float
    shared: float  # fraction of the random error variance drawn from the shared stream
    shared_seed: np.random.SeedSequence


def _per_class(value: PerClass | None, *, name: str, num_classes: int, default: NDArray[np.float64],
               minimum: float | None = None, exclusive: bool = False) -> NDArray[np.float64]:
    out: NDArray[np.float64] = np.array(default, dtype=np.float64)
    if value is None:
        return out
    if isinstance(value, Mapping):
        for key, v in value.items():
            k = as_int(key, name=f"{name} key")
            if not 1 <= k < num_classes:
                raise ValidationError(
                    f"`{name}` keys must be foreground labels 1..{num_classes - 1}; got {k}."
                )
            out[k] = float(v)
    else:
        arr = np.asarray(value, dtype=np.float64) if not isinstance(value, str) else np.zeros(0)
        if arr.ndim == 0:
            out[1:] = float(arr)
        elif arr.shape == (num_classes,):
            out[1:] = arr[1:]
        else:
            raise ValidationError(
                f"`{name}` must be a number, a mapping {{label: value}} or one value per class "
                f"({num_classes}, entry 0 ignored); got {describe(value)}."
            )
    if not np.all(np.isfinite(out)):
        raise ValidationError(f"`{name}` must be finite; got {out[1:].tolist()}.")
    if minimum is not None and (np.any(out[1:] <= minimum) if exclusive else np.any(out[1:] < minimum)):
        op = ">" if exclusive else ">="
        raise ValidationError(f"`{name}` must be {op} {minimum}; got {out[1:].tolist()}.")
    return out


def _knobs(
    reference: NDArray[Any], *, num_classes: int | None, quality: float, boundary_noise: PerClass | None,
    dilation: PerClass | None, missed_labels: Sequence[int], false_positive_blobs: int,
    class_strength: PerClass | None, spacing: Sequence[float] | float | None, rng: np.random.Generator,
    error_correlation: float, shared_seed: int | np.random.SeedSequence,
) -> _Knobs:
    q = float(quality) if isinstance(quality, (int, float, np.floating, np.integer)) else float("nan")
    if not 0.0 < q <= 1.0 or isinstance(quality, bool):
        raise ValidationError(f"`quality` must be a number in (0, 1]; got {quality!r}.")
    top = int(reference.max()) if reference.size else 0
    k = top + 1 if num_classes is None else as_int(num_classes, name="num_classes", minimum=2)
    k = max(k, 2)
    if top >= k:
        raise ValidationError(
            f"`reference` holds label {top} but `num_classes` is {k}; pass num_classes >= {top + 1}."
        )
    if reference.size and reference.min() < 0:
        raise ValidationError(f"`reference` labels must be non-negative; got {int(reference.min())}.")
    if k > 65536:
        raise ValidationError(f"`num_classes` must be at most 65536; got {k}.")
    sp = as_spacing(spacing, ndim=reference.ndim, name="spacing")
    zeros = np.zeros(k)
    noise = _per_class(boundary_noise, name="boundary_noise", num_classes=k,
                       default=zeros + 8.0 * (1.0 - q), minimum=0.0)
    # quality also draws a random systematic over/under-segmentation per class
    rho = float(error_correlation) if isinstance(error_correlation, (int, float, np.floating, np.integer)) \
        and not isinstance(error_correlation, bool) else float("nan")
    if not 0.0 <= rho <= 1.0:
        raise ValidationError(f"`error_correlation` must be a number in [0, 1]; got {error_correlation!r}.")
    shared_ss = _seed_sequence(shared_seed, name="shared_seed")
    random_dil = rng.normal(0.0, 3.0 * (1.0 - q), size=k)
    if rho > 0:  # members with the same shared_seed share this part of their systematic error
        common = _child(shared_ss, 0).normal(0.0, 3.0 * (1.0 - q), size=k)
        random_dil = math.sqrt(1.0 - rho) * random_dil + math.sqrt(rho) * common
    dil = _per_class(dilation, name="dilation", num_classes=k, default=random_dil)
    strength = _per_class(class_strength, name="class_strength", num_classes=k, default=zeros + 1.0,
                          minimum=0.0, exclusive=True)
    slope = (0.5 + 1.5 * q) * strength
    try:
        missed = frozenset(operator.index(m) for m in missed_labels)
    except TypeError:
        raise ValidationError(
            f"`missed_labels` must be a sequence of labels; got {describe(missed_labels)}."
        ) from None
    bad = sorted(m for m in missed if not 1 <= m < k)
    if bad:
        raise ValidationError(f"`missed_labels` must be foreground labels 1..{k - 1}; got {bad}.")
    blobs = as_int(false_positive_blobs, name="false_positive_blobs", minimum=0)
    return _Knobs(k, sp, noise, dil, slope, missed, blobs, correlation_mm=max(12.0, 3.0 * max(sp)),
                  shared=rho, shared_seed=shared_ss)


def _child(ss: np.random.SeedSequence, i: int) -> np.random.Generator:
    """Generator of the ``i``-th child stream of ``ss`` (stateless, unlike ``SeedSequence.spawn``)."""
    return np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, i)))


def _seed_sequence(seed: int | np.random.SeedSequence, *, name: str = "seed") -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    return np.random.SeedSequence(as_int(seed, name=name, minimum=0))
