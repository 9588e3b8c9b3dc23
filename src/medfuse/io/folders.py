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
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from numpy.typing import NDArray

from .._core.atomic import is_temporary
from .._core.validation import describe
from ..errors import CaseMismatchError, FormatError, GeometryMismatchError, ValidationError
from ..geometry import COORDINATE_TOLERANCE, DIRECTION_TOLERANCE, Box, Geometry, paste_into_box
from .labelmaps import label_map_from_file, streamed_argmax
from .nifti import IMAGE_ENDINGS, read_geometry, read_nifti
from .npz import InflateBackend, NpzMember, npz_keys, npz_member
from .pickles import load_pickle
from .v1 import v1_case_properties, v1_crop_bbox, v1_geometry
from .v2 import v2_geometry

__all__ = ["CaseSource", "Layout", "PredictionFolder", "check_same_geometry", "label_map_from_file", "open_folder"]

Layout = Literal["v1", "v2", "labels"]

#: npz member key of each probability layout.
NPZ_KEYS: dict[str, str] = {"v1": "softmax", "v2": "probabilities"}

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


class CaseSource:
    """One case of a :class:`PredictionFolder`: its files, geometry, crop box and readers.

    Everything is read lazily and cached; only headers are read until voxels are asked for.

    Attributes
    ----------
    name : str
        Case name.
    folder : PredictionFolder
        The folder the case belongs to.
    layout : {"v1", "v2", "labels"}
        The folder's layout.
    npz_path, pkl_path, label_path : pathlib.Path or None
        The case's files (``None`` when absent).
    """

    def __init__(self, folder: PredictionFolder, name: str, *, npz: Path | None, pkl: Path | None,
                 labels: Path | None) -> None:
        self.folder = folder
        self.name = name
        self.layout: Layout = folder.layout
        self.npz_path = npz
        self.pkl_path = pkl
        self.label_path = labels

    def __repr__(self) -> str:
        return f"CaseSource({self.name!r}, folder={str(self.folder.path)!r}, layout={self.layout!r})"

    # -- metadata ------------------------------------------------------------------------------------
    @property
    def has_probabilities(self) -> bool:
        """Whether the case has a probability file (v1 / v2), i.e. is a soft ensemble member."""
        return self.npz_path is not None

    @cached_property
    def properties(self) -> Mapping[str, Any]:
        """The raw properties dict of the ``.pkl`` (the first dict of a v1 ensemble list); empty when the
        case has no ``.pkl``."""
        if self.pkl_path is None:
            return {}
        obj = load_pickle(self.pkl_path)
        if self.layout == "v1":
            return v1_case_properties(obj, source=str(self.pkl_path))
        if not isinstance(obj, Mapping):
            raise FormatError(f"{self.pkl_path} holds {describe(obj)}, not a v2 (nnU-Net v2) properties dict.")
        return obj

    @cached_property
    def geometry(self) -> Geometry:
        """Full original image geometry (shape, spacing, origin, direction).

        v1: from the ``.pkl``; v2: the npz's shape with the ``.pkl``'s ``sitk_stuff``; labels: the label
        file's header. When a label file is present beside a ``.pkl`` its header must agree
        (:class:`~medfuse.errors.GeometryMismatchError` otherwise).
        """
        if self.layout == "labels":
            return read_geometry(self._label_file())
        header = read_geometry(self.label_path) if self.label_path is not None else None
        if self.layout == "v1":
            geometry = v1_geometry(self.properties, source=str(self.pkl_path))
        else:
            shape = self.npz_member().shape[1:]
            if "sitk_stuff" not in self.properties and header is not None:
                geometry = Geometry(shape, header.spacing, header.origin, header.direction)
            else:
                geometry = v2_geometry(self.properties, shape, source=str(self.pkl_path))
        if header is not None:
            diff = geometry.differences(header)
            if diff:
                raise GeometryMismatchError(
                    f"case {self.name!r} in {self.folder.path}: the properties file {self.pkl_path} and the "
                    f"label file {self.label_path} disagree: {'; '.join(diff)}. They are not of the same image."
                )
        return geometry

    @cached_property
    def crop_bbox(self) -> Box:
        """Half-open box ``((z0, z1), (y0, y1), (x0, x1))`` where the probabilities live: the properties'
        ``crop_bbox`` for v1, the full extent for v2 and label maps."""
        if self.layout == "v1":
            return v1_crop_bbox(self.properties, source=str(self.pkl_path), shape=self.geometry.shape)
        return tuple((0, int(s)) for s in self.geometry.shape)

    @property
    def num_classes(self) -> int | None:
        """Number of probability channels C (background included); ``None`` for label maps."""
        if self.npz_path is None:
            return None
        return self.npz_member().shape[0]

    def npz_member(self) -> NpzMember:
        """The probability array's :class:`~medfuse.io.npz.NpzMember`, checked against the geometry."""
        member: NpzMember | None = self.__dict__.get("_member")
        if member is not None:
            return member
        if self.npz_path is None:
            raise FormatError(
                f"case {self.name!r} in {self.folder.path} has no probabilities (label map only); "
                "use read_labels(), or fuse it as a hard member."
            )
        member = npz_member(self.npz_path, NPZ_KEYS[self.layout])
        if member.dtype.kind != "f" or len(member.shape) < 2 or member.shape[0] < 1:
            raise FormatError(
                f"{self.npz_path}: {member.key!r} must be floating probabilities of shape (C, Z, Y, X); "
                f"got shape {member.shape} and dtype {member.dtype}."
            )
        self.__dict__["_member"] = member
        if self.layout == "v1":
            box = self.crop_bbox
            sizes = tuple(hi - lo for lo, hi in box)
            if member.shape[1:] != sizes:
                del self.__dict__["_member"]
                raise GeometryMismatchError(
                    f"{self.npz_path}: the {member.key!r} array has spatial shape {member.shape[1:]} but the "
                    f"crop box {[list(p) for p in box]} of {self.pkl_path} has size {sizes} (full image "
                    f"{self.geometry.shape}). The npz and the pkl do not belong together."
                )
        return member

    def check(self) -> None:
        """Verify everything that can be verified without reading voxels (headers, geometry, crop box).

        Raises
        ------
        FormatError, GeometryMismatchError, UnsafePickleError
            Whatever is wrong with the case's files.
        """
        _ = self.geometry
        _ = self.crop_bbox
        if self.npz_path is not None:
            self.npz_member()

    # -- voxels --------------------------------------------------------------------------------------
    def read_probabilities(self, *, full: bool = False, backend: InflateBackend = "auto") -> NDArray[Any]:
        """Class probabilities of the case.

        Parameters
        ----------
        full : bool, default False
            False: the stored array, ``(C, *crop box sizes)`` for v1 (use :attr:`crop_bbox` to place it).
            True: pasted into the full image, ``(C, Z, Y, X)``, background (channel 0 = 1, others 0)
            outside the crop box.
        backend : {"auto", "isal", "zlib-ng", "zlib"}, default "auto"
            Inflate library (see :mod:`medfuse.io.npz`).

        Returns
        -------
        ndarray of shape (C, *crop box sizes) or (C, Z, Y, X)
            The stored dtype: float16 for v1, usually float32 for v2.
        """
        member = self.npz_member()
        cropped = member.read(backend=backend)
        if not full or self.layout != "v1":
            return cropped
        fill = [1.0] + [0.0] * (member.shape[0] - 1)
        return paste_into_box(cropped, self.crop_bbox, self.geometry.shape, fill=fill)

    def iter_channels(self, *, out: NDArray[Any] | None = None, backend: InflateBackend = "auto"
                      ) -> Iterator[tuple[int, NDArray[Any]]]:
        """Yield ``(c, channel)`` for each class, streamed from the npz one channel at a time.

        Each channel has the crop box's shape (v1) or the full shape (v2): place it with
        :attr:`crop_bbox`. Each channel is a new array (safe with read-ahead consumers), unless ``out``
        (C-contiguous, the channel's shape and the stored dtype) is given: then ``out`` is refilled for
        every channel and must be consumed before advancing. Memory is one channel (per channel held).

        Parameters
        ----------
        out : ndarray, optional
            Buffer to reuse for every channel.
        backend : {"auto", "isal", "zlib-ng", "zlib"}, default "auto"
            Inflate library (see :mod:`medfuse.io.npz`).

        Yields
        ------
        c : int
            Class index, ``0 .. C - 1``.
        channel : ndarray of shape (*crop box sizes)
            Probabilities of class ``c`` (float16 for v1).
        """
        return self.npz_member().iter_channels(out=out, backend=backend)

    def read_labels(self) -> NDArray[Any]:
        """The full-size label map, uint8 (uint16 above 255 labels).

        Read from the label file when there is one (for v1 that file may be postprocessed); otherwise the
        argmax of the probabilities (ties to the lowest class), background outside the crop box.

        Raises
        ------
        FormatError
            Negative, non-integral or too large label values in the file (see :func:`label_map_from_file`).
        ValidationError
            Without a label file: probabilities that fail the checks of :meth:`argmax_labels`.
        """
        if self.label_path is None:
            return self.argmax_labels()
        array, geometry = read_nifti(self.label_path)
        if self.layout == "labels":
            self.__dict__.setdefault("geometry", geometry)
        return label_map_from_file(array, source=str(self.label_path), case=self.name)

    def _label_file(self) -> Path:
        if self.label_path is None:  # pragma: no cover - a labels-layout case always has one
            raise FormatError(f"case {self.name!r} in {self.folder.path} has no label file.")
        return self.label_path

    def argmax_labels(self, *, full: bool = True) -> NDArray[Any]:
        """Argmax of the stored (raw, never postprocessed) probabilities, ties to the lowest class, read one
        class channel at a time: pasted into the full image (background outside the crop box), or over the
        crop box only with ``full=False``. uint8 (uint16 beyond 256 classes).

        The probabilities are checked as :func:`medfuse.fuse_probabilities` checks them (every value in
        the argmax pass, class sums on a sample); errors name the case and the file.

        Raises
        ------
        ValidationError
            NaN, infinity, values outside [0, 1] (logits), class sums off 1.
        """
        cropped = streamed_argmax(self.npz_member(), subject=f"case {self.name!r}: member {str(self.npz_path)!r}")
        return paste_into_box(cropped, self.crop_bbox, self.geometry.shape, fill=0) if full else cropped


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


def check_same_geometry(
    sources: Sequence[CaseSource], *, coordinate_tolerance: float = COORDINATE_TOLERANCE,
    direction_tolerance: float = DIRECTION_TOLERANCE,
) -> Geometry:
    """The common geometry of one case's members from several folders.

    Parameters
    ----------
    sources : sequence of CaseSource
        The same case from each member folder.
    coordinate_tolerance : float, optional
        Spacing/origin tolerance relative to the largest spacing (ITK's default 1e-6).
    direction_tolerance : float, optional
        Absolute direction-cosine tolerance (ITK's default 1e-6).

    Returns
    -------
    Geometry
        The first source's geometry.

    Raises
    ------
    GeometryMismatchError
        Shapes, spacings, origins or directions differ; the message names the case, the folders and the
        fields that differ.
    ValidationError
        ``sources`` is empty or mixes different case names.
    """
    if not sources:
        raise ValidationError("`sources` must hold at least one CaseSource; got none.")
    names = sorted({s.name for s in sources})
    if len(names) > 1:
        raise ValidationError(f"`sources` must all be the same case; got cases {names}.")
    first = sources[0]
    reference = first.geometry
    problems = []
    for other in sources[1:]:
        diff = reference.differences(other.geometry, coordinate_tolerance=coordinate_tolerance,
                                     direction_tolerance=direction_tolerance)
        if diff:
            problems.append(f"{other.folder.path} vs {first.folder.path}: {'; '.join(diff)}")
    if problems:
        raise GeometryMismatchError(
            f"case {first.name!r}: the members do not share one geometry: " + " | ".join(problems)
            + ". They were not predicted on the same image; check that the folders hold the same data set."
        )
    return reference
