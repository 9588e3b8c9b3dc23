"""Largest-connected-component postprocessing, as nnU-Net v1 / PaddleSeg MedicalSeg apply and choose it.

* :func:`keep_largest_component` — for each entry (a label, or a tuple of labels merged into one region)
  keep only its largest connected component (every component tied for largest is kept); the removed
  voxels become background (0). With ``min_valid_object_sizes`` only components smaller than the entry's
  size in mm³ are removed (the largest is always kept).
* :func:`apply_postprocessing` — the same, driven by a ``postprocessing.json`` (:class:`Postprocessing`).
* :func:`determine_postprocessing` (:mod:`.determine`) — nnU-Net's rule on validation cases.

Connectivity: nnU-Net v1 / PaddleSeg use scipy's default, 6 (face neighbours) — the default here; nnU-Net
v2 uses 26. With the optional ``connected-components-3d`` package (extra ``cc``) one labelling pass covers
every label at once; without it, scipy labels each label inside its bounding box. Both give the same
output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._core.optional import import_optional
from .._core.typing import Connectivity
from .._core.validation import as_label_map, as_spacing
from ..errors import MissingDependencyError, ValidationError
from .jsonfile import Entry, Postprocessing, entry_key, normalize_entries, parse_min_sizes

__all__ = ["apply_postprocessing", "check_connectivity", "keep_largest_component"]

_RANK = {6: 1, 18: 2, 26: 3}


def _get_cc3d() -> ModuleType | None:
    """The cc3d module, or None when it is not installed (scipy is used then)."""
    try:
        return import_optional("cc3d", purpose="fast connected components")
    except MissingDependencyError:
        return None


def check_connectivity(connectivity: object) -> int:
    """``connectivity`` as an int, checked: 6, 18 or 26 (also the check of every other room that takes it)."""
    if isinstance(connectivity, bool) or connectivity not in _RANK:
        raise ValidationError(
            f"`connectivity` must be 6 (faces, nnU-Net v1 / PaddleSeg), 18 or 26 (nnU-Net v2); got {connectivity!r}."
        )
    return int(connectivity)  # type: ignore[call-overload,unused-ignore]


def _components(volume: NDArray[Any], connectivity: int) -> tuple[NDArray[Any], int]:
    """Connected components of every nonzero value of a 3D array (different values never connect).

    Returns the component map (0 = background, components numbered 1..n without gaps) and n.
    """
    cc3d = _get_cc3d()
    if cc3d is not None:
        out, n = cc3d.connected_components(volume, connectivity=connectivity, return_N=True, out_dtype=np.uint32)
        return out, int(n)
    from scipy import ndimage

    structure = ndimage.generate_binary_structure(3, _RANK[connectivity])
    if volume.dtype == np.bool_:
        lmap, n = ndimage.label(volume, structure=structure)
        return lmap, int(n)
    out = np.zeros(volume.shape, dtype=np.uint32)
    n = 0
    if volume.size == 0:
        return out, 0
    top = int(volume.max())
    if top < 1 << 16:
        boxes = ndimage.find_objects(volume.astype(np.int32, copy=False) if volume.dtype.kind == "i" else volume)
        items = [(v, box) for v, box in enumerate(boxes, start=1) if box is not None]
    else:  # huge label values: one full-size pass per value
        items = [(int(v), tuple(slice(None) for _ in range(3))) for v in np.unique(volume[volume > 0])]
    for value, box in items:
        mask = volume[box] == value
        lmap, k = ndimage.label(mask, structure=structure)
        view = out[box]
        view[mask] = lmap[mask].astype(np.uint32) + np.uint32(n)
        n += int(k)
    return out, n


def _voxel_volume(spacing: Sequence[float]) -> float:
    # the product in ITK order (x, y, z), exactly as nnU-Net computes volume_per_voxel: kept apart from
    # medfuse.metrics.measures._voxel_volume (spacing order, and checks a spacing given without a map) on
    # purpose, so that min_valid_object_sizes compare bit for bit with nnU-Net's

    return float(np.prod(np.asarray(spacing[::-1], dtype=np.float64)))


def _drop_per_label(result: NDArray[Any], labels: Sequence[int], connectivity: int,
                    min_sizes: Mapping[int | frozenset[int], float] | None, voxel_volume: float) -> None:
    """In place: for each of ``labels`` keep its largest component(s) (and those not below the min size)."""
    flat = result.reshape(-1)
    fg = np.flatnonzero(flat != 0)
    if fg.size == 0:
        return
    values = flat[fg]
    sel = np.isin(values, np.asarray(labels))
    if not sel.any():
        return
    fg, values = fg[sel], values[sel]
    cc, n = _components(result, connectivity)
    ids = cc.reshape(-1)[fg]
    del cc
    sizes = np.bincount(ids, minlength=n + 1)
    label_of = np.zeros(n + 1, dtype=np.int64)
    label_of[ids] = values
    comps = np.flatnonzero(sizes)  # the components of the selected labels
    comp_label, comp_size = label_of[comps], sizes[comps]
    uniq, inv = np.unique(comp_label, return_inverse=True)
    best = np.zeros(uniq.size, dtype=np.int64)
    np.maximum.at(best, inv, comp_size)
    remove = comp_size != best[inv]
    if min_sizes is not None:
        threshold = np.array([min_sizes[int(u)] for u in uniq], dtype=np.float64)
        remove &= comp_size * voxel_volume < threshold[inv]
    if remove.any():
        drop = np.zeros(n + 1, dtype=bool)
        drop[comps[remove]] = True
        flat[fg[drop[ids]]] = 0


def _drop_in_region(result: NDArray[Any], labels: Sequence[int], connectivity: int,
                    min_size: float | None, voxel_volume: float) -> None:
    """In place: merge ``labels`` into one region and keep its largest component(s)."""
    flat = result.reshape(-1)
    fg = np.flatnonzero(flat != 0)
    fg = fg[np.isin(flat[fg], np.asarray(labels))]
    if fg.size == 0:
        return
    mask = np.zeros(result.shape, dtype=bool)
    mask.reshape(-1)[fg] = True
    cc, n = _components(mask, connectivity)
    del mask
    ids = cc.reshape(-1)[fg]
    del cc
    sizes = np.bincount(ids, minlength=n + 1)
    remove = sizes != sizes[1:].max()
    remove[0] = False
    if min_size is not None:
        remove &= sizes * voxel_volume < min_size
    if remove.any():
        flat[fg[remove[ids]]] = 0


def _check_labels(labels: ArrayLike, *, name: str) -> tuple[NDArray[Any], bool]:
    a = np.asarray(labels)
    was_bool = a.dtype == np.bool_
    a = as_label_map(a, name=name, ndim=3)
    if a.dtype.kind == "i" and a.size and a.min() < 0:
        raise ValidationError(f"`{name}` must hold non-negative labels; got {int(a.min())}.")
    return a, was_bool


def keep_largest_component(
    labels: ArrayLike,
    *,
    for_which_classes: Iterable[int | Sequence[int]] | None = None,
    connectivity: Connectivity = 6,
    min_valid_object_sizes: Mapping[Any, float] | str | None = None,
    spacing_mm: float | Sequence[float] | None = None,
) -> NDArray[Any]:
    """Keep only the largest connected component of each label (or merged group of labels).

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X), integer or bool
        Label map (0 = background). Not modified.
    for_which_classes : iterable of int or of sequences of int, optional
        Entries processed in order. An int ``c``: components of label ``c``. A sequence ``(a, b, ...)``:
        those labels merged into one region, whose components are found together. Default: every
        foreground label present, each on its own.
    connectivity : {6, 18, 26}
        Voxel neighbourhood: 6 (faces; nnU-Net v1 / PaddleSeg, the default), 18, or 26 (nnU-Net v2).
    min_valid_object_sizes : mapping of entry to float, or its str(), optional
        Minimum size in mm³ per entry (tuple keys for merged entries): only non-largest components smaller
        than it are removed. Needs ``spacing_mm``.
    spacing_mm : float or sequence of 3 float, optional
        Voxel size in mm ``(z, y, x)``; only used with ``min_valid_object_sizes``.

    Returns
    -------
    ndarray of shape (Z, Y, X), same dtype as ``labels``
        A new label map where removed voxels are 0. Every component tied for the largest is kept.
    """
    a, was_bool = _check_labels(labels, name="labels")
    conn = check_connectivity(connectivity)
    result = np.array(a, order="C", copy=True)
    if for_which_classes is None:
        flat = result.reshape(-1)
        entries: tuple[Entry, ...] = tuple(int(v) for v in np.unique(flat[np.flatnonzero(flat != 0)]))
    else:
        entries = normalize_entries(list(for_which_classes))
    sizes = parse_min_sizes(min_valid_object_sizes)
    lookup: dict[int | frozenset[int], float] | None = None
    vv = 1.0
    if sizes is not None:
        if spacing_mm is None:
            raise ValidationError(
                "`spacing_mm` is required with `min_valid_object_sizes` (sizes are in mm³); pass the voxel "
                "spacing (z, y, x) of `labels`."
            )
        vv = _voxel_volume(as_spacing(spacing_mm, ndim=3))
        lookup = {entry_key(k): float(v) for k, v in sizes.items()}
        missing = [e for e in entries if entry_key(e) not in lookup]
        if missing:
            raise ValidationError(
                f"`min_valid_object_sizes` has no size for {missing} of `for_which_classes`; give every entry "
                "a size."
            )
    elif spacing_mm is not None:
        as_spacing(spacing_mm, ndim=3)
    i = 0
    while i < len(entries):
        entry = entries[i]
        if isinstance(entry, tuple):
            size = None if lookup is None else lookup[entry_key(entry)]
            _drop_in_region(result, entry, conn, size, vv)
            i += 1
            continue
        batch = []  # consecutive single labels are independent: one labelling pass for all of them
        while i < len(entries) and isinstance(entries[i], int):
            batch.append(int(entries[i]))  # type: ignore[arg-type]
            i += 1
        _drop_per_label(result, batch, conn, lookup, vv)
    return result.view(np.bool_) if was_bool else result


def apply_postprocessing(
    labels: ArrayLike,
    postprocessing: Postprocessing | Mapping[str, Any] | str | Any,
    *,
    spacing_mm: float | Sequence[float] | None = None,
    connectivity: Connectivity = 6,
) -> NDArray[Any]:
    """Apply a ``postprocessing.json`` to a label map.

    Parameters
    ----------
    labels : ndarray of shape (Z, Y, X), integer or bool
        Label map; not modified.
    postprocessing : Postprocessing, path-like or dict
        What to do (:meth:`Postprocessing.read` accepts all three).
    spacing_mm : float or sequence of 3 float, optional
        Voxel size in mm ``(z, y, x)``; required when the file sets ``min_valid_object_sizes``.
    connectivity : {6, 18, 26}
        6 for nnU-Net v1 / PaddleSeg files (their scipy default), 26 to mimic nnU-Net v2.

    Returns
    -------
    ndarray of shape (Z, Y, X), same dtype as ``labels``
    """
    pp = Postprocessing.read(postprocessing)
    return keep_largest_component(
        labels, for_which_classes=pp.for_which_classes, connectivity=connectivity,
        min_valid_object_sizes=pp.min_valid_object_sizes, spacing_mm=spacing_mm,
    )
