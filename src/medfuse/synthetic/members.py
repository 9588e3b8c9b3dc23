"""Seeded synthetic volumes for tests, examples and benchmarks.

Two things live here:

* :func:`phantom` — an abdominal-CT-like label map (11 organ labels numbered as in the users' competition:
  1 left kidney, 2 spleen, 3 liver, 4 pancreas, 5 aorta, 6 bladder, 7 stomach, 8 gallbladder, 9 inferior
  vena cava, 10 esophagus, 11 right kidney) inside a body ellipse, with a CT-like image, anisotropic
  spacing, an optional non-identity direction and a non-trivial crop box (the nonzero box of the image, as
  nnU-Net's crop to nonzero finds it).
* :func:`simulate_probabilities`, :func:`simulate_labels`, :func:`simulate_members` — simulated model
  outputs for any reference label map (a phantom or a real one), soft (class probabilities summing to 1)
  or hard (labels), with controllable quality: smooth boundary noise, systematic dilation / erosion in mm,
  missed structures, false-positive blobs and per-class confidence.

Everything is deterministic given ``seed`` (``numpy.random.SeedSequence``); each class draws from its own
stream, so simulating one class does not change another's noise.

How the simulation works
------------------------
For each foreground class ``c`` the signed distance ``d`` (mm, positive inside) to the reference mask is
computed with ``scipy.ndimage.distance_transform_edt`` inside the class's bounding box plus a margin, then
``d + dilation[c] + boundary_noise * field`` (``field``: a smooth unit-variance random field, cubic B-spline
interpolation of white noise on a coarse grid) is turned into a logit ``slope * class_strength[c] * (...)``
clipped to ``[-10, 10]``; background has logit 0. The softmax of those logits are the probabilities, so a
voxel belongs to class ``c`` in the argmax exactly where the shifted, noisy distance is positive and
larger (in logit) than every other class's. Far from a class's region its probability is exactly 0.
Classes are processed one at a time: the extra memory is the output plus a few arrays of one class's box.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import numpy as np
from numpy.typing import DTypeLike, NDArray

from .._core.validation import as_int, as_label_map, describe
from ..errors import ValidationError
from .knobs import PerClass, _child, _Knobs, _knobs, _seed_sequence
from .shapes import ORGAN_NAMES, Phantom, _smooth_field, phantom

__all__ = [
    "ORGAN_NAMES",
    "Phantom",
    "phantom",
    "simulate_labels",
    "simulate_members",
    "simulate_probabilities",
]



# ------------------------------------------------------------------------------------------------------
# simulated model outputs
# ------------------------------------------------------------------------------------------------------

#: Logits are clipped to [-_LOGIT_CLIP, _LOGIT_CLIP]; exp(10) = 22026 still fits float16.
_LOGIT_CLIP = 10.0
#: Default share of error variance common to the members of :func:`simulate_members`.
ERROR_CORRELATION = 0.6


def _as_reference(reference: Any, spacing: Sequence[float] | float | None
                  ) -> tuple[NDArray[Any], Sequence[float] | float | None, int | None]:
    if isinstance(reference, Phantom):
        return reference.labels, (reference.spacing if spacing is None else spacing), reference.num_classes
    ref = as_label_map(reference, name="reference")
    if ref.ndim not in (2, 3):
        raise ValidationError(f"`reference` must be a 2D or 3D label map; got {describe(ref)}.")
    return ref, spacing, None


def _class_blocks(ref: NDArray[Any], knobs: _Knobs, seed: np.random.SeedSequence
                  ) -> Iterator[tuple[int, tuple[slice, ...], NDArray[np.float32]]]:
    """Yield ``(class, region, exp(logit))`` blocks, one class at a time; a class may yield several blocks
    (its organ and its false-positive blobs) which combine by maximum."""
    from scipy import ndimage

    k = knobs.num_classes
    boxes = ndimage.find_objects(ref, max_label=k - 1) if ref.size else [None] * (k - 1)
    blob_centers = _place_blobs(ref, knobs, boxes, _child(seed, 1))
    sp = np.asarray(knobs.spacing)
    for c in range(1, k):
        if c in knobs.missed:
            continue
        rng = _child(seed, 2 + c)
        slope = knobs.slope[c]
        box = boxes[c - 1]
        if box is not None:
            reach_mm = _LOGIT_CLIP / slope + max(knobs.dilation_mm[c], 0.0) + 4.0 * knobs.noise_mm[c]
            pad = np.ceil(reach_mm / sp).astype(int) + 1
            region = tuple(slice(max(s.start - p, 0), min(s.stop + p, n))
                           for s, p, n in zip(box, pad, ref.shape, strict=True))
            mask = ref[region] == c
            d = ndimage.distance_transform_edt(mask, sampling=knobs.spacing).astype(np.float32)
            if (~mask).any():
                d -= ndimage.distance_transform_edt(~mask, sampling=knobs.spacing).astype(np.float32)
            else:
                d += np.float32(_LOGIT_CLIP / slope)
            del mask
            d += np.float32(knobs.dilation_mm[c])
            if knobs.noise_mm[c] > 0:
                step = [knobs.correlation_mm / v for v in knobs.spacing]
                own = _smooth_field(rng, ref.shape, region, step)
                if knobs.shared > 0:
                    own *= np.float32(math.sqrt(1.0 - knobs.shared))
                    common = _smooth_field(_child(knobs.shared_seed, 2 + c), ref.shape, region, step)
                    own += np.float32(math.sqrt(knobs.shared)) * common
                    del common
                d += np.float32(knobs.noise_mm[c]) * own
                del own
            yield c, region, _exp_logit(d, slope)
        for center, radius in blob_centers.get(c, ()):
            pad = np.ceil((radius + _LOGIT_CLIP / slope) / sp).astype(int) + 1
            region = tuple(slice(max(int(p) - q, 0), min(int(p) + q + 1, n))
                           for p, q, n in zip(center, pad, ref.shape, strict=True))
            grids = [(np.arange(s.start, s.stop) - p).reshape([-1 if a == i else 1 for a in range(ref.ndim)])
                     * v for i, (s, p, v) in enumerate(zip(region, center, knobs.spacing, strict=True))]
            dist = np.sqrt(sum(g.astype(np.float32) ** 2 for g in grids))
            yield c, region, _exp_logit(np.float32(radius) - dist, slope)


def _exp_logit(d: NDArray[np.float32], slope: float) -> NDArray[np.float32]:
    """exp(clip(slope * d)), exactly 0 where the logit reaches the lower clip."""
    d *= np.float32(slope)
    np.clip(d, -_LOGIT_CLIP, _LOGIT_CLIP, out=d)
    far = d <= -_LOGIT_CLIP
    np.exp(d, out=d)
    d[far] = 0.0
    return d


def _place_blobs(ref: NDArray[Any], knobs: _Knobs, boxes: Sequence[tuple[slice, ...] | None],
                 rng: np.random.Generator) -> dict[int, list[tuple[NDArray[np.int64], float]]]:
    """Centers (voxel index) and radii (mm) of false-positive blobs, away from their class's organ.

    Placement works on a coarse grid (block max-pooling to at most ~48 cells per axis) so its cost does not
    grow with the volume; a blob keeps ``radius + gap`` mm from its class's reference mask (and, when there
    is room, from every labelled voxel), inside the labelled region's bounding box.
    """
    from scipy import ndimage

    out: dict[int, list[tuple[NDArray[np.int64], float]]] = {}
    eligible = [c for c in range(1, knobs.num_classes) if c not in knobs.missed and boxes[c - 1] is not None]
    if knobs.blobs == 0:
        return out
    if not eligible:
        raise ValidationError(
            "`false_positive_blobs` needs a foreground class present in `reference` and not missed; "
            "there is none."
        )
    factor = np.array([max(1, math.ceil(n / 48)) for n in ref.shape])
    cshape = tuple(-(-n // f) for n, f in zip(ref.shape, factor, strict=True))
    csp = np.asarray(knobs.spacing) * factor

    def pooled(box: tuple[slice, ...], predicate: Callable[[NDArray[Any]], NDArray[np.bool_]]
               ) -> NDArray[np.bool_]:
        """Coarse grid, True where some voxel of the cell (inside ``box``) satisfies ``predicate``."""
        grid = np.zeros(cshape, dtype=bool)
        lo = [s.start // f for s, f in zip(box, factor, strict=True)]
        hi = [-(-s.stop // f) for s, f in zip(box, factor, strict=True)]
        aligned = tuple(slice(a * f, min(b * f, n)) for a, b, f, n in zip(lo, hi, factor, ref.shape, strict=True))
        sub = predicate(ref[aligned])
        sub = np.pad(sub, [(0, (b - a) * f - m) for a, b, f, m in zip(lo, hi, factor, sub.shape, strict=True)])
        new_shape = [v for a, b, f in zip(lo, hi, factor, strict=True) for v in (b - a, f)]
        grid[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] = sub.reshape(new_shape).any(
            axis=tuple(range(1, 2 * ref.ndim, 2)))
        return grid

    fg_boxes = [b for b in boxes if b is not None]
    fg_box = tuple(slice(min(b[a].start for b in fg_boxes), max(b[a].stop for b in fg_boxes))
                   for a in range(ref.ndim))
    any_fg = pooled(fg_box, lambda a: a > 0)
    inside = np.zeros(cshape, dtype=bool)
    inside[tuple(slice(s.start // f, -(-s.stop // f)) for s, f in zip(fg_box, factor, strict=True))] = True
    dist_any = ndimage.distance_transform_edt(~any_fg, sampling=csp) if any_fg.any() else None
    cell = float(np.sqrt((csp**2).sum()))
    centers_mm = [(np.arange(n) * f + (f - 1) / 2.0) for n, f in zip(cshape, factor, strict=True)]
    volumes = np.bincount(ref[fg_box].ravel(), minlength=knobs.num_classes)
    for _ in range(knobs.blobs):
        c = int(rng.choice(eligible))
        box = cast(tuple[slice, ...], boxes[c - 1])
        radius_eq = (volumes[c] * float(np.prod(knobs.spacing)) * 3 / (4 * math.pi)) ** (1 / 3)
        radius = float(max(rng.uniform(0.15, 0.3) * radius_eq, 1.5 * max(knobs.spacing)))
        gap = radius + 2.0 * max(knobs.spacing) + 4.0 * knobs.noise_mm[c] + max(knobs.dilation_mm[c], 0.0) + cell
        mine = pooled(box, lambda a, c=c: a == c)  # type: ignore[misc]
        dist_c = ndimage.distance_transform_edt(~mine, sampling=csp)
        border = np.ones(cshape, dtype=bool)
        for a, (cm, n) in enumerate(zip(centers_mm, ref.shape, strict=True)):
            ok = (cm * knobs.spacing[a] >= radius) & ((n - 1 - cm) * knobs.spacing[a] >= radius)
            border &= ok.reshape([-1 if i == a else 1 for i in range(ref.ndim)])
        cand = (dist_c > gap) & inside & border
        if dist_any is not None and (cand & (dist_any > radius + cell)).any():
            cand &= dist_any > radius + cell
        idx = np.flatnonzero(cand)
        if idx.size == 0:
            raise ValidationError(
                f"`false_positive_blobs`: no room for a blob of class {c} at least {gap:.1f} mm away from its "
                f"reference structure in a volume of shape {ref.shape}; use fewer blobs or a larger volume."
            )
        pick = np.unravel_index(int(rng.choice(idx)), cshape)
        center = np.array([round(centers_mm[a][pick[a]]) for a in range(ref.ndim)], dtype=np.int64)
        out.setdefault(c, []).append((center, radius))
    return out


def _as_dtype(dtype: DTypeLike) -> np.dtype[Any]:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = np.dtype(object)
    if dt not in (np.dtype(np.float16), np.dtype(np.float32)):
        raise ValidationError(f"`dtype` must be numpy.float16 or numpy.float32; got {dtype!r}.")
    return dt


def simulate_probabilities(
    reference: NDArray[Any] | Phantom,
    *,
    num_classes: int | None = None,
    quality: float = 0.9,
    boundary_noise: PerClass | None = None,
    dilation: PerClass | None = None,
    missed_labels: Sequence[int] = (),
    false_positive_blobs: int = 0,
    class_strength: PerClass | None = None,
    spacing: Sequence[float] | float | None = None,
    dtype: DTypeLike = np.float16,
    seed: int | np.random.SeedSequence = 0,
    error_correlation: float = 0.0,
    shared_seed: int | np.random.SeedSequence = 0,
) -> NDArray[np.floating[Any]]:
    """Class probabilities a model of the given quality could have predicted for ``reference``.

    Parameters
    ----------
    reference : ndarray of shape (Z, Y, X) or (Y, X), integer, or Phantom
        Reference label map (0 = background). A :class:`Phantom` brings its spacing and class count.
    num_classes : int, optional
        Number of classes C including background; ``reference.max() + 1`` when omitted.
    quality : float in (0, 1]
        Master knob; sets the defaults of the knobs left as None: boundary noise ``8 * (1 - quality)`` mm,
        a random per-class dilation drawn from ``N(0, 3 * (1 - quality))`` mm, and the confidence (logit
        slope ``0.5 + 1.5 * quality`` per mm).
    boundary_noise : float, mapping or (C,) sequence, optional
        Standard deviation in mm of the smooth random displacement of each class's boundary (correlation
        length ~12 mm). Per class: a ``{label: mm}`` mapping or one value per class (entry 0 ignored).
    dilation : float, mapping or (C,) sequence, optional
        Systematic boundary shift in mm: positive dilates (over-segments), negative erodes. Classes missing
        from a mapping keep their quality-derived random shift; pass 0 to switch it off.
    missed_labels : sequence of int
        Classes the model never predicts (probability exactly 0).
    false_positive_blobs : int
        Number of extra spheres, each of a random present class, placed away from that class's structure
        (disconnected from it), preferably in unlabelled space.
    class_strength : float, mapping or (C,) sequence, optional
        Positive multiplier of each class's logit slope: below 1 a less confident class (flatter
        probabilities, loses at interfaces with confident neighbours), above 1 a more confident one.
    spacing : float or sequence of float, optional
        Voxel size in mm (array order); 1 mm when omitted (a Phantom's own spacing by default).
    dtype : numpy.float16 or numpy.float32
        Output dtype; float16 is what nnU-Net v1 / PaddleSeg write.
    seed : int or numpy.random.SeedSequence
        The same seed gives the same output.
    error_correlation : float in [0, 1]
        Fraction of the variance of the random errors (boundary noise field, quality-derived dilation)
        drawn from the stream of ``shared_seed`` rather than ``seed``: members simulated with the same
        ``shared_seed`` share that part of their errors, as models trained on the same data do (their
        ensemble gains less than independent members would). 0: independent members.
    shared_seed : int or numpy.random.SeedSequence
        Seed of the shared error stream (only used when ``error_correlation > 0``).

    Returns
    -------
    ndarray of shape (C, Z, Y, X) (or (C, Y, X)), ``dtype``
        Probabilities summing to 1 over the class axis (within float16 rounding for float16).

    Notes
    -----
    Memory: the output, plus a few float32/float64 arrays of one class's bounding box (and margin) at a time.
    """
    ref, spacing, phantom_classes = _as_reference(reference, spacing)
    dt = _as_dtype(dtype)
    ss = _seed_sequence(seed)
    knob_rng = _child(ss, 0)
    knobs = _knobs(ref, num_classes=num_classes if num_classes is not None else phantom_classes,
                   quality=quality, boundary_noise=boundary_noise, dilation=dilation,
                   missed_labels=missed_labels, false_positive_blobs=false_positive_blobs,
                   class_strength=class_strength, spacing=spacing, rng=knob_rng,
                   error_correlation=error_correlation, shared_seed=shared_seed)
    k = knobs.num_classes
    out = np.zeros((k, *ref.shape), dtype=dt)
    # e_c = exp(logit_c) per class, combined by maximum; remember each class's box
    boxes: dict[int, tuple[list[int], list[int]]] = {}
    for c, region, e in _class_blocks(ref, knobs, ss):
        target = out[c][region]
        np.maximum(target, e, out=target, casting="unsafe")
        lo, hi = [s.start for s in region], [s.stop for s in region]
        if c in boxes:
            lo = [min(a, b) for a, b in zip(lo, boxes[c][0], strict=True)]
            hi = [max(a, b) for a, b in zip(hi, boxes[c][1], strict=True)]
        boxes[c] = (lo, hi)
    # p_c = e_c / (1 + sum e), p_0 = 1 / (1 + sum e); outside every box p_0 = 1, p_c = 0
    out[0] = 1
    if boxes:
        u_lo = np.min([b[0] for b in boxes.values()], axis=0)
        u_hi = np.max([b[1] for b in boxes.values()], axis=0)
        union = tuple(slice(int(a), int(b)) for a, b in zip(u_lo, u_hi, strict=True))
        total = np.ones(tuple(int(b - a) for a, b in zip(u_lo, u_hi, strict=True)), dtype=np.float32)

        def local(c: int) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
            lo, hi = boxes[c]
            glob = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
            return glob, tuple(slice(a - o, b - o) for a, b, o in zip(lo, hi, u_lo, strict=True))

        for c in boxes:
            glob, loc = local(c)
            total[loc] += out[c][glob]
        np.reciprocal(total, out=total)
        for c in boxes:
            glob, loc = local(c)
            view = out[c][glob]
            view *= total[loc]
        out[0][union] = total
    return out


def simulate_labels(
    reference: NDArray[Any] | Phantom,
    *,
    num_classes: int | None = None,
    quality: float = 0.9,
    boundary_noise: PerClass | None = None,
    dilation: PerClass | None = None,
    missed_labels: Sequence[int] = (),
    false_positive_blobs: int = 0,
    class_strength: PerClass | None = None,
    spacing: Sequence[float] | float | None = None,
    seed: int | np.random.SeedSequence = 0,
    error_correlation: float = 0.0,
    shared_seed: int | np.random.SeedSequence = 0,
) -> NDArray[np.unsignedinteger[Any]]:
    """Label map a model of the given quality could have predicted for ``reference``.

    The argmax (ties to the lowest class) of the probabilities :func:`simulate_probabilities` gives for the
    same arguments and seed, computed without materialising them: the knobs are the same.

    Returns
    -------
    ndarray of the shape of ``reference``, uint8 (uint16 above 256 classes)
    """
    ref, spacing, phantom_classes = _as_reference(reference, spacing)
    ss = _seed_sequence(seed)
    knob_rng = _child(ss, 0)
    knobs = _knobs(ref, num_classes=num_classes if num_classes is not None else phantom_classes,
                   quality=quality, boundary_noise=boundary_noise, dilation=dilation,
                   missed_labels=missed_labels, false_positive_blobs=false_positive_blobs,
                   class_strength=class_strength, spacing=spacing, rng=knob_rng,
                   error_correlation=error_correlation, shared_seed=shared_seed)
    labels = np.zeros(ref.shape, dtype=np.uint8 if knobs.num_classes <= 256 else np.uint16)
    best = np.ones(ref.shape, dtype=np.float32)  # exp(background logit 0)
    for c, region, e in _class_blocks(ref, knobs, ss):
        b = best[region]
        wins = e > b
        labels[region][wins] = c
        np.maximum(b, e, out=b)
    return labels


def simulate_members(
    reference_or_phantom: NDArray[Any] | Phantom,
    *,
    qualities: Sequence[float] = (0.9, 0.8, 0.7),
    soft: bool = True,
    seed: int = 0,
    error_correlation: float = ERROR_CORRELATION,
    num_classes: int | None = None,
    spacing: Sequence[float] | float | None = None,
    dtype: DTypeLike = np.float16,
    **knobs: Any,
) -> list[NDArray[Any]]:
    """Ensemble members of the given qualities for one reference: probabilities or label maps.

    Member ``i`` is :func:`simulate_probabilities` (``soft=True``) or :func:`simulate_labels` with
    ``quality=qualities[i]``, its own seed derived from ``(seed, i)`` and a shared error stream derived
    from ``seed``; extra keyword arguments (``boundary_noise``, ``dilation``, ``missed_labels``,
    ``false_positive_blobs``, ``class_strength``) go to every member.

    Parameters
    ----------
    error_correlation : float in [0, 1]
        Fraction of the random error variance the members share (see :func:`simulate_probabilities`).
        The default makes an equal-weight ensemble of equally good members gain a few Dice points, as real
        ensembles of models trained on the same data do; 0 gives independent members (large gains).

    Returns
    -------
    list of ndarray
        ``len(qualities)`` arrays: (C, *shape) ``dtype`` probabilities, or (*shape) uint8 labels.
    """
    try:
        qs = [float(q) for q in qualities]
    except (TypeError, ValueError):
        raise ValidationError(f"`qualities` must be a sequence of numbers in (0, 1]; got {qualities!r}.") from None
    if not qs:
        raise ValidationError("`qualities` must hold at least one quality; got an empty sequence.")
    allowed = {"boundary_noise", "dilation", "missed_labels", "false_positive_blobs", "class_strength"}
    unknown = sorted(set(knobs) - allowed)
    if unknown:
        raise ValidationError(f"simulate_members got unknown keyword(s) {unknown}; expected some of "
                              f"{sorted(allowed)}.")
    base = as_int(seed, name="seed", minimum=0)
    shared = np.random.SeedSequence(base, spawn_key=(0,))
    members: list[NDArray[Any]] = []
    for i, q in enumerate(qs):
        common: dict[str, Any] = {"num_classes": num_classes, "quality": q, "spacing": spacing,
                                  "seed": np.random.SeedSequence(base, spawn_key=(1, i)),
                                  "error_correlation": error_correlation, "shared_seed": shared}
        if soft:
            members.append(simulate_probabilities(reference_or_phantom, dtype=dtype, **common, **knobs))
        else:
            members.append(simulate_labels(reference_or_phantom, **common, **knobs))
    return members
