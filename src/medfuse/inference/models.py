"""Finding exported Paddle models, reading their input signature, and loading them.

An exported model is a program file plus its weights:

* ``model.pdmodel`` + ``model.pdiparams`` (Paddle 2.x, or Paddle 3 with ``FLAGS_enable_pir_api=0``);
* ``model.json`` + ``model.pdiparams`` (Paddle 3's default PIR format; Paddle < 3 cannot load it);
* a PaddleSeg export folder whose ``deploy.yaml`` names the two files (``Deploy: {model:, params:}``).

One folder is one model (one fold); a folder without a model whose subfolders hold models (``fold_0`` ...
``fold_4``) stands for all of them. The input shape, dtype and operator names are read from the program
file itself (JSON, or the ``ProgramDesc`` protobuf), so channel and patch-size mismatches are caught
before any image is processed.
"""

from __future__ import annotations

import json
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError, ValidationError
from ._paddle import import_paddle, paddle_version
from .config import ConfigPlan, ModelFormat, apply_config

__all__ = [
    "LoadedModel",
    "ModelFiles",
    "ModelSignature",
    "find_model",
    "find_models",
    "import_paddle",
    "load_model",
    "paddle_version",
    "read_signature",
]

_PROGRAM_SUFFIXES = {".json": "json", ".pdmodel": "pdmodel"}


@dataclass(frozen=True)
class ModelFiles:
    """The files of one exported model.

    Attributes
    ----------
    model_file : Path
        ``*.pdmodel`` or ``*.json`` program.
    params_file : Path
        ``*.pdiparams`` weights.
    format : {"json", "pdmodel"}
    output_op : str or None
        PaddleSeg's ``deploy.yaml`` ``output_op`` (``softmax``, ``none``, ``argmax``) when there is one.
    """

    model_file: Path
    params_file: Path
    format: ModelFormat
    output_op: str | None = None

    @property
    def folder(self) -> Path:
        return self.model_file.parent


@dataclass(frozen=True)
class ModelSignature:
    """What the program file says about the model's input.

    Attributes
    ----------
    input_name : str or None
    input_shape : tuple of int or None
        ``(N, C_in, *spatial)`` with -1 for dynamic sizes; None when it could not be read.
    input_dtype : str
        ``float32`` unless the program says otherwise.
    ops : frozenset of str
        Operator names (``conv3d``, ``bilinear_interp``, ...).
    pir_version : int or None
        Serialisation version of a ``model.json`` (PIR) program (``base_code.version``).
    """

    input_name: str | None = None
    input_shape: tuple[int, ...] | None = None
    input_dtype: str = "float32"
    ops: frozenset[str] = field(default_factory=frozenset)
    pir_version: int | None = None

    @property
    def channels(self) -> int | None:
        """Input channels when fixed in the program."""
        if self.input_shape is None or len(self.input_shape) < 2 or self.input_shape[1] < 1:
            return None
        return self.input_shape[1]

    @property
    def spatial_dims(self) -> int | None:
        """2 or 3 (a 2D or 3D network) when known."""
        return None if self.input_shape is None else len(self.input_shape) - 2

    @property
    def spatial_shape(self) -> tuple[int, ...] | None:
        """Fixed spatial input size, or None when any spatial size is dynamic."""
        if self.input_shape is None or any(s < 1 for s in self.input_shape[2:]):
            return None
        return self.input_shape[2:]


def _read_deploy(path: Path) -> dict[str, str]:
    """``model``, ``params`` and ``output_op`` of a PaddleSeg ``deploy.yaml`` (plain ``key: value`` lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read {str(path)!r} ({exc}).") from exc
    found: dict[str, str] = {}
    for line in text.splitlines():
        m = re.match(r"^\s*(model|params|output_op)\s*:\s*(.*?)\s*$", line)
        if m and m.group(1) not in found and m.group(2):
            found[m.group(1)] = m.group(2).strip("'\"")
    return found


def _params_for(model_file: Path) -> Path:
    return model_file.with_suffix(".pdiparams")


def find_model(path: str | os.PathLike[str]) -> ModelFiles:
    """The model files of one exported model (a folder, or the program file itself).

    Parameters
    ----------
    path : path
        A folder with ``model.pdmodel``/``model.json`` + ``model.pdiparams`` or a PaddleSeg ``deploy.yaml``;
        or a ``.pdmodel`` / ``.json`` file (its ``.pdiparams`` beside it).

    Returns
    -------
    ModelFiles
    """
    p = Path(path)
    if p.is_file():
        fmt = _PROGRAM_SUFFIXES.get(p.suffix)
        if fmt is None:
            raise FormatError(f"model file {str(p)!r} must end with .pdmodel or .json (a Paddle program).")
        return _checked(p, fmt, None)  # type: ignore[arg-type]
    if not p.is_dir():
        raise FormatError(f"model {str(p)!r} does not exist; give an exported model folder (model.pdmodel or "
                          "model.json, with model.pdiparams).")
    deploy = p / "deploy.yaml"
    if deploy.is_file():
        entries = _read_deploy(deploy)
        if "model" not in entries or "params" not in entries:
            raise FormatError(f"{str(deploy)!r} must name `model` and `params` under `Deploy:`; got {entries}.")
        model_file = p / entries["model"]
        fmt = _PROGRAM_SUFFIXES.get(model_file.suffix)
        if fmt is None:
            raise FormatError(f"{str(deploy)!r} names model {entries['model']!r}, not a .pdmodel / .json file.")
        params = p / entries["params"]
        if not model_file.is_file() or not params.is_file():
            missing = [str(f.name) for f in (model_file, params) if not f.is_file()]
            raise FormatError(f"{str(deploy)!r} names files that are not in {str(p)!r}: {missing}.")
        return ModelFiles(model_file=model_file, params_file=params, format=fmt,  # type: ignore[arg-type]
                          output_op=entries.get("output_op"))
    for name, fmt in (("model.pdmodel", "pdmodel"), ("model.json", "json")):
        if (p / name).is_file():  # pdmodel first: it runs on every Paddle version, with every option
            return _checked(p / name, fmt, None)  # type: ignore[arg-type]
    candidates = sorted(f for f in p.iterdir() if f.suffix in _PROGRAM_SUFFIXES and _params_for(f).is_file())
    if len(candidates) == 1:
        return _checked(candidates[0], _PROGRAM_SUFFIXES[candidates[0].suffix], None)  # type: ignore[arg-type]
    if len(candidates) > 1:
        raise FormatError(f"model folder {str(p)!r} holds several models ({[c.name for c in candidates]}); "
                          "give the program file itself, or one folder per model.")
    weights = sorted(f.name for f in p.glob("*.pdiparams"))
    hint = (f" It has weights ({weights}) but no program file: copy the .pdmodel / .json exported with them."
            if weights else "")
    raise FormatError(f"no exported model in {str(p)!r}: expected model.pdmodel or model.json with "
                      f"model.pdiparams, or a PaddleSeg deploy.yaml.{hint}")


def _checked(model_file: Path, fmt: ModelFormat, output_op: str | None) -> ModelFiles:
    params = _params_for(model_file)
    if not params.is_file():
        raise FormatError(f"model {str(model_file)!r} has no weights file {params.name!r} beside it; copy the "
                          ".pdiparams exported with it.")
    return ModelFiles(model_file=model_file, params_file=params, format=fmt, output_op=output_op)


def _has_model(folder: Path) -> bool:
    return (folder / "deploy.yaml").is_file() or any(
        f.suffix in _PROGRAM_SUFFIXES and _params_for(f).is_file() for f in folder.iterdir()
    )


def find_models(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> tuple[ModelFiles, ...]:
    """Model files of every fold: one per given folder, or one per model subfolder of a folder without one.

    Parameters
    ----------
    paths : path or sequence of paths

    Returns
    -------
    tuple of ModelFiles
        In the order given (subfolders sorted by name).
    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ValidationError("`models` is empty; give at least one exported model folder.")
    out: list[ModelFiles] = []
    for item in items:
        p = Path(item)
        if p.is_dir() and not _has_model(p):
            subs = sorted(d for d in p.iterdir() if d.is_dir() and _has_model(d))
            if subs:
                out.extend(find_model(d) for d in subs)
                continue
        out.append(find_model(p))
    seen: set[Path] = set()
    for m in out:
        key = m.model_file.resolve()
        if key in seen:
            raise ValidationError(f"model {str(m.model_file)!r} is given twice; each fold must be given once.")
        seen.add(key)
    return tuple(out)


# --------------------------------------------------------------------------------------------------------
# signatures


def read_signature(files: ModelFiles) -> ModelSignature:
    """Input name, shape and dtype, and operator names, read from the program file (no Paddle run).

    Unknown fields are left as None rather than guessed when a file cannot be parsed.
    """
    if files.format == "json":
        return _json_signature(files.model_file)
    return _pdmodel_signature(files.model_file)


def _json_signature(path: Path) -> ModelSignature:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"model {str(path)!r} is not a readable Paddle JSON program ({exc}).") from exc
    ops: set[str] = set()
    data_ops: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name = node.get("#")
            if isinstance(name, str) and ("I" in node or "O" in node) and "." in name:
                op = name.split(".", 1)[1]
                ops.add(op)
                if op == "data":
                    data_ops.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    if not ops:
        raise FormatError(f"model {str(path)!r} is JSON but not a Paddle PIR program (no operators found).")
    base = doc.get("base_code") if isinstance(doc, dict) else None
    raw_version = base.get("version") if isinstance(base, dict) else None
    pir_version = int(raw_version) if isinstance(raw_version, int) else None
    if len(data_ops) != 1:
        return ModelSignature(ops=frozenset(ops), pir_version=pir_version)
    attrs: dict[str, Any] = {}
    for a in data_ops[0].get("A", []):
        if isinstance(a, dict) and "N" in a and isinstance(a.get("AT"), dict):
            attrs[str(a["N"])] = a["AT"].get("D")
    shape = attrs.get("shape")
    dtype = attrs.get("dtype")
    return ModelSignature(
        input_name=str(attrs["name"]) if "name" in attrs else None,
        input_shape=tuple(int(s) for s in shape) if isinstance(shape, list) else None,
        input_dtype=str(dtype) if isinstance(dtype, str) else "float32",
        ops=frozenset(ops),
        pir_version=pir_version,
    )


def _framework_pb2() -> Any:
    import importlib

    import_paddle()
    for name in ("paddle.base.proto.framework_pb2", "paddle.fluid.proto.framework_pb2"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _pdmodel_signature(path: Path) -> ModelSignature:
    pb = _framework_pb2()
    if pb is None:  # pragma: no cover - no known protobuf module in this Paddle
        return ModelSignature()
    prog = pb.ProgramDesc()
    try:
        prog.ParseFromString(path.read_bytes())
    except Exception as exc:
        raise FormatError(f"model {str(path)!r} is not a readable Paddle program ({exc}).") from exc
    if not prog.blocks:
        raise FormatError(f"model {str(path)!r} is an empty Paddle program.")
    block = prog.blocks[0]
    ops = frozenset(op.type for op in block.ops)
    feeds = [list(o.arguments) for op in block.ops if op.type == "feed" for o in op.outputs]
    names = [n for args in feeds for n in args]
    if len(names) != 1:
        return ModelSignature(ops=ops)
    var = next((v for v in block.vars if v.name == names[0]), None)
    if var is None:
        return ModelSignature(input_name=names[0], ops=ops)
    vtype = var.type
    tensor = None
    for fld in ("dense_tensor", "lod_tensor"):  # Paddle 3 / Paddle 2 field names
        try:
            if vtype.HasField(fld):
                tensor = getattr(vtype, fld).tensor
                break
        except ValueError:
            continue
    if tensor is None:
        return ModelSignature(input_name=names[0], ops=ops)
    dtype_name = pb.VarType.Type.Name(tensor.data_type).lower()
    dtype = {"fp32": "float32", "fp64": "float64", "fp16": "float16"}.get(dtype_name, dtype_name)
    return ModelSignature(input_name=names[0], input_shape=tuple(int(d) for d in tensor.dims),
                          input_dtype=dtype, ops=ops)


# --------------------------------------------------------------------------------------------------------
# loading


class LoadedModel:
    """A Paddle Inference predictor behind a numpy call: ``model(batch) -> output``.

    ``batch`` is ``(N, C_in, *spatial)``; a 2D network also accepts the ``(N, C_in, 1, H, W)`` tiles of
    the sliding window (the depth-1 axis is dropped on the way in and restored on the way out). The call
    accumulates the time spent inside Paddle in :attr:`seconds`.
    """

    def __init__(self, files: ModelFiles, plan: ConfigPlan, *, spatial_dims: int, input_dtype: str = "float32"):
        self.files = files
        self.plan = plan
        self.spatial_dims = int(spatial_dims)
        self.dtype = np.dtype(input_dtype)
        self.seconds = 0.0
        self._verified = False
        self._predictor: Any = None
        self._input: Any = None
        self._output_name = ""
        self._create(plan)

    def _create(self, plan: ConfigPlan) -> None:
        inference = import_paddle().inference
        config = inference.Config(str(self.files.model_file), str(self.files.params_file))
        apply_config(plan, config)
        try:
            predictor = inference.create_predictor(config)
        except Exception as exc:
            raise FormatError(f"Paddle could not load model {str(self.files.model_file)!r}: {exc}") from exc
        names = predictor.get_input_names()
        if len(names) != 1:
            raise FormatError(f"model {str(self.files.model_file)!r} takes {len(names)} inputs ({names}); medfuse "
                              "runs segmentation networks with one image input.")
        self._predictor = predictor
        self._input = predictor.get_input_handle(names[0])
        self._output_name = predictor.get_output_names()[0]
        self.plan = plan

    def _run(self, x: NDArray[Any]) -> NDArray[Any]:
        self._input.reshape(list(x.shape))
        self._input.copy_from_cpu(x)
        self._predictor.run()
        out: NDArray[Any] = self._predictor.get_output_handle(self._output_name).copy_to_cpu()
        return out

    def __call__(self, batch: NDArray[np.float32]) -> NDArray[Any]:
        if self._predictor is None:
            raise ValidationError(f"model {str(self.files.model_file)!r} was closed; load it again.")
        squeeze = self.spatial_dims == 2 and batch.ndim == 5
        x = batch[:, :, 0] if squeeze else batch
        x = np.ascontiguousarray(x, dtype=self.dtype)
        t0 = time.perf_counter()
        if self._verified:
            out = self._run(x)
        else:
            out = self._first_run(x)
        self.seconds += time.perf_counter() - t0
        return out[:, :, None] if squeeze else out

    def _first_run(self, x: NDArray[Any]) -> NDArray[Any]:
        """The first batch; a oneDNN kernel that cannot run this program falls back to plain CPU kernels."""
        try:
            out = self._run(x)
        except Exception as exc:
            if not (self.plan.device == "cpu" and self.plan.onednn):
                raise FormatError(f"Paddle failed to run model {str(self.files.model_file)!r}: {exc}") from exc
            note = f"oneDNN off: it failed on this model ({str(exc).strip().splitlines()[-1][:200]})"
            warnings.warn(f"medfuse: {note}; retrying with plain CPU kernels", RuntimeWarning, stacklevel=3)
            self._create(replace(self.plan, onednn=False, notes=(*self.plan.notes, note)))
            try:
                out = self._run(x)
            except Exception as exc2:
                raise FormatError(f"Paddle failed to run model {str(self.files.model_file)!r}: {exc2}") from exc2
        self._verified = True
        return out

    def close(self) -> None:
        """Release the predictor (and its memory pool)."""
        self._predictor = None
        self._input = None


def load_model(files: ModelFiles, plan: ConfigPlan, *, spatial_dims: int, input_dtype: str = "float32"
               ) -> LoadedModel:
    """Create the Paddle predictor of one model with the configuration ``plan``."""
    return LoadedModel(files, plan, spatial_dims=spatial_dims, input_dtype=input_dtype)
