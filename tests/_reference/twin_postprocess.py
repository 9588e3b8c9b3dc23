"""Slow, obviously-correct twins of medfuse.postprocess, written from nnU-Net v1's documented behaviour.

- one ``scipy.ndimage.label`` call per entry over the whole volume, object sizes as voxel count x voxel
  volume, every object whose size differs from the maximum removed (unless a minimum size spares it);
- ``determine_postprocessing`` literally: build the postprocessed maps of every case for each stage, score
  them, decide — several passes, everything kept in memory.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

RANK = {6: 1, 18: 2, 26: 3}


def voxel_volume(spacing_zyx: Sequence[float]) -> float:
    return float(np.prod(np.asarray(spacing_zyx[::-1], dtype=np.float64)))


def remove_all_but_largest(
    image: np.ndarray, entries: Sequence[Any], volume_per_voxel: float,
    min_sizes: dict[Any, float] | None = None, connectivity: int = 6,
) -> tuple[np.ndarray, dict[Any, float | None]]:
    """(processed copy, size in mm³ of the kept largest object per entry or None)."""
    image = image.copy()
    structure = ndimage.generate_binary_structure(3, RANK[connectivity])
    kept: dict[Any, float | None] = {}
    for entry in entries:
        key = tuple(entry) if isinstance(entry, (list, tuple)) else int(entry)
        members = key if isinstance(key, tuple) else (key,)
        mask = np.zeros(image.shape, dtype=bool)
        for label in members:
            mask |= image == label
        objects, n = ndimage.label(mask, structure=structure)
        sizes = {i: float(np.sum(objects == i)) * volume_per_voxel for i in range(1, n + 1)}
        kept[key] = max(sizes.values()) if sizes else None
        for i, size in sizes.items():
            if size == kept[key]:
                continue
            remove = True
            if min_sizes is not None:
                remove = size < min_sizes[key]
            if remove:
                image[(objects == i) & mask] = 0
    return image, kept


def dice_per_label(reference: np.ndarray, prediction: np.ndarray, labels: Sequence[int]) -> np.ndarray:
    out = []
    for c in labels:
        r, p = reference == c, prediction == c
        tp, fp, fn = np.sum(r & p), np.sum(~r & p), np.sum(r & ~p)
        out.append(np.nan if tp + fp + fn == 0 else 2.0 * tp / (2 * tp + fp + fn))
    return np.array(out, dtype=np.float64)


def _mean(per_case: list[np.ndarray]) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan columns: nan
        return np.nanmean(np.vstack(per_case), axis=0)


def _min_kept(kept_per_case: list[dict[Any, float | None]]) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for kept in kept_per_case:
        for key, size in kept.items():
            if size is not None:
                out[key] = size if key not in out else min(out[key], size)
    return out


def determine_postprocessing(
    cases: Sequence[tuple[np.ndarray, np.ndarray, Sequence[float]]], num_classes: int, *,
    connectivity: int = 6, advanced: bool = False, dice_threshold: float = 0.0,
) -> dict[str, Any]:
    classes = list(range(1, num_classes))
    vols = [voxel_volume(sp) for _, _, sp in cases]
    raw = _mean([dice_per_label(r, p, classes) for r, p, _ in cases])
    result: dict[str, Any] = {"for_which_classes": [], "min_valid_object_sizes": {},
                              "dc_per_class_pp_per_class": {}}

    fg_min = None
    if advanced:
        fg_min = _min_kept([remove_all_but_largest(p, [classes], v, None, connectivity)[1]
                            for (_, p, _), v in zip(cases, vols, strict=True)])
    merged = [remove_all_but_largest(p, [classes], v, fg_min, connectivity)[0]
              for (_, p, _), v in zip(cases, vols, strict=True)]
    pp_all = _mean([dice_per_label(r, m, classes) for (r, _, _), m in zip(cases, merged, strict=True)])
    do_fg = False
    improved = any(pp_all[i] > raw[i] + dice_threshold for i in range(len(classes)))
    if improved and not any(pp_all[i] < raw[i] for i in range(len(classes))):
        do_fg = True
        result["for_which_classes"].append(classes)
        if fg_min is not None:
            result["min_valid_object_sizes"].update(fg_min)
    if len(classes) > 1:
        source = merged if do_fg else [p for _, p, _ in cases]
        class_min = None
        if advanced:
            class_min = _min_kept([remove_all_but_largest(s, classes, v, None, connectivity)[1]
                                   for s, v in zip(source, vols, strict=True)])
        final = [remove_all_but_largest(s, classes, v, class_min, connectivity)[0]
                 for s, v in zip(source, vols, strict=True)]
        after = _mean([dice_per_label(r, f, classes) for (r, _, _), f in zip(cases, final, strict=True)])
        before = pp_all if do_fg else raw
        for i, c in enumerate(classes):
            result["dc_per_class_pp_per_class"][c] = float(after[i])
            if after[i] > before[i] + dice_threshold:
                result["for_which_classes"].append(c)
                if class_min is not None:
                    result["min_valid_object_sizes"][c] = class_min[c]
    if not advanced:
        result["min_valid_object_sizes"] = None
    result["dc_per_class_raw"] = {c: float(raw[i]) for i, c in enumerate(classes)}
    result["dc_per_class_pp_all"] = {c: float(pp_all[i]) for i, c in enumerate(classes)}
    result["num_samples"] = len(cases)
    return result
