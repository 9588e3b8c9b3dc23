"""Image geometry: the grid a volume lives on, and crop-box paste/crop.

Conventions
-----------
Arrays are in SimpleITK array order ``(z, y, x)``. :class:`Geometry` keeps ``shape`` and ``spacing`` in
that array order, and ``origin`` and ``direction`` in ITK's physical order ``(x, y, z)`` (``direction`` is
the row-major 3x3 matrix as a 9-tuple, exactly as ``SimpleITK.Image.GetDirection()`` returns it), because
that is how the models' properties files store them (``itk_origin``, ``itk_direction``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .errors import GeometryMismatchError, ValidationError

__all__ = ["Geometry", "crop_to_box", "outside_box", "paste_into_box", "union_box", "validate_box"]

#: ITK's default tolerances (``itk::ImageToImageFilter`` global defaults): coordinate tolerance relative to
#: the spacing, direction tolerance absolute.
COORDINATE_TOLERANCE = 1e-6
DIRECTION_TOLERANCE = 1e-6

Box = tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Geometry:
    """Where a volume's voxels are in space.

    Two axis orders, on purpose: the fields that describe the ARRAY follow numpy / SimpleITK array order
    ``(z, y, x)``; the fields that describe PHYSICAL SPACE follow ITK's order ``(x, y, z)``, exactly as
    SimpleITK and the models' properties files (``itk_origin``, ``itk_direction``) give them. For a CT of
    107 slices of 768 x 768 voxels:

    - ``shape``, array order ``(z, y, x)``: ``(107, 768, 768)``, equal to ``array.shape``;
    - ``spacing``, array order ``(z, y, x)``: ``(5.0, 0.583, 0.583)``, slice thickness first (like the
      properties' ``original_spacing``);
    - ``origin``, ITK order ``(x, y, z)``: ``image.GetOrigin()``, the properties' ``itk_origin``;
    - ``direction``, ITK order: ``image.GetDirection()``, the properties' ``itk_direction``; the row-major
      3x3 matrix whose column ``j`` is the physical direction of ITK index axis ``j`` (``x``, ``y``, ``z``).

    ``itk_spacing`` and ``itk_size`` give spacing and shape in ITK order (``image.GetSpacing()``,
    ``image.GetSize()``). The voxel ``array[k, j, i]`` sits at the physical point
    ``origin + D @ (itk_spacing * (i, j, k))``, with ``D = np.reshape(direction, (3, 3))``: note the index
    reversal. :meth:`from_sitk` and :meth:`apply_to_sitk` convert; nothing else needs to.

    Attributes
    ----------
    shape : tuple of int
        Array shape, ``(Z, Y, X)`` (array order).
    spacing : tuple of float
        Voxel size in mm, array order ``(z, y, x)``; ``itk_spacing`` is the reverse.
    origin : tuple of float
        Physical position in mm of voxel ``array[0, 0, 0]``, ITK order ``(x, y, z)``.
    direction : tuple of float
        Direction cosines, the row-major 3x3 matrix of ITK order as a 9-tuple (identity for most CTs; the
        competition's real case has ``(1, 0, 0, 0, -1, 0, 0, 0, 1)``).
    """

    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def __post_init__(self) -> None:
        nd = len(self.shape)
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "spacing", tuple(float(s) for s in self.spacing))
        object.__setattr__(self, "origin", tuple(float(s) for s in self.origin))
        object.__setattr__(self, "direction", tuple(float(s) for s in self.direction))
        if len(self.spacing) != nd or len(self.origin) != nd or len(self.direction) != nd * nd:
            raise ValidationError(
                f"Geometry needs shape, spacing and origin of one length and direction of its square; got "
                f"shape={self.shape}, spacing={self.spacing}, origin={self.origin}, direction={self.direction}."
            )
        if any(s < 0 for s in self.shape) or any(not (s > 0) for s in self.spacing):
            raise ValidationError(
                f"Geometry needs a non-negative shape and positive spacing; got shape={self.shape}, "
                f"spacing={self.spacing}."
            )

    @classmethod
    def default(cls, shape: Sequence[int], spacing: Sequence[float] | None = None) -> Geometry:
        """Identity direction, zero origin, unit (or given) spacing."""
        nd = len(shape)
        sp = tuple(spacing) if spacing is not None else (1.0,) * nd
        return cls(tuple(shape), tuple(sp), (0.0,) * nd, tuple(np.eye(nd).ravel().tolist()))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def itk_spacing(self) -> tuple[float, ...]:
        """Spacing in ITK order ``(x, y, z)``."""
        return tuple(reversed(self.spacing))

    @property
    def itk_size(self) -> tuple[int, ...]:
        """Size in ITK order ``(x, y, z)``."""
        return tuple(reversed(self.shape))

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @classmethod
    def from_sitk(cls, image: Any) -> Geometry:
        """Geometry of a ``SimpleITK.Image``."""
        return cls(
            shape=tuple(reversed(image.GetSize())),
            spacing=tuple(reversed(image.GetSpacing())),
            origin=tuple(image.GetOrigin()),
            direction=tuple(image.GetDirection()),
        )

    def apply_to_sitk(self, image: Any) -> None:
        """Set spacing, origin and direction on a ``SimpleITK.Image`` whose size matches ``shape``."""
        if tuple(image.GetSize()) != self.itk_size:
            raise GeometryMismatchError(
                f"image size {tuple(image.GetSize())} (x, y, z) does not match the geometry's "
                f"{self.itk_size}; the array must have shape {self.shape}."
            )
        image.SetSpacing(self.itk_spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)

    def differences(
        self, other: Geometry, *, coordinate_tolerance: float = COORDINATE_TOLERANCE,
        direction_tolerance: float = DIRECTION_TOLERANCE,
    ) -> list[str]:
        """Names and values of the fields that differ beyond ITK-like tolerances (empty list if equal).

        Spacing and origin are compared with a tolerance of ``coordinate_tolerance`` times the largest
        spacing (as ITK does); direction with ``direction_tolerance`` absolute.
        """
        out: list[str] = []
        if self.shape != other.shape:
            return [f"shape {self.shape} != {other.shape}"]
        tol = coordinate_tolerance * max(max(self.spacing, default=1.0), 1e-12)
        if not np.allclose(self.spacing, other.spacing, rtol=0, atol=tol):
            out.append(f"spacing {self.spacing} != {other.spacing}")
        if not np.allclose(self.origin, other.origin, rtol=0, atol=tol):
            out.append(f"origin {self.origin} != {other.origin}")
        if not np.allclose(self.direction, other.direction, rtol=0, atol=direction_tolerance):
            out.append(f"direction {self.direction} != {other.direction}")
        return out

    def matches(self, other: Geometry, **tolerances: float) -> bool:
        """Whether :meth:`differences` is empty."""
        return not self.differences(other, **tolerances)

    def to_dict(self) -> dict[str, list[float] | list[int]]:
        return {"shape": list(self.shape), "spacing": list(self.spacing), "origin": list(self.origin),
                "direction": list(self.direction)}


def validate_box(box: Sequence[Sequence[int]], shape: Sequence[int], *, name: str = "crop_bbox") -> Box:
    """A half-open box ``[[z0, z1], [y0, y1], [x0, x1]]`` checked to lie inside ``shape``."""
    try:
        b = tuple((int(lo), int(hi)) for lo, hi in box)
    except (TypeError, ValueError):
        raise ValidationError(f"`{name}` must be a sequence of [start, stop] pairs; got {box!r}.") from None
    if len(b) != len(shape) or any(not (0 <= lo <= hi <= s) for (lo, hi), s in zip(b, shape, strict=True)):
        raise ValidationError(
            f"`{name}` must be {len(shape)} half-open [start, stop] pairs inside shape {tuple(shape)}; "
            f"got {[list(p) for p in b]}."
        )
    return b


def crop_to_box(volume: NDArray[Any], box: Sequence[Sequence[int]]) -> NDArray[Any]:
    """View of the trailing spatial axes of ``volume`` cut to ``box`` (leading channel axes kept)."""
    nd = len(box)
    b = validate_box(box, volume.shape[volume.ndim - nd:])
    index: tuple[Any, ...] = (Ellipsis, *(slice(lo, hi) for lo, hi in b))
    cropped: NDArray[Any] = volume[index]
    return cropped


def paste_into_box(
    cropped: NDArray[Any], box: Sequence[Sequence[int]], full_shape: Sequence[int], *,
    fill: float | Sequence[float] = 0, out: NDArray[Any] | None = None,
) -> NDArray[Any]:
    """Paste ``cropped`` (``(..., *box sizes)``) into a new array of spatial shape ``full_shape``.

    ``fill`` is the value outside the box; for a ``(C, ...)`` probability array a per-channel sequence may
    be given (e.g. ``[1, 0, 0, ...]``: background outside the crop box).
    """
    nd = len(full_shape)
    b = validate_box(box, full_shape)
    sizes = tuple(hi - lo for lo, hi in b)
    if cropped.shape[cropped.ndim - nd:] != sizes:
        raise GeometryMismatchError(
            f"the cropped array's spatial shape {cropped.shape[cropped.ndim - nd:]} must equal the crop box "
            f"size {sizes} (box {[list(p) for p in b]}); the file and its properties do not belong together."
        )
    lead = cropped.shape[: cropped.ndim - nd]
    if out is None:
        out = np.empty((*lead, *full_shape), dtype=cropped.dtype)
    fills = np.asarray(fill, dtype=out.dtype)
    if fills.ndim == 0:
        out[...] = fills
    else:
        if fills.shape != lead[-1:]:
            raise ValidationError(f"`fill` must have one value per channel ({lead[-1:]}); got {fills.shape}.")
        out[...] = fills.reshape(fills.shape + (1,) * nd)
    index: tuple[Any, ...] = (Ellipsis, *(slice(lo, hi) for lo, hi in b))
    out[index] = cropped
    return out


def union_box(boxes: Sequence[Box]) -> Box:
    """Smallest box holding every box of a non-empty sequence."""
    return tuple((min(b[a][0] for b in boxes), max(b[a][1] for b in boxes)) for a in range(len(boxes[0])))


def outside_box(shape: Sequence[int], box: Box) -> list[tuple[slice, ...]]:
    """Disjoint slices covering ``shape`` minus ``box``, each voxel exactly once (at most two per axis)."""
    out: list[tuple[slice, ...]] = []
    for a, (lo, hi) in enumerate(box):
        prefix = tuple(slice(b0, b1) for b0, b1 in box[:a])
        if lo > 0:
            out.append((*prefix, slice(0, lo)))
        if hi < shape[a]:
            out.append((*prefix, slice(hi, None)))
    return out
