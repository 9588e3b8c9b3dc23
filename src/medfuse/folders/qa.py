"""QA in folder fusion: one case's uncertainty maps in the original geometry, its QA row, qa.csv / qa.json.

:func:`medfuse.fuse_folders` with ``qa=True`` computes each case's
:class:`~medfuse.fusion.uncertainty.UncertaintyMaps` in the fusion pass over the fused domain (the union of
the members' crop boxes, where foreground can be). Outside that domain every member is background with
probability 1, so the maps are 0 there and every voxel counts for class 0: the QA row comes from
:func:`medfuse.quality.qa.case_qa_in_box` on the domain's labels and maps, which counts the voxels beyond as
background (and the background neighbours of the domain's faces in the boundary band), the same values as
:func:`medfuse.quality.case_qa` on the whole image, without three float32 copies of a whole CT.
:func:`write_maps` pastes the maps into the original geometry for ``save_uncertainty``.

Each case's QA row is recorded in its journal record, so a resumed run rebuilds ``qa.csv`` for every case
from the records without reading a member again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError
from ..fusion.uncertainty import UncertaintyMaps
from ..geometry import Box, Geometry, paste_into_box

__all__ = ["QA_CSV", "QA_JSON", "as_map_names", "case_files", "hard_member_maps",
           "row_from_record", "write_maps"]

QA_CSV = "qa.csv"
QA_JSON = "qa.json"


def as_map_names(save_uncertainty: Sequence[str] | str | None) -> tuple[str, ...]:
    """``save_uncertainty`` checked: names of :attr:`UncertaintyMaps.MAP_NAMES`, each once, in their order."""
    if save_uncertainty is None:
        return ()
    names = [save_uncertainty] if isinstance(save_uncertainty, str) else list(save_uncertainty)
    bad = [n for n in names if n not in UncertaintyMaps.MAP_NAMES]
    if bad:
        raise ValidationError(f"`save_uncertainty` names unknown maps {bad}; choose from "
                              f"{', '.join(UncertaintyMaps.MAP_NAMES)}.")
    return tuple(n for n in UncertaintyMaps.MAP_NAMES if n in names)


#: saved maps go to this subfolder of the output, so the output stays a folder of cases (``medfuse submit``
#: and the folder readers see only the fused label maps)
MAPS_DIR = "uncertainty"


def map_file(case: str, name: str) -> str:
    """Where a saved map lives, relative to the output folder: ``uncertainty/<case>_<map>.nii.gz``."""
    return f"{MAPS_DIR}/{case}_{name}.nii.gz"


def case_files(names: Sequence[str]) -> Any:
    """Case -> every file a case may write: the v1 files, plus the saved maps of ``names``."""
    from ..io.journal import v1_case_files

    def files(case: str) -> tuple[str, ...]:
        return (*v1_case_files(case), *(map_file(case, n) for n in names))

    return files


def hard_member_maps(members: Sequence[NDArray[Any]], fused: NDArray[Any], shares: NDArray[np.float64],
                     num_classes: int) -> UncertaintyMaps:
    """Maps of hard (label map) members in memory, for the vote and STAPLE paths.

    Kept as one small function: it is swapped for ``VoteAccumulator(uncertainty=True)`` /
    ``medfuse.fusion_uncertainty`` when those land. Members are one-hot: the weighted mean of class ``c``
    is the share of the members voting ``c``; member entropies are 0, so the mutual information is the
    entropy.
    """
    shape = fused.shape
    pbar_logp = np.zeros(shape, dtype=np.float32)
    dis = np.zeros(shape, dtype=np.float32)
    volumes = np.zeros((len(members), num_classes), dtype=np.int64)
    overlap = np.zeros((len(members), num_classes), dtype=np.int64)
    fused_flat = fused.reshape(-1).astype(np.int64)
    for c in range(num_classes):
        q = np.zeros(shape, dtype=np.float32)
        for m, lab in enumerate(members):
            q += np.float32(shares[m]) * (lab == c)
        with np.errstate(divide="ignore", invalid="ignore"):
            pbar_logp += np.where(q > 0, q * np.log(np.where(q > 0, q, 1.0)), 0.0).astype(np.float32)
    for m, lab in enumerate(members):
        flat = lab.reshape(-1).astype(np.int64)
        dis += np.float32(shares[m]) * (lab != fused)
        volumes[m] = np.bincount(flat, minlength=num_classes)[:num_classes]
        overlap[m] = np.bincount(flat[flat == fused_flat], minlength=num_classes)[:num_classes]
    entropy = np.maximum(-pbar_logp, 0.0).astype(np.float32)
    return UncertaintyMaps(entropy=entropy, mutual_information=entropy.copy(), disagreement=dis,
                           member_volumes=volumes, member_overlap=overlap,
                           fused_volumes=np.bincount(fused_flat, minlength=num_classes)[:num_classes].astype(np.int64),
                           member_shares=np.asarray(shares, dtype=np.float64))


def write_maps(output: Path, case: str, maps: UncertaintyMaps, names: Sequence[str], box: Box,
               geometry: Geometry) -> None:
    """``uncertainty/<case>_<map>.nii.gz`` (float32, the original geometry; 0 outside ``box``) for each of
    ``names``."""
    from ..io import write_nifti

    if names:
        (output / MAPS_DIR).mkdir(exist_ok=True)
    for name in names:
        full = paste_into_box(maps.map(name), box, geometry.shape, fill=0)
        write_nifti(output / map_file(case, name), full.astype(np.float32, copy=False), geometry,
                    dtype=np.float32)
        del full


def row_from_record(info: dict[str, Any]) -> Any:
    """The :class:`medfuse.quality.CaseQA` a journal record holds (``info["qa"]``), or None."""
    from ..quality import CaseQA

    data = info.get("qa")
    if not isinstance(data, dict):
        return None
    try:
        return CaseQA(case=str(data["case"]), qa_score=float(data["qa_score"]),
                      components={str(k): float(v) for k, v in data["components"].items()},
                      class_volumes={str(k): int(v) for k, v in data["class_volumes"].items()},
                      volume_cv={str(k): float(v) for k, v in data["volume_cv"].items()})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def record_of(row: Any) -> dict[str, Any]:
    """A :class:`medfuse.quality.CaseQA` as JSON-able data for the journal record (finite floats)."""
    def num(v: float) -> float:
        return float(v) if math.isfinite(v) else 0.0

    return {"case": row.case, "qa_score": num(row.qa_score),
            "components": {k: num(v) for k, v in row.components.items()},
            "class_volumes": {k: int(v) for k, v in row.class_volumes.items()},
            "volume_cv": {k: num(v) for k, v in row.volume_cv.items()}}
