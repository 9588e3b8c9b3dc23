"""Abdominal-CT-like phantoms and smooth random fields (private; public through :mod:`medfuse.synthetic`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._core.validation import as_int, as_spacing, describe
from ..errors import ValidationError
from ..geometry import Geometry

#: Names of the 11 default labels, index ``i`` is label ``i + 1`` (the competition's numbering).
ORGAN_NAMES: tuple[str, ...] = (
    "kidney_left", "spleen", "liver", "pancreas", "aorta", "bladder", "stomach", "gallbladder",
    "inferior_vena_cava", "esophagus", "kidney_right",
)

# ------------------------------------------------------------------------------------------------------
# smooth random fields
# ------------------------------------------------------------------------------------------------------


def _cubic_bspline(t: NDArray[np.float64]) -> NDArray[np.float64]:
    a = np.abs(t)
    out = np.where(a < 1.0, 2.0 / 3.0 - a**2 + 0.5 * a**3, 0.0)
    return np.where((a >= 1.0) & (a < 2.0), (2.0 - a) ** 3 / 6.0, out)


def _spline_weights(n: int, step: float) -> NDArray[np.float32]:
    """(n, m) cubic B-spline weights from m coarse nodes (``step`` voxels apart) to n voxels, rows unit-norm.

    Dividing each row by its norm makes the interpolated field unit-variance at every voxel when the nodes
    are independent standard normals.
    """
    m = math.ceil(max(n - 1, 0) / step) + 4
    t = np.arange(n, dtype=np.float64)[:, None] / step - (np.arange(m, dtype=np.float64)[None, :] - 1.0)
    w = _cubic_bspline(t)
    w /= np.sqrt((w**2).sum(axis=1, keepdims=True))
    return w.astype(np.float32)


def _smooth_field(
    rng: np.random.Generator, shape: Sequence[int], region: Sequence[slice], step_vox: Sequence[float]
) -> NDArray[np.float32]:
    """Unit-variance smooth random field of a volume of ``shape``, evaluated only on ``region``.

    The coarse node values depend on ``shape`` and ``rng`` only, so the field at a voxel does not depend on
    the region asked for.
    """
    weights = [_spline_weights(n, max(float(s), 1.0)) for n, s in zip(shape, step_vox, strict=True)]
    nodes = rng.standard_normal(tuple(w.shape[1] for w in weights), dtype=np.float32)
    out: NDArray[np.float32] = nodes
    # contract the smallest expansions first: axes in order of growth ratio
    for w, sl in zip(weights, region, strict=True):
        out = np.tensordot(out, w[sl], axes=([0], [1]))  # (m_a, rest) -> (rest, r_a)
    return np.ascontiguousarray(out, dtype=np.float32)


# ------------------------------------------------------------------------------------------------------
# phantom
# ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Organ:
    label: int
    kind: str  # "ellipsoid" | "tube"
    center: tuple[float, float, float]  # (u, v, w) body coordinates: x right->left, y ant->post, z inf->sup
    semi_mm: tuple[float, float, float]  # (x, y, z) semi-axes at the reference body size; z unused for tubes
    hu: float
    tilt_deg: float = 0.0  # rotation in the x-z plane (ellipsoids)
    z_range: tuple[float, float] = (-1.0, 1.0)  # tubes: extent in w
    drift: tuple[float, float] = (0.0, 0.0)  # tubes: center shift in (u, v) per unit w


#: Reference body semi-axes (x, y, z) in mm that the organ sizes are given for.
_BODY_MM = (165.0, 115.0, 180.0)

_ORGANS: tuple[_Organ, ...] = (
    _Organ(3, "ellipsoid", (-0.42, -0.05, 0.50), (80, 70, 75), 110.0),
    _Organ(7, "ellipsoid", (0.35, -0.20, 0.62), (55, 40, 50), 30.0, tilt_deg=15.0),
    _Organ(2, "ellipsoid", (0.62, 0.30, 0.55), (30, 45, 45), 120.0, tilt_deg=-10.0),
    _Organ(1, "ellipsoid", (0.40, 0.50, 0.15), (28, 25, 55), 180.0, tilt_deg=8.0),
    _Organ(11, "ellipsoid", (-0.40, 0.50, 0.05), (28, 25, 55), 180.0, tilt_deg=-8.0),
    _Organ(4, "ellipsoid", (0.05, 0.05, 0.30), (65, 14, 16), 100.0, tilt_deg=-20.0),
    _Organ(6, "ellipsoid", (0.00, -0.25, -0.78), (45, 35, 35), 5.0),
    _Organ(8, "ellipsoid", (-0.30, -0.40, 0.30), (15, 15, 30), 10.0, tilt_deg=10.0),
    _Organ(9, "tube", (-0.13, 0.28, 0.0), (13, 9, 0), 140.0, z_range=(-0.50, 0.75), drift=(0.02, 0.0)),
    _Organ(5, "tube", (0.08, 0.33, 0.0), (11, 11, 0), 170.0, z_range=(-0.45, 1.0), drift=(-0.03, 0.02)),
    _Organ(10, "tube", (0.02, 0.12, 0.0), (8, 6, 0), 45.0, z_range=(0.72, 1.0), drift=(0.02, 0.0)),
)

_HU_AIR, _HU_FAT, _HU_TISSUE, _HU_BONE, _HU_EXTRA = -1000.0, -100.0, 40.0, 400.0, 70.0
_NOISE_HU = 12.0


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic abdominal CT case: labels, image, geometry and crop box.

    Attributes
    ----------
    labels : ndarray of shape (Z, Y, X), uint8
        Organ labels 1..``num_labels`` (0 = background); each organ is one 6-connected component.
    image : ndarray of shape (Z, Y, X), float32
        CT-like intensities in HU: 0 outside ``crop_bbox`` (scanner padding), air (-1000) around the body,
        fat, soft tissue, a spine (400 HU, unlabelled) and per-organ means, plus Gaussian noise.
    geometry : Geometry
        Shape, spacing, origin and direction of the volume.
    crop_bbox : tuple of (int, int)
        Half-open ``((z0, z1), (y0, y1), (x0, x1))``: the nonzero box of ``image`` (what nnU-Net's crop to
        nonzero finds); every label lies inside it.
    label_names : tuple of str
        Name of label ``i + 1`` at index ``i``.
    seed : int
        The seed that made this phantom.
    """

    labels: NDArray[np.uint8] = field(repr=False)
    image: NDArray[np.float32] = field(repr=False)
    geometry: Geometry
    crop_bbox: tuple[tuple[int, int], ...]
    label_names: tuple[str, ...]
    seed: int

    @property
    def num_labels(self) -> int:
        """Number of foreground labels."""
        return len(self.label_names)

    @property
    def num_classes(self) -> int:
        """Number of classes including background (``num_labels + 1``)."""
        return len(self.label_names) + 1

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size in mm, array order ``(z, y, x)``."""
        return self.geometry.spacing

    @property
    def shape(self) -> tuple[int, ...]:
        return self.geometry.shape


def _as_margins(crop_margin: Any, shape: tuple[int, ...], rng: np.random.Generator) -> list[list[int]]:
    if crop_margin is None:
        return [[int(rng.integers(1, max(2, s // 8) + 1)) for _ in range(2)] for s in shape]
    arr = np.asarray(crop_margin)
    if arr.dtype.kind not in "iu" or arr.ndim > 2 or (arr.ndim >= 1 and arr.shape[0] != 3) or (
            arr.ndim == 2 and arr.shape[1] != 2):
        raise ValidationError(
            "`crop_margin` must be None, an int, 3 ints (one per axis) or 3 (before, after) pairs of "
            f"non-negative ints; got {describe(crop_margin)}."
        )
    arr = np.broadcast_to(arr.reshape(arr.shape + (1,) * (2 - arr.ndim)) if arr.ndim else arr, (3, 2))
    if np.any(arr < 0):
        raise ValidationError(f"`crop_margin` must be non-negative; got {arr.tolist()}.")
    return [[int(v) for v in row] for row in arr]


def _as_direction(direction: Sequence[float] | None) -> tuple[float, ...]:
    if direction is None:
        return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    try:
        d = np.asarray(direction, dtype=np.float64)
    except (TypeError, ValueError):
        d = np.zeros(0)
    if d.shape != (9,) or not np.array_equal(np.abs(d.reshape(3, 3)), np.eye(3)):
        raise ValidationError(
            "`direction` must be a diagonal 9-tuple of +-1 (axis flips, e.g. (1, 0, 0, 0, -1, 0, 0, 0, 1) as "
            f"in the competition's images) or None for identity; got {direction!r}."
        )
    return tuple(float(v) for v in d)


def phantom(
    shape: Sequence[int] = (64, 128, 128),
    *,
    num_labels: int = 11,
    spacing: Sequence[float] = (2.5, 0.8, 0.8),
    seed: int = 0,
    crop_margin: int | Sequence[int] | Sequence[Sequence[int]] | None = None,
    direction: Sequence[float] | None = None,
) -> Phantom:
    """A seeded abdominal-CT-like phantom with organ labels, a CT-like image and a crop box.

    Organs are deformed ellipsoids (liver, spleen, kidneys, pancreas, stomach, gallbladder, bladder) and
    tubes along z (aorta, inferior vena cava, esophagus) placed anatomically inside a body ellipse, with
    realistic relative sizes (liver largest, gallbladder and esophagus smallest). Their size scales with the
    body, which fills the crop box; ``seed`` jitters positions, sizes and shapes.

    Parameters
    ----------
    shape : sequence of 3 int
        ``(Z, Y, X)``; each axis at least 8.
    num_labels : int
        Number of foreground labels, 1 to 255. Up to 11 are the organs (labels ``1..num_labels`` of
        :data:`ORGAN_NAMES`); more adds small ellipsoids ``structure_12`` ... in free space inside the body.
    spacing : sequence of 3 float
        Voxel size in mm, ``(z, y, x)``.
    seed : int
        Seed of ``numpy.random.default_rng``; the same seed gives the same phantom.
    crop_margin : int, sequence of 3 int, or 3 (before, after) pairs, optional
        Voxels of zero padding (outside the scanned region) at each side of each axis. ``None`` draws
        1 to ``shape // 8`` voxels per side from ``seed`` (asymmetric, like a real scan).
    direction : sequence of 9 float, optional
        ITK direction cosines; only axis flips (diagonal +-1) are accepted, e.g. the competition's
        ``(1, 0, 0, 0, -1, 0, 0, 0, 1)``. The anatomy stays anatomically oriented in physical space (a
        flipped y axis puts the spine at low y indices). Identity when omitted.

    Returns
    -------
    Phantom
        ``labels`` uint8, ``image`` float32, ``geometry``, ``crop_bbox`` and ``label_names``.
    """
    shp = tuple(int(s) for s in np.asarray(shape).ravel()) if np.ndim(shape) else ()
    if len(shp) != 3 or any(s < 8 for s in shp):
        raise ValidationError(f"`shape` must be 3 sizes (Z, Y, X), each at least 8; got {shape!r}.")
    n_labels = as_int(num_labels, name="num_labels", minimum=1)
    if n_labels > 255:
        raise ValidationError(f"`num_labels` must be at most 255 (uint8 labels); got {n_labels}.")
    sp = as_spacing(spacing, ndim=3, name="spacing")
    seed_ = as_int(seed, name="seed", minimum=0)
    rng = np.random.default_rng(seed_)
    margins = _as_margins(crop_margin, shp, rng)
    dirs = _as_direction(direction)
    flips = [dirs[8] < 0, dirs[4] < 0, dirs[0] < 0]  # array axes z, y, x
    # build in the canonical orientation (x to patient left, y posterior, z superior); flip at the end
    canon_margins = [m[::-1] if f else m for m, f in zip(margins, flips, strict=True)]
    box = tuple((m[0], s - m[1]) for m, s in zip(canon_margins, shp, strict=True))
    if any(hi - lo < 4 for lo, hi in box):
        raise ValidationError(
            f"`crop_margin` {margins} leaves less than 4 voxels along some axis of shape {shp}; "
            "use smaller margins."
        )
    labels, image = _draw_phantom(shp, box, sp, n_labels, rng)
    for axis, flip in enumerate(flips):
        if flip:
            labels, image = np.flip(labels, axis), np.flip(image, axis)
            box = tuple((s - hi, s - lo) if a == axis else (lo, hi)
                        for a, ((lo, hi), s) in enumerate(zip(box, shp, strict=True)))
    extent = np.array([(s - 1) * v for s, v in zip(shp[::-1], sp[::-1], strict=True)])  # x, y, z
    origin = -(np.asarray(dirs).reshape(3, 3) @ extent) / 2.0
    geometry = Geometry(shp, sp, tuple(float(v) for v in origin), dirs)
    names = ORGAN_NAMES[:n_labels] + tuple(f"structure_{i}" for i in range(len(ORGAN_NAMES) + 1, n_labels + 1))
    return Phantom(
        labels=np.ascontiguousarray(labels), image=np.ascontiguousarray(image), geometry=geometry,
        crop_bbox=box, label_names=names, seed=seed_,
    )


def _draw_phantom(
    shape: tuple[int, ...], box: tuple[tuple[int, int], ...], spacing: tuple[float, ...], num_labels: int,
    rng: np.random.Generator,
) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    from scipy import ndimage

    sz, sy, sx = spacing
    (z0, z1), (y0, y1), (x0, x1) = box
    # body frame in mm (array-index * spacing coordinates)
    cx, cy, cz = (x0 + x1 - 1) / 2 * sx, (y0 + y1 - 1) / 2 * sy, (z0 + z1 - 1) / 2 * sz
    half_x, half_y, half_z = (x1 - x0) / 2 * sx, (y1 - y0) / 2 * sy, (z1 - z0) / 2 * sz
    body_u, body_v, body_w = 0.92 * half_x, 0.80 * half_y, half_z
    scale = np.array([body_u / _BODY_MM[0], body_v / _BODY_MM[1], body_w / _BODY_MM[2]])

    labels = np.zeros(shape, dtype=np.uint8)
    (np.arange(z0, z1) * sz)[:, None, None]
    yy = (np.arange(y0, y1) * sy)[None, :, None]
    xx = (np.arange(x0, x1) * sx)[None, None, :]
    rho_body = np.sqrt(((xx - cx) / body_u) ** 2 + ((yy - cy) / body_v) ** 2)  # (1, Y, X)
    body = np.broadcast_to(rho_body < 1.0, (z1 - z0, y1 - y0, x1 - x0))

    def to_mm(u: float, v: float, w: float) -> NDArray[np.float64]:
        return np.array([cx + u * body_u, cy + v * body_v, cz + w * body_w])

    hu = np.full(256, _HU_EXTRA, dtype=np.float32)
    hu[0] = _HU_TISSUE
    centers: dict[int, NDArray[np.float64]] = {}  # label -> (x, y, z) mm, to re-seed a vanished label
    for organ in _ORGANS:
        if organ.label > num_labels:
            continue
        jitter = rng.normal(0.0, 0.03, size=3)
        size = np.asarray(organ.semi_mm, dtype=np.float64) * scale * rng.uniform(0.9, 1.1)
        center = to_mm(*(np.asarray(organ.center) + jitter))
        hu[organ.label] = organ.hu
        if organ.kind == "tube":
            w_lo, w_hi = sorted(organ.z_range)
            zr = (cz + w_lo * body_w, cz + w_hi * body_w)
            centers[organ.label] = np.array([center[0], center[1], (zr[0] + zr[1]) / 2])
            _paint_tube(labels, organ.label, center, size[:2], zr,
                        np.asarray(organ.drift) * [body_u, body_v], body_w, cz, spacing, rng)
        else:
            centers[organ.label] = center
            _paint_ellipsoid(labels, organ.label, center, size, math.radians(organ.tilt_deg), spacing, rng)
    for lab in range(len(ORGAN_NAMES) + 1, num_labels + 1):
        centers[lab] = _paint_extra(labels, lab, box, scale, (cx, cy, cz), (body_u, body_v, body_w),
                                    spacing, rng)
    inner = labels[z0:z1, y0:y1, x0:x1].copy()  # organs end at the scanned region and at the body
    labels[...] = 0
    labels[z0:z1, y0:y1, x0:x1] = inner
    inner = labels[z0:z1, y0:y1, x0:x1]
    inner[~body] = 0
    # every organ one 6-connected component (overlaps may have cut off bits), and present
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = labels[sl] == lab
        comp, n = ndimage.label(mask)
        if n > 1:
            sizes = np.bincount(comp.ravel())[1:]
            labels[sl][mask & (comp != int(np.argmax(sizes)) + 1)] = 0
    # a label that vanished (tiny volume, overlaps) gets the free body voxel nearest to its center
    present = np.zeros(256, dtype=bool)
    present[np.unique(labels)] = True
    for lab in range(1, num_labels + 1):
        if present[lab]:
            continue
        free = np.argwhere((inner == 0) & body)
        if free.size == 0:
            break
        target = centers[lab][::-1] / spacing - [z0, y0, x0]
        pick = free[int(np.argmin(((free - target) ** 2).sum(axis=1)))]
        inner[tuple(pick)] = lab

    image = np.zeros(shape, dtype=np.float32)
    img = image[z0:z1, y0:y1, x0:x1]
    img[...] = _HU_AIR
    img[body] = _HU_TISSUE
    img[np.broadcast_to((rho_body > 0.9) & (rho_body < 1.0), img.shape)] = _HU_FAT
    spine = np.sqrt(((xx - cx) / (22 * scale[0])) ** 2 + ((yy - (cy + 0.72 * body_v)) / (22 * scale[1])) ** 2)
    img[np.broadcast_to(spine < 1.0, img.shape) & (inner == 0)] = _HU_BONE
    fg = inner > 0
    img[fg] = hu[inner[fg]]
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(_NOISE_HU)
    np.round(img, out=img)
    img[img == 0] = 1.0  # the scanned region is nonzero everywhere, as on a real scan with padding
    return labels, image


def _bbox(lo_mm: NDArray[np.float64], hi_mm: NDArray[np.float64], spacing: tuple[float, ...],
          shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """Voxel slices (z, y, x) covering the (x, y, z) mm box, clipped to the volume; None if empty."""
    lo = np.floor(lo_mm[::-1] / spacing).astype(int)
    hi = np.ceil(hi_mm[::-1] / spacing).astype(int) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, shape)
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _grid(sl: tuple[slice, ...], spacing: tuple[float, ...]) -> tuple[NDArray[np.float64], ...]:
    """Open (z, y, x) mm coordinate grids of a region."""
    return tuple(np.arange(s.start, s.stop, dtype=np.float64).reshape(
        [-1 if a == i else 1 for a in range(3)]) * spacing[i] for i, s in enumerate(sl))


def _paint_ellipsoid(labels: NDArray[np.uint8], label: int, center: NDArray[np.float64],
                     semi: NDArray[np.float64], tilt: float, spacing: tuple[float, ...],
                     rng: np.random.Generator) -> None:
    reach = float(semi.max()) * 1.25
    sl = _bbox(center - reach, center + reach, spacing, labels.shape)
    field_rng = np.random.default_rng(rng.integers(2**63))
    if sl is None:
        return
    z, y, x = _grid(sl, spacing)
    dx, dy, dz = x - center[0], y - center[1], z - center[2]
    c, s = math.cos(tilt), math.sin(tilt)
    rx, rz = c * dx + s * dz, -s * dx + c * dz
    rho = np.sqrt((rx / semi[0]) ** 2 + (dy / semi[1]) ** 2 + (rz / semi[2]) ** 2)
    step = [max(0.6 * float(semi.min()) / v, 2.0) for v in spacing]
    rho -= 0.10 * _smooth_field(field_rng, labels.shape, sl, step)
    labels[sl][rho < 1.0] = label


def _paint_tube(labels: NDArray[np.uint8], label: int, center: NDArray[np.float64], radius: NDArray[np.float64],
                z_range: tuple[float, float], drift: NDArray[np.float64], body_w: float, cz: float,
                spacing: tuple[float, ...], rng: np.random.Generator) -> None:
    reach = float(radius.max()) * 1.3 + float(np.abs(drift).max())
    lo = np.array([center[0] - reach, center[1] - reach, z_range[0]])
    hi = np.array([center[0] + reach, center[1] + reach, z_range[1]])
    sl = _bbox(lo, hi, spacing, labels.shape)
    field_rng = np.random.default_rng(rng.integers(2**63))
    if sl is None:
        return
    z, y, x = _grid(sl, spacing)
    w = (z - cz) / body_w
    ccx, ccy = center[0] + drift[0] * w, center[1] + drift[1] * w
    rho = np.sqrt(((x - ccx) / radius[0]) ** 2 + ((y - ccy) / radius[1]) ** 2)
    step = [max(2.0 * float(radius.min()) / v, 2.0) for v in spacing]
    rho = rho - 0.08 * _smooth_field(field_rng, labels.shape, sl, step)
    inside = (rho < 1.0) & (z >= z_range[0]) & (z <= z_range[1])
    labels[sl][inside] = label


def _paint_extra(labels: NDArray[np.uint8], label: int, box: tuple[tuple[int, int], ...],
                 scale: NDArray[np.float64], center: tuple[float, float, float],
                 body_semi: tuple[float, float, float], spacing: tuple[float, ...],
                 rng: np.random.Generator) -> NDArray[np.float64]:
    semi = rng.uniform(6.0, 14.0, size=3) * scale
    for _ in range(100):  # a free spot inside the body (the last draw is kept if none is free)
        r, phi = 0.75 * math.sqrt(rng.uniform()), rng.uniform(0, 2 * math.pi)
        u, v, w = r * math.cos(phi), r * math.sin(phi), rng.uniform(-0.8, 0.8)
        c = np.array([center[0] + u * body_semi[0], center[1] + v * body_semi[1], center[2] + w * body_semi[2]])
        idx = tuple(int(np.clip(round(c[::-1][a] / spacing[a]), box[a][0], box[a][1] - 1)) for a in range(3))
        if labels[idx] == 0:
            break
    _paint_ellipsoid(labels, label, c, semi, float(rng.uniform(-0.5, 0.5)), spacing, rng)
    return c
