"""The :class:`Predictor`: raw images in, class probabilities in the original geometry out.

One object holds the models (folds) of one nnU-Net configuration (2D, 3D full-res, cascade low-res or
cascade full-res) with their plans stage. Everything that can be checked without running a network is
checked when it is created (model files, formats vs the Paddle version, input channels vs the plans, 2D vs
3D, device), and every case is checked before its preprocessing starts.

Per case: preprocess (crop, transpose, resample, normalise), add the cascade channels, sliding-window
prediction of every fold into ONE float32 accumulator (folds averaged; memory does not grow with folds),
transpose back, and resample one channel at a time to the crop box at the original spacing. The channels go
to a caller's :class:`medfuse.fusion.ProbabilityAccumulator` (:meth:`Predictor.predict_into`), into a
``(C, *crop)`` array (:meth:`Predictor.predict`), or to a v1-layout folder (:meth:`Predictor.predict_folder`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, DTypeLike, NDArray

from .._core.validation import describe
from ..errors import FormatError, GeometryMismatchError, ValidationError
from ..geometry import Geometry, paste_into_box
from .cascade import cascade_channels
from .casefiles import check_headers, find_cases, find_lowres
from .config import ConfigPlan, Device, OneDNN, PaddleEnvironment, plan_config
from .models import LoadedModel, ModelFiles, ModelSignature, find_models, load_model, read_signature
from .plans import Plans, StagePlan, load_plans
from .preprocess import PreprocessedCase, preprocess
from .resample import iter_resampled, separate_z_axis
from .results import CasePrediction, InferenceReport, Timings
from .sliding import Stopwatch, mirror_combinations, predict_sliding_window

__all__ = ["Predictor"]

log = logging.getLogger("medfuse.inference")

#: bytes of network input + output per batch that the automatic batch size aims for
_BATCH_BYTES = 256 * 2**20

def _io() -> Any:
    from .. import io

    return io


class Predictor:
    """Run the exported models (folds) of one nnU-Net v1 configuration on raw images.

    Parameters
    ----------
    models : path or sequence of paths
        Exported model folders (one per fold, averaged), or one folder whose subfolders are the folds.
        See :func:`medfuse.inference.find_model` for the accepted layouts.
    plans : path, mapping or Plans
        The plans ``.pkl`` the models were trained with.
    stage : int
        The plans stage of these models: in a two-stage 3D plan 0 = cascade low-res and 1 = full-res /
        cascade full-res; a 2D plan has stage 0.
    device : {"auto", "gpu", "cpu"}
        ``auto`` uses a GPU when Paddle is built with CUDA and sees one, else every CPU core with oneDNN.
    fp16 : bool
        Half-precision GPU inference.
    threads : int, optional
        CPU threads (default: every available core).
    onednn : {"auto", "on", "off"}
        oneDNN on CPU; ``auto`` turns it off for models it cannot run.
    tta : bool
        Mirror test-time augmentation over every flip of the spatial axes (8 in 3D, 4 in 2D).
    step : float
        Sliding-window step as a fraction of the patch size.
    batch_size : int, optional
        Tiles (tile x flip) per network call. Default: 1 on the CPU (Paddle already spreads one tile over
        every core; larger batches only cost memory), on the GPU the plans' training batch size, at most
        one tile's flips and ~256 MB of input + output.
    folds_resident : {"auto", "all", "one"}
        ``all`` keeps every fold's predictor loaded; ``one`` loads each fold when it is needed and
        releases it after (less memory, reloads per case). ``auto``: all on CPU, one on a GPU.
    cascade : bool, optional
        Whether the models are cascade full-res networks (image + low-res segmentation channels). Default:
        read from the models' input channels.
    model_output : {"auto", "probabilities", "logits"}
        What the network returns; ``auto`` reads PaddleSeg's ``deploy.yaml`` or looks at the first batch.
    gpu_id : int
    """

    def __init__(
        self,
        models: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        plans: str | os.PathLike[str] | Mapping[str, Any] | Plans,
        stage: int,
        device: Device = "auto",
        fp16: bool = False,
        threads: int | None = None,
        onednn: OneDNN = "auto",
        tta: bool = True,
        step: float = 0.5,
        batch_size: int | None = None,
        folds_resident: Literal["auto", "all", "one"] = "auto",
        cascade: bool | None = None,
        model_output: Literal["auto", "probabilities", "logits"] = "auto",
        gpu_id: int = 0,
    ) -> None:
        if not 0 < float(step) <= 1:
            raise ValidationError(f"`step` must be in (0, 1]; got {step}.")
        if folds_resident not in ("auto", "all", "one"):
            raise ValidationError(f"`folds_resident` must be 'auto', 'all' or 'one'; got {folds_resident!r}.")
        if model_output not in ("auto", "probabilities", "logits"):
            raise ValidationError(f"`model_output` must be 'auto', 'probabilities' or 'logits'; got {model_output!r}.")
        if batch_size is not None and (isinstance(batch_size, bool) or int(batch_size) < 1):
            raise ValidationError(f"`batch_size` must be a positive integer; got {batch_size!r}.")
        self.models: tuple[ModelFiles, ...] = find_models(models)
        self.plans: Plans = load_plans(plans)
        self.stage: StagePlan = self.plans.stage(stage)
        self._plans_source = plans if isinstance(plans, (str, os.PathLike)) else None
        signatures = [read_signature(m) for m in self.models]
        self.signature: ModelSignature = self._check_signatures(signatures)
        self.is_cascade: bool = self._resolve_cascade(cascade)
        self.num_classes: int = self.plans.num_output_channels
        self.spatial_dims: int = self.stage.dimension
        self.patch_size: tuple[int, int, int] = self._resolve_patch()
        mirror = ((0, 1, 2) if self.spatial_dims == 3 else (1, 2)) if tta else ()
        self.mirror_axes: tuple[int, ...] = mirror
        self.step = float(step)
        self.model_output = self._resolve_output(model_output)

        env = PaddleEnvironment.detect()
        plans_by_format: dict[str, ConfigPlan] = {}
        for files, sig in zip(self.models, signatures, strict=True):  # every fold is checked
            plan = plan_config(
                environment=env, model_format=files.format, device=device, fp16=fp16, threads=threads,
                onednn=onednn, gpu_id=gpu_id, input_dtype=sig.input_dtype, model_ops=sig.ops,
                pir_version=sig.pir_version,
            )
            plans_by_format.setdefault(files.format, plan)
        self._config_by_format = plans_by_format
        self.config: tuple[ConfigPlan, ...] = tuple(plans_by_format.values())
        self.device: Literal["gpu", "cpu"] = self.config[0].device
        self.folds_resident: Literal["all", "one"] = (
            ("one" if self.device == "gpu" and len(self.models) > 1 else "all")
            if folds_resident == "auto" else folds_resident
        )
        self.batch_size: int = int(batch_size) if batch_size is not None else self._auto_batch()
        for plan in self.config:
            for note in plan.notes:
                log.debug("medfuse inference: %s", note)
        self._resident: list[LoadedModel] | None = None
        self._load_seconds = 0.0

    # ----------------------------------------------------------------------------------------------------
    # set-up checks

    def _check_signatures(self, sigs: list[ModelSignature]) -> ModelSignature:
        first = sigs[0]
        for files, sig in zip(self.models[1:], sigs[1:], strict=True):
            if (sig.input_shape is not None and first.input_shape is not None
                    and sig.input_shape[1:] != first.input_shape[1:]):
                raise ValidationError(
                    f"the folds must be the same network: {str(self.models[0].model_file)!r} takes input "
                    f"{list(first.input_shape)} but {str(files.model_file)!r} takes {list(sig.input_shape)}."
                )
        dims = first.spatial_dims
        if dims is not None and dims != self.stage.dimension:
            raise ValidationError(
                f"stage {self.stage.index} of the plans is {self.stage.dimension}D (patch "
                f"{list(self.stage.patch_size)}) but the model takes {dims}D input {list(first.input_shape or ())}; "
                f"give the plans file of the model's configuration (nnUNetPlansv2.1_plans_{dims}D.pkl) and stage."
            )
        return first

    def _resolve_cascade(self, cascade: bool | None) -> bool:
        m, k = self.plans.num_modalities, self.plans.num_classes
        ch = self.signature.channels
        if ch is None:
            return bool(cascade)
        if ch not in (m, m + k):
            raise ValidationError(
                f"the model takes {ch} input channels, but the plans have {m} modalities "
                f"({list(self.plans.modalities)}) and {k} classes: expected {m} (2D / 3D / cascade low-res) or "
                f"{m + k} (cascade full-res: image + one-hot low-res labels). Are the plans the model's?"
            )
        inferred = ch == m + k
        if cascade is not None and bool(cascade) != inferred:
            want = "a cascade full-res model" if cascade else "a plain (non-cascade) model"
            raise ValidationError(
                f"`cascade={cascade}` asks for {want}, but the model takes {ch} input channels "
                f"({'image + ' + str(k) + ' low-res label channels' if inferred else 'image only'})."
            )
        return inferred

    def _resolve_patch(self) -> tuple[int, int, int]:
        plan_patch = tuple(self.stage.patch_size)
        model_patch = self.signature.spatial_shape
        patch = plan_patch
        if model_patch is not None and tuple(model_patch) != plan_patch:
            log.debug("medfuse inference: the model's fixed input size %s wins over the plans' patch size %s",
                     list(model_patch), list(plan_patch))
            patch = tuple(model_patch)
        if len(patch) == 2:
            return (1, int(patch[0]), int(patch[1]))
        return (int(patch[0]), int(patch[1]), int(patch[2]))

    def _resolve_output(self, model_output: str) -> Literal["auto", "probabilities", "logits"]:
        if model_output != "auto":
            return model_output  # type: ignore[return-value]
        ops = {m.output_op for m in self.models if m.output_op}
        if "argmax" in ops:
            raise FormatError(
                "the model was exported with `output_op: argmax` (deploy.yaml): it returns labels, which cannot "
                "be averaged over folds or fused. Re-export it with PaddleSeg's `--output_op softmax` (or none)."
            )
        if ops == {"softmax"}:
            return "probabilities"
        if ops == {"none"}:
            return "logits"
        return "auto"

    def _auto_batch(self) -> int:
        n_mirror = len(mirror_combinations(self.mirror_axes))
        c_in = self.plans.num_modalities + (self.plans.num_classes if self.is_cascade else 0)
        item = (c_in + self.num_classes) * int(np.prod(self.patch_size)) * 4
        fit = max(1, _BATCH_BYTES // max(item, 1))
        # the CPU runs one tile on every core already: batching only adds memory there (measured: no gain)
        cap = 1 if self.device == "cpu" else min(n_mirror, self.stage.batch_size)
        return int(max(1, min(fit, cap)))

    # ----------------------------------------------------------------------------------------------------
    # models

    def _load(self, files: ModelFiles) -> LoadedModel:
        t0 = time.perf_counter()
        sig_dtype = self.signature.input_dtype if self.signature.input_dtype in ("float32", "float64") else "float32"
        model = load_model(files, self._config_by_format[files.format], spatial_dims=self.spatial_dims,
                           input_dtype=sig_dtype)
        self._load_seconds += time.perf_counter() - t0
        return model

    def _iter_models(self) -> Iterator[LoadedModel]:
        if self.folds_resident == "all":
            if self._resident is None:
                self._resident = []
            for i, files in enumerate(self.models):
                if i == len(self._resident):
                    self._resident.append(self._load(files))
                yield self._resident[i]
            return
        for files in self.models:
            model = self._load(files)
            try:
                yield model
            finally:
                model.close()

    def close(self) -> None:
        """Release every loaded predictor."""
        for m in self._resident or ():
            m.close()
        self._resident = None

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------------------------------
    # one case

    def _check_lowres_given(self, given: bool, *, image: str, what: str) -> None:
        """A cascade full-res model needs the low-res stage's output (``what``); other models refuse it."""
        if self.is_cascade and not given:
            raise ValidationError(
                f"these are cascade full-res models (input: {image} + {self.plans.num_classes} low-res label "
                f"channels): give the low-res stage's {what} (`lowres=`, CLI `--lowres DIR`)."
            )
        if not self.is_cascade and given:
            raise ValidationError("`lowres` is only for cascade full-res models; these models take the image only.")

    def _check_case(
        self, image: ArrayLike, geometry: Geometry | None, spacing: Sequence[float] | None,
        lowres: ArrayLike | None, lowres_geometry: Geometry | None,
    ) -> tuple[NDArray[Any], Geometry, NDArray[Any] | None]:
        arr = np.asarray(image)
        m = self.plans.num_modalities
        if arr.dtype.kind not in "biuf":
            raise ValidationError(f"`image` must be a real-valued array; got {describe(arr)}.")
        if arr.ndim == 3 and m == 1:
            arr = arr[None]
        if arr.ndim != 4:
            raise ValidationError(
                f"`image` must be a 3D volume (Z, Y, X) or (M, Z, Y, X) with M = {m} modalities; got "
                f"{describe(arr)}. 2D images and time series are not supported."
            )
        if arr.shape[0] != m:
            raise ValidationError(
                f"`image` must have {m} modalities ({list(self.plans.modalities)}) on its first axis; got "
                f"{describe(arr)}."
            )
        if geometry is None:
            if spacing is None:
                raise ValidationError("give the image's `geometry` (or at least its `spacing`, z y x, in mm).")
            geometry = Geometry.default(arr.shape[1:], tuple(float(s) for s in spacing))
        elif spacing is not None:
            raise ValidationError("give `geometry` or `spacing`, not both.")
        if tuple(geometry.shape) != tuple(arr.shape[1:]):
            raise GeometryMismatchError(
                f"`geometry` has shape {geometry.shape} but the image has {arr.shape[1:]}."
            )
        low: NDArray[Any] | None = None
        self._check_lowres_given(lowres is not None, image=f"{m} image", what="segmentation")
        if lowres is not None:
            low = np.asarray(lowres)
            if low.shape != arr.shape[1:]:
                raise GeometryMismatchError(
                    f"the low-res segmentation has shape {low.shape} but the image has {arr.shape[1:]}; it must be "
                    "the low-res stage's output in the image's original geometry (same file case name)."
                )
            if lowres_geometry is not None:
                diff = geometry.differences(lowres_geometry)
                if diff:
                    raise GeometryMismatchError(
                        f"the low-res segmentation's geometry differs from the image's: {'; '.join(diff)}."
                    )
        return arr, geometry, low

    def _predict_grid(self, arr: NDArray[Any], geometry: Geometry, low: NDArray[Any] | None, watch: Stopwatch
                      ) -> tuple[NDArray[np.float32], PreprocessedCase]:
        t0 = time.perf_counter()
        extra = self.plans.num_classes if self.is_cascade else 0
        pre = preprocess(arr, geometry.spacing, plans=self.plans, stage=self.stage, extra_channels=extra)
        if low is not None:
            m = self.plans.num_modalities
            cascade_channels(low, crop_bbox=pre.crop_bbox, grid_shape=pre.data.shape[1:],
                             num_classes=self.plans.num_classes, transpose_forward=self.plans.transpose_forward,
                             out=pre.data[m:])
        watch.add("preprocess", time.perf_counter() - t0)
        load0 = self._load_seconds
        probs = predict_sliding_window(
            pre.data, self._iter_models(), patch_size=self.patch_size, num_classes=self.num_classes,
            step=self.step, mirror_axes=self.mirror_axes, batch_size=self.batch_size, output=self.model_output,
            stopwatch=watch,
        )
        loaded = self._load_seconds - load0  # loading happened inside the loop: not tiling work
        watch.add("load", loaded)
        watch.add("tiling", -loaded)
        return probs, pre

    def _iter_channels(self, probs: NDArray[np.float32], pre: PreprocessedCase
                       ) -> Iterator[tuple[int, NDArray[np.float32]]]:
        tb = self.plans.transpose_backward
        back = probs.transpose((0, *(a + 1 for a in tb)))
        crop_shape = pre.shape_after_cropping
        if tuple(back.shape[1:]) == tuple(crop_shape):
            for c in range(back.shape[0]):
                yield c, back[c]
            return
        target_untransposed = tuple(pre.target_spacing[a] for a in tb)
        axis = separate_z_axis(pre.original_spacing, target_untransposed)
        yield from iter_resampled(back, crop_shape, order=1, separate_axis=axis, order_z=0)

    def predict(
        self,
        image: ArrayLike,
        *,
        geometry: Geometry | None = None,
        spacing: Sequence[float] | None = None,
        lowres: ArrayLike | None = None,
        lowres_geometry: Geometry | None = None,
        probability_dtype: DTypeLike = np.float32,
        keep_probabilities: bool = True,
    ) -> CasePrediction:
        """Probabilities (crop box, original spacing) and labels (full geometry) of one case.

        Parameters
        ----------
        image : array_like of shape (M, Z, Y, X), or (Z, Y, X) for one modality
            Raw intensities (HU for CT) in SimpleITK array order.
        geometry : Geometry, optional
            The image's geometry (its spacing drives the resampling); or give ``spacing``.
        spacing : sequence of 3 float, optional
            Voxel size in mm, ``(z, y, x)``, when there is no ``geometry``.
        lowres : array_like of shape (Z, Y, X), integer, optional
            Cascade full-res only: the low-res stage's label map in the image's geometry.
        lowres_geometry : Geometry, optional
            Its geometry, checked against the image's.
        probability_dtype : dtype
            float32 (default) or float16 (what the v1 ``.npz`` stores; labels still come from float32).
        keep_probabilities : bool
            False: return labels only (saves the ``(C, *crop)`` array).

        Returns
        -------
        CasePrediction
        """
        dtype = np.dtype(probability_dtype)
        if dtype not in (np.float16, np.float32):
            raise ValidationError(f"`probability_dtype` must be float16 or float32; got {dtype}.")
        arr, geo, low = self._check_case(image, geometry, spacing, lowres, lowres_geometry)
        watch = Stopwatch()
        probs, pre = self._predict_grid(arr, geo, low, watch)
        t0 = time.perf_counter()
        crop_shape = pre.shape_after_cropping
        out = np.empty((self.num_classes, *crop_shape), dtype=dtype) if keep_probabilities else None
        label_dtype = np.uint8 if self.num_classes <= 256 else np.uint16
        best = np.full(crop_shape, -np.inf, dtype=np.float32)
        lab = np.zeros(crop_shape, dtype=label_dtype)
        better = np.empty(crop_shape, dtype=bool)
        for c, ch in self._iter_channels(probs, pre):
            if out is not None:
                out[c] = ch
            np.greater(ch, best, out=better)  # strict: ties keep the lower class
            np.copyto(best, ch, where=better)
            lab[better] = c
        del probs, best, better
        labels = paste_into_box(lab, pre.crop_bbox, geo.shape, fill=0)
        watch.add("resample", time.perf_counter() - t0)
        return CasePrediction(
            probabilities=out, labels=labels, crop_bbox=pre.crop_bbox, geometry=geo, num_classes=self.num_classes,
            size_after_resampling=tuple(int(s) for s in pre.data.shape[1:]),
            spacing_after_resampling=pre.target_spacing, timings=Timings._from(watch),
        )

    def predict_into(
        self,
        accumulator: Any,
        image: ArrayLike,
        *,
        geometry: Geometry | None = None,
        spacing: Sequence[float] | None = None,
        lowres: ArrayLike | None = None,
        lowres_geometry: Geometry | None = None,
        weight: float | ArrayLike = 1.0,
    ) -> CasePrediction:
        """Add this case's probabilities to a fusion accumulator, one class channel at a time.

        Parameters
        ----------
        accumulator : medfuse.fusion.ProbabilityAccumulator
            Built for ``num_classes`` classes and the image's full shape; the channels are added with
            ``add_channel(c, channel, weight=..., box=crop_bbox)`` (outside the crop box this member counts as
            background).
        image, geometry, spacing, lowres, lowres_geometry
            As in :meth:`predict`.
        weight : float or array_like of shape (C,)
            This member's weight (per class).

        Returns
        -------
        CasePrediction
            Without probabilities or labels (they went to the accumulator).
        """
        arr, geo, low = self._check_case(image, geometry, spacing, lowres, lowres_geometry)
        acc_classes = getattr(accumulator, "num_classes", None)
        acc_shape = getattr(accumulator, "shape", None)
        if acc_classes is not None and int(acc_classes) != self.num_classes:
            raise ValidationError(f"`accumulator` has {acc_classes} classes but the models predict {self.num_classes}.")
        if acc_shape is not None and tuple(acc_shape) != tuple(geo.shape):
            raise GeometryMismatchError(f"`accumulator` has shape {tuple(acc_shape)} but the image has {geo.shape}.")
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim == 0:
            w = np.full(self.num_classes, float(w))
        if w.shape != (self.num_classes,) or not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValidationError(f"`weight` must be a non-negative number or one per class ({self.num_classes}); "
                                  f"got {describe(np.asarray(weight))}.")
        watch = Stopwatch()
        probs, pre = self._predict_grid(arr, geo, low, watch)
        t0 = time.perf_counter()
        box = [list(b) for b in pre.crop_bbox]
        for c, ch in self._iter_channels(probs, pre):
            accumulator.add_channel(c, ch, weight=float(w[c]), box=box)
        watch.add("resample", time.perf_counter() - t0)
        return CasePrediction(
            probabilities=None, labels=None, crop_bbox=pre.crop_bbox, geometry=geo, num_classes=self.num_classes,
            size_after_resampling=tuple(int(s) for s in pre.data.shape[1:]),
            spacing_after_resampling=pre.target_spacing, timings=Timings._from(watch),
        )

    # ----------------------------------------------------------------------------------------------------
    # files

    def _read_case(self, files: Sequence[str | os.PathLike[str]]) -> tuple[NDArray[Any], Geometry]:
        io = _io()
        arrays: list[NDArray[Any]] = []
        geo: Geometry | None = None
        for f in files:
            arr, g = io.read_nifti(f)
            if arr.ndim != 3:
                raise ValidationError(f"image {str(f)!r} must be a 3D volume; it has shape {arr.shape}.")
            if geo is None:
                geo = g
            else:
                diff = geo.differences(g)
                if diff:
                    raise GeometryMismatchError(
                        f"the modalities of one case must share a geometry; {str(f)!r} differs from "
                        f"{str(files[0])!r}: {'; '.join(diff)}."
                    )
            arrays.append(arr)
        if geo is None:
            raise ValidationError("no image files given.")
        if len(arrays) == 1:
            return arrays[0][None], geo
        return np.stack(arrays), geo

    def predict_files(
        self, images: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
        lowres: str | os.PathLike[str] | None = None, probability_dtype: DTypeLike = np.float32,
        keep_probabilities: bool = True,
    ) -> CasePrediction:
        """:meth:`predict` on NIfTI files: one per modality (``_0000``, ``_0001``...), and the low-res map."""
        files = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        t0 = time.perf_counter()
        arr, geo = self._read_case(files)
        low = low_geo = None
        if lowres is not None:
            low, low_geo = _io().read_nifti(lowres)
        t_read = time.perf_counter() - t0
        pred = self.predict(arr, geometry=geo, lowres=low, lowres_geometry=low_geo,
                            probability_dtype=probability_dtype, keep_probabilities=keep_probabilities)
        return _with_timings(pred, pred.timings + Timings(read=t_read))

    def predict_folder(
        self,
        images: str | os.PathLike[str],
        output: str | os.PathLike[str],
        *,
        lowres: str | os.PathLike[str] | None = None,
        save_probabilities: bool = False,
        overwrite: bool = False,
        cases: Sequence[str] | None = None,
        progress: bool = True,
    ) -> InferenceReport:
        """Predict every case of an nnU-Net image folder into a v1-layout (PaddleSeg) prediction folder.

        Writes ``<case>.nii.gz`` (uint8 labels, original geometry) and, with ``save_probabilities``,
        ``<case>.npz`` (``softmax``, float16, crop box) and ``<case>.pkl`` (properties), plus a copy of the
        plans file: the folder :func:`medfuse.fuse_folders` and PaddleSeg's ensembling read. Everything is
        checked (files, headers, low-res segmentations) before the first case is computed. The folder is
        locked for the run, and a re-run skips the cases its journal records as finished with the same
        settings and unchanged files (see :func:`medfuse.fuse_folders`) unless ``overwrite``.

        Parameters
        ----------
        images : path
            Folder of ``<case>_0000.nii.gz`` (+ ``_0001``... per modality).
        output : path
            Output folder (created).
        lowres : path, optional
            Cascade full-res: folder of the low-res stage's ``<case>.nii.gz`` predictions.
        save_probabilities : bool
        overwrite : bool
        cases : sequence of str, optional
            Only these cases.
        progress : bool
            A progress bar (tqdm, when installed).

        Returns
        -------
        InferenceReport
        """
        found = find_cases(images, num_modalities=self.plans.num_modalities)
        if cases is not None:
            missing = sorted(set(cases) - set(found))
            if missing:
                raise FormatError(f"cases {missing[:10]} are not in {str(images)!r}.")
            found = {c: found[c] for c in cases}
        out_dir = Path(output)
        if out_dir.resolve() == Path(images).resolve():
            raise ValidationError("`output` must not be the image folder.")
        self._check_lowres_given(lowres is not None, image="image", what="prediction folder")
        low_files = find_lowres(lowres, found) if lowres is not None else {}
        check_headers(found, low_files)  # a bad case fails now, not after an hour of prediction
        from .folder_run import predict_folder_settings, run_folder

        plans = None if self._plans_source is None else Path(self._plans_source)
        low = None if lowres is None else Path(lowres)
        settings = predict_folder_settings(self, Path(images), low, plans=plans, save_probabilities=save_probabilities)
        return run_folder(self, found, low_files, out_dir, settings=settings, plans=plans,
                          save_probabilities=save_probabilities, overwrite=overwrite, progress=progress)


def _with_timings(pred: CasePrediction, timings: Timings) -> CasePrediction:
    from dataclasses import replace

    return replace(pred, timings=timings)
