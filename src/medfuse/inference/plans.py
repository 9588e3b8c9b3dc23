"""The nnU-Net v1 / PaddleSeg MedicalSeg plans file (``nnUNetPlansv2.1_plans_3D.pkl``), typed.

Only what inference needs is kept: modalities and their normalisation, the transposes, the class count
and, per stage, the patch size and the spacing the network was trained at. Everything is checked when the
plans are read, so a bad plans file fails before any image is touched.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import FormatError, ValidationError

__all__ = ["KNOWN_SCHEMES", "IntensityProperties", "Plans", "StagePlan", "load_plans"]

#: Normalisation schemes of nnU-Net v1 (``ExperimentPlanner`` and the MedicalSeg port):
#: ``CT`` clip to the dataset's 0.5/99.5 percentiles then (x - mean) / sd of the dataset's foreground;
#: ``CT2`` clip, then z-score with the image's own statistics inside the clip range; ``noNorm`` nothing;
#: ``nonCT`` (MRI and anything else) z-score per image.
KNOWN_SCHEMES: tuple[str, ...] = ("CT", "CT2", "noNorm", "nonCT")

Scheme = Literal["CT", "CT2", "noNorm", "nonCT"]


@dataclass(frozen=True)
class IntensityProperties:
    """Dataset-wide foreground intensity statistics of one modality (what ``CT`` normalisation uses)."""

    mean: float
    sd: float
    percentile_00_5: float
    percentile_99_5: float


@dataclass(frozen=True)
class StagePlan:
    """One stage of the plans (stage 0 = low resolution in a two-stage 3D plan).

    Attributes
    ----------
    index : int
        Stage number, as given to ``--stage``.
    patch_size : tuple of int
        Network input size, 3 values for a 3D stage and 2 for a 2D stage (in-plane), transposed order.
    spacing : tuple of float
        ``current_spacing``: the voxel size the network was trained at, transposed order (3 values).
    batch_size : int
        Training batch size (a hint for the GPU inference batch).
    """

    index: int
    patch_size: tuple[int, ...]
    spacing: tuple[float, float, float]
    batch_size: int

    @property
    def dimension(self) -> int:
        """2 for a 2D (slice-by-slice) stage, 3 for a 3D stage."""
        return len(self.patch_size)


@dataclass(frozen=True)
class Plans:
    """What inference needs from an nnU-Net v1 plans file.

    Attributes
    ----------
    modalities : tuple of str
        Modality names, one per input image (``_0000``, ``_0001``, ...).
    normalization_schemes : tuple of str
        One of :data:`KNOWN_SCHEMES` per modality.
    use_mask_for_norm : tuple of bool
        Per modality: normalise inside the nonzero mask only and set the outside to 0.
    intensity_properties : tuple of IntensityProperties or None
        Per modality (needed by ``CT`` / ``CT2``).
    num_classes : int
        Foreground labels (the network outputs ``num_classes + 1`` channels).
    transpose_forward, transpose_backward : tuple of int
        Axis permutation applied to ``(z, y, x)`` arrays before / after the network.
    stages : tuple of StagePlan
    preprocessor_name : str
        ``GenericPreprocessor`` (3D) or ``PreprocessorFor2D`` (keeps the slice spacing).
    source : str or None
        Where the plans were read from (for messages).
    """

    modalities: tuple[str, ...]
    normalization_schemes: tuple[str, ...]
    use_mask_for_norm: tuple[bool, ...]
    intensity_properties: tuple[IntensityProperties | None, ...]
    num_classes: int
    transpose_forward: tuple[int, int, int]
    transpose_backward: tuple[int, int, int]
    stages: tuple[StagePlan, ...]
    preprocessor_name: str = "GenericPreprocessor"
    source: str | None = None

    @property
    def num_modalities(self) -> int:
        return len(self.modalities)

    @property
    def num_output_channels(self) -> int:
        """Channels of the network output: background plus ``num_classes``."""
        return self.num_classes + 1

    def stage(self, index: int) -> StagePlan:
        """The stage ``index`` (``--stage``), with an error listing the stages when it does not exist."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValidationError(f"`stage` must be an integer; got {index!r}.")
        if not 0 <= int(index) < len(self.stages):
            raise ValidationError(
                f"`stage` must be one of the plans' stages {list(range(len(self.stages)))} "
                f"({self._describe_stages()}); got {index}."
            )
        return self.stages[int(index)]

    def _describe_stages(self) -> str:
        return "; ".join(
            f"stage {s.index}: {s.dimension}D, patch {list(s.patch_size)}, spacing "
            f"{[round(v, 4) for v in s.spacing]}" for s in self.stages
        )

    @classmethod
    def from_dict(cls, plans: Mapping[str, Any], *, source: str | None = None) -> Plans:
        """Typed plans from the unpickled plans dict (see :func:`load_plans`)."""
        where = f" in {source}" if source else ""
        modalities, mod_keys = _modalities(plans, where)
        schemes = _schemes(plans, mod_keys, modalities, where)
        mask_raw = plans.get("use_mask_for_norm") or {}
        use_mask = tuple(bool(mask_raw.get(k, False)) if isinstance(mask_raw, Mapping) else False
                         for k in mod_keys)
        intensity = _intensities(plans, mod_keys, schemes, where)
        num_classes = _num_classes(plans, where)
        tf = _permutation(plans.get("transpose_forward", (0, 1, 2)), "transpose_forward", where)
        tb = _permutation(plans.get("transpose_backward", tuple(int(i) for i in np.argsort(tf))),
                          "transpose_backward", where)
        if tuple(tf[i] for i in tb) != (0, 1, 2):
            raise FormatError(f"`transpose_backward` {list(tb)} must undo `transpose_forward` {list(tf)}{where}.")
        return cls(
            modalities=modalities, normalization_schemes=tuple(schemes), use_mask_for_norm=use_mask,
            intensity_properties=tuple(intensity), num_classes=num_classes, transpose_forward=tf,
            transpose_backward=tb, stages=tuple(_stages(plans, where)),
            preprocessor_name=str(plans.get("preprocessor_name") or "GenericPreprocessor"), source=source,
        )


def _need(mapping: Mapping[Any, Any], key: str, where: str, what: str = "the plans") -> Any:
    if not isinstance(mapping, Mapping) or key not in mapping:
        raise FormatError(f"{what}{where} have no `{key}` entry; is this an nnU-Net v1 plans file?")
    return mapping[key]


def _modalities(plans: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], list[int]]:
    modalities_raw = _need(plans, "modalities", where)
    try:
        mod_keys = sorted(int(k) for k in modalities_raw)
    except (TypeError, ValueError):
        raise FormatError(f"`modalities`{where} must map 0, 1, ... to names; got {modalities_raw!r}.") from None
    if mod_keys != list(range(len(mod_keys))) or not mod_keys:
        raise FormatError(f"`modalities`{where} must be numbered 0..M-1; got keys {mod_keys}.")
    modalities = tuple(str(modalities_raw[k]) for k in mod_keys)
    return modalities, mod_keys


def _schemes(plans: Mapping[str, Any], mod_keys: list[int], modalities: tuple[str, ...], where: str) -> list[str]:
    schemes_raw = _need(plans, "normalization_schemes", where)
    schemes: list[str] = []
    for k in mod_keys:
        s = schemes_raw.get(k) if isinstance(schemes_raw, Mapping) else None
        if s is None:
            raise FormatError(f"`normalization_schemes`{where} has no entry for modality {k}.")
        s = str(s)
        if s not in KNOWN_SCHEMES:
            raise ValidationError(
                f"normalisation scheme of modality {k} ({modalities[k]!r}){where} must be one of "
                f"{list(KNOWN_SCHEMES)}; got {s!r}. medfuse reproduces nnU-Net v1's schemes only; check that "
                "this is the plans file the models were trained with."
            )
        schemes.append(s)
    return schemes


def _intensities(plans: Mapping[str, Any], mod_keys: list[int], schemes: list[str], where: str
                 ) -> list[IntensityProperties | None]:
    dataset = plans.get("dataset_properties") or {}
    intensity_raw = dataset.get("intensityproperties") if isinstance(dataset, Mapping) else None
    intensity: list[IntensityProperties | None] = []
    for k, scheme in zip(mod_keys, schemes, strict=True):
        props = intensity_raw.get(k) if isinstance(intensity_raw, Mapping) else None
        if props is None:
            if scheme in ("CT", "CT2"):
                raise FormatError(
                    f"modality {k} uses `{scheme}` normalisation, which needs the dataset's intensity "
                    f"statistics, but `dataset_properties['intensityproperties'][{k}]` is missing{where}."
                )
            intensity.append(None)
            continue
        try:
            intensity.append(IntensityProperties(
                mean=float(props["mean"]), sd=float(props["sd"]),
                percentile_00_5=float(props["percentile_00_5"]),
                percentile_99_5=float(props["percentile_99_5"]),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(
                f"intensity properties of modality {k}{where} need mean, sd, percentile_00_5 and "
                f"percentile_99_5; reading them failed ({exc!r})."
            ) from None
        if scheme == "CT" and not intensity[-1].sd > 0:  # type: ignore[union-attr]
            raise FormatError(f"`sd` of modality {k}{where} must be positive; got {props['sd']!r}.")
    return intensity


def _num_classes(plans: Mapping[str, Any], where: str) -> int:
    num_classes = plans.get("num_classes")
    if num_classes is None:
        classes = _need(plans, "all_classes", where)
        num_classes = len(classes)
    try:
        num_classes = int(num_classes)
    except (TypeError, ValueError):
        raise FormatError(f"`num_classes`{where} must be an integer; got {num_classes!r}.") from None
    if num_classes < 1:
        raise FormatError(f"`num_classes`{where} must be >= 1; got {num_classes}.")
    return num_classes


def _stages(plans: Mapping[str, Any], where: str) -> list[StagePlan]:
    stages_raw = _need(plans, "plans_per_stage", where)
    try:
        stage_keys = sorted(int(k) for k in stages_raw)
    except (TypeError, ValueError):
        raise FormatError(f"`plans_per_stage`{where} must be keyed 0, 1, ...") from None
    stages: list[StagePlan] = []
    for k in stage_keys:
        st = stages_raw[k]
        patch = tuple(int(v) for v in np.asarray(_need(st, "patch_size", where, f"stage {k}")).ravel())
        spacing = tuple(float(v) for v in np.asarray(_need(st, "current_spacing", where, f"stage {k}")).ravel())
        if len(patch) not in (2, 3) or any(p < 1 for p in patch):
            raise FormatError(f"`patch_size` of stage {k}{where} must be 2 or 3 positive ints; got {patch}.")
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or any(s <= 0 for s in spacing):
            raise FormatError(
                f"`current_spacing` of stage {k}{where} must be 3 positive numbers; got {spacing}."
            )
        batch = int(st.get("batch_size", 2)) if isinstance(st, Mapping) else 2
        stages.append(StagePlan(index=k, patch_size=patch, spacing=(spacing[0], spacing[1], spacing[2]),
                                batch_size=max(1, batch)))
    if not stages:
        raise FormatError(f"`plans_per_stage`{where} is empty.")
    return stages


def _permutation(value: Any, name: str, where: str) -> tuple[int, int, int]:
    try:
        perm = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise FormatError(f"`{name}`{where} must be a permutation of (0, 1, 2); got {value!r}.") from None
    if sorted(perm) != [0, 1, 2]:
        raise FormatError(f"`{name}`{where} must be a permutation of (0, 1, 2); got {list(perm)}.")
    return (perm[0], perm[1], perm[2])


def load_plans(plans: str | os.PathLike[str] | Mapping[str, Any] | Plans) -> Plans:
    """Read an nnU-Net v1 plans ``.pkl`` (with the restricted unpickler) into :class:`Plans`.

    Parameters
    ----------
    plans : path, mapping or Plans
        The ``nnUNetPlansv2.1_plans_3D.pkl`` / ``..._2D.pkl`` file the models were trained with, the dict
        it unpickles to, or already-loaded :class:`Plans` (returned unchanged).

    Returns
    -------
    Plans
    """
    if isinstance(plans, Plans):
        return plans
    if isinstance(plans, Mapping):
        return Plans.from_dict(plans)
    path = Path(plans)
    if not path.is_file():
        raise FormatError(
            f"`plans` file {str(path)!r} does not exist; pass the nnUNetPlansv2.1_plans_3D.pkl (or _2D.pkl) "
            "the models were trained with (PaddleSeg copies it into every prediction folder)."
        )
    from ..io import load_pickle  # restricted unpickler: a plans file must not be able to run code

    data = load_pickle(path)
    if not isinstance(data, Mapping):
        raise FormatError(f"`plans` file {str(path)!r} holds a {type(data).__name__}, not the plans dict.")
    return Plans.from_dict(data, source=str(path))
