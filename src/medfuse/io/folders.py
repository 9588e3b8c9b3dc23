"""Prediction folders: detect the layout, list the cases, read each case in its original geometry.

Three layouts are recognised (see ``docs/formats.md``):

``"v1"``
    PaddleSeg MedicalSeg / nnU-Net v1 with ``--save_npz``: ``<case>.npz`` (key ``softmax``, float16,
    cropped to the properties' ``crop_bbox``) + ``<case>.pkl`` (+ ``<case>.nii.gz`` labels).
``"v2"``
    nnU-Net v2 with ``--save_probabilities``: ``<case>.npz`` (key ``probabilities``, full geometry) +
    ``<case>.pkl`` (+ ``<case>.nii.gz`` / ``.nrrd`` / ``.mha`` labels).
``"labels"``
    Label maps only: ``<case>.nii.gz`` (or ``.nii`` / ``.nrrd`` / ``.mha``).

Files that are not cases are ignored: hidden and temporary files, ``*.json`` (``postprocessing.json``,
``summary.json``, ``fusion.json``, nnU-Net v2's ``dataset.json`` / ``plans.json`` / ...), and ``.pkl`` files
without an ``.npz`` beside them (the copied ``nnUNetPlans*.pkl``). Sub-folders are not entered.

Each case is read by a :class:`~medfuse.io.sources.CaseSource` (:mod:`.sources`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .._core.atomic import is_temporary
from ..errors import CaseMismatchError, FormatError
from .labelmaps import label_map_from_file
from .nifti import IMAGE_ENDINGS
from .npz import npz_keys
from .sources import CaseSource, Layout, check_same_geometry

# label_map_from_file and check_same_geometry: importable from here as in earlier releases
__all__ = ["CaseSource", "Layout", "PredictionFolder", "check_same_geometry", "label_map_from_file", "open_folder"]

#: Suffixes of partial downloads / editor backups, never cases.
_JUNK_SUFFIXES = (".tmp", ".part", ".partial", ".swp", "~")


def _classify(name: str) -> tuple[str, str] | None:
    """``(case, kind)`` for a case file name (kind: "npz", "pkl" or the image ending), else None."""
    if name.startswith(".") or is_temporary(name) or name.endswith(_JUNK_SUFFIXES):
        return None
    for ending in IMAGE_ENDINGS:  # ".nii.gz" is tried before ".nii"
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)], ending
    for ending in (".npz", ".pkl"):
        if name.endswith(ending) and len(name) > len(ending):
            return name[: -len(ending)], ending[1:]
    return None


def _summary(names: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


class PredictionFolder:
    """A folder of one model's (or one ensemble's) predictions, one set of files per case.

    Create it with :func:`open_folder`. Iterating yields the case names (sorted).

    Attributes
    ----------
    path : pathlib.Path
        The folder.
    layout : {"v1", "v2", "labels"}
        What the folder holds.
    cases : tuple of str
        Sorted case names.
    regions_class_order : tuple of int or None
        For a region-based nnU-Net v2 model (from the folder's ``dataset.json``): the label each
        probability channel (a sigmoid region, not a softmax class) is painted with when it exceeds 0.5,
        in this order. ``None`` for ordinary (softmax) models.
    """

    def __init__(self, path: Path, layout: Layout, files: Mapping[str, Mapping[str, Path]], *,
                 regions_class_order: tuple[int, ...] | None = None) -> None:
        self.path = path
        self.layout: Layout = layout
        self._files = {name: dict(f) for name, f in files.items()}
        self.cases: tuple[str, ...] = tuple(sorted(self._files))
        self.regions_class_order = regions_class_order
        self._sources: dict[str, CaseSource] = {}

    def subset(self, cases: Sequence[str]) -> PredictionFolder:
        """The same folder restricted to ``cases``, without scanning it again (small and picklable: it is
        what folder jobs send to their workers)."""
        missing = [c for c in cases if c not in self._files]
        if missing:
            raise CaseMismatchError(f"prediction folder {self.path} has no case {missing[:10]}.")
        return PredictionFolder(self.path, self.layout, {c: self._files[c] for c in cases},
                                regions_class_order=self.regions_class_order)

    def case(self, name: str) -> CaseSource:
        """The :class:`CaseSource` of case ``name``.

        Raises
        ------
        CaseMismatchError
            The folder has no such case.
        """
        src = self._sources.get(name)
        if src is None:
            files = self._files.get(name)
            if files is None:
                raise CaseMismatchError(
                    f"folder {self.path} has no case {name!r}; it has {len(self.cases)} cases "
                    f"({_summary(self.cases)})."
                )
            src = CaseSource(self, name, npz=files.get("npz"), pkl=files.get("pkl"), labels=files.get("image"))
            self._sources[name] = src
        return src

    __getitem__ = case

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.cases)

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def __repr__(self) -> str:
        return f"PredictionFolder({str(self.path)!r}, layout={self.layout!r}, cases={len(self.cases)})"


def _read_regions(path: Path) -> tuple[int, ...] | None:
    """``regions_class_order`` of a region-based nnU-Net v2 ``dataset.json`` (None when not region-based)."""
    dataset = path / "dataset.json"
    if not dataset.is_file():
        return None
    try:
        content = json.loads(dataset.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FormatError(f"{dataset} is not valid JSON ({exc}).") from exc
    labels = content.get("labels") if isinstance(content, dict) else None
    if not isinstance(labels, dict):
        return None
    if not any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values()):
        return None
    order = content.get("regions_class_order")
    if not isinstance(order, list):
        raise FormatError(f"{dataset} defines regions but no `regions_class_order` list.")
    return tuple(int(v) for v in order)


def open_folder(path: str | os.PathLike[str] | PredictionFolder) -> PredictionFolder:
    """Open a prediction folder and detect its layout (``"v1"``, ``"v2"`` or ``"labels"``).

    Only names and zip directories are read here (each ``.npz``'s directory tells v1 ``softmax`` from v2
    ``probabilities``); headers and voxels are read when a case asks for them.

    Parameters
    ----------
    path : path-like or PredictionFolder
        The folder (a :class:`PredictionFolder` is returned as is).

    Raises
    ------
    FormatError
        The folder does not exist, holds nothing usable, mixes layouts (v1 and v2 npz files, or label-only
        cases beside probability cases), or has an ``.npz`` without its ``.pkl``; the message names the
        folder and what was found.
    """
    if isinstance(path, PredictionFolder):
        return path
    folder = Path(path)
    if not folder.is_dir():
        raise FormatError(f"prediction folder {folder} does not exist or is not a folder.")
    found: dict[str, dict[str, Path]] = {}
    ignored: list[str] = []
    subfolders: list[str] = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if entry.is_dir():
            if not entry.name.startswith("."):
                subfolders.append(entry.name + "/")
            continue
        parsed = _classify(entry.name)
        if parsed is None:
            ignored.append(entry.name)
            continue
        case, kind = parsed
        slot = "image" if kind not in ("npz", "pkl") else kind
        if slot in found.get(case, {}):
            raise FormatError(
                f"folder {folder} has two label files for case {case!r}: {found[case][slot].name} and "
                f"{entry.name}; keep one."
            )
        found.setdefault(case, {})[slot] = Path(entry.path)

    npz_cases = {c: f for c, f in found.items() if "npz" in f}
    orphan_pkls = [f["pkl"].name for c, f in found.items() if "pkl" in f and "npz" not in f]
    image_only = sorted(c for c, f in found.items() if "image" in f and "npz" not in f)

    if not npz_cases and not image_only:
        what = []
        if ignored or orphan_pkls:
            what.append(f"only files that are not cases ({_summary(ignored + orphan_pkls)})")
        if subfolders:
            what.append(f"sub-folders {_summary(subfolders)} (point medfuse at one of them)")
        raise FormatError(
            f"folder {folder} holds no prediction cases (no <case>.npz + <case>.pkl, no <case>.nii.gz); "
            f"found {' and '.join(what) if what else 'nothing at all'}."
        )

    if not npz_cases:
        files = {c: {"image": found[c]["image"]} for c in image_only}
        return PredictionFolder(folder, "labels", files)

    without_pkl = sorted(c for c, f in npz_cases.items() if "pkl" not in f)
    if without_pkl:
        raise FormatError(
            f"folder {folder}: {len(without_pkl)} npz files have no properties .pkl beside them "
            f"({_summary([c + '.npz' for c in without_pkl])}); the .pkl holds the geometry and crop box. "
            "Copy the .pkl files back (the model writes both with --save_npz / --save_probabilities)."
        )
    kinds: dict[str, list[str]] = {}
    for case, f in npz_cases.items():
        keys = npz_keys(f["npz"])
        npz_layout = "v1" if "softmax" in keys else "v2" if "probabilities" in keys else None
        if npz_layout is None:
            raise FormatError(
                f"{f['npz']} holds arrays {list(keys)}; expected 'softmax' (PaddleSeg MedicalSeg / nnU-Net v1) "
                "or 'probabilities' (nnU-Net v2)."
            )
        kinds.setdefault(npz_layout, []).append(case)
    if len(kinds) > 1:
        raise FormatError(
            f"folder {folder} mixes layouts: {len(kinds['v1'])} v1 npz files with 'softmax' "
            f"({_summary(kinds['v1'])}) and {len(kinds['v2'])} v2 npz files with 'probabilities' "
            f"({_summary(kinds['v2'])}). Put each model's predictions in its own folder."
        )
    if image_only:
        raise FormatError(
            f"folder {folder} mixes layouts: {len(npz_cases)} cases with probabilities (npz + pkl) and "
            f"{len(image_only)} label-only cases ({_summary(image_only)}). Re-run those cases with "
            "--save_npz, or move the label maps to their own folder."
        )
    layout: Layout = "v1" if "v1" in kinds else "v2"
    regions = _read_regions(folder) if layout == "v2" else None
    return PredictionFolder(folder, layout, npz_cases, regions_class_order=regions)
