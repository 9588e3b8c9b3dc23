"""How to configure Paddle Inference, decided by a pure function and applied in a tiny step.

:func:`plan_config` turns facts about the installation (Paddle version, CUDA build, visible GPUs) and the
model (file format, input dtype, operators) plus the user's wishes (device, fp16, threads, oneDNN) into a
frozen :class:`ConfigPlan`, with a note for every decision the user did not make explicitly. It imports
nothing, so every branch (the GPU one included) is unit-tested on any machine. :func:`apply_config` then
calls the matching methods on a ``paddle.inference.Config`` (or anything with the same methods).

Known traps it steers around (Paddle Inference 2.6 - 3.3):

* ``model.json`` (PIR) models crash Paddle < 3 (segfault): refused. A ``model.json`` written by a newer
  Paddle 3.x than the installed one fails to load (its format version is newer): refused with the fix.
* ``enable_memory_optim()`` breaks ``model.json`` models: only used with ``model.pdmodel``.
* oneDNN (on by default on CPU, 6-10x faster) rejects float64 input, and fails on ``model.json`` models
  with bilinear / nearest interpolation: switched off there.
* ``enable_use_gpu()`` on a CPU-only build silently runs on the CPU: ``device="gpu"`` is refused there.
* The CPU default is one thread: all available cores are used unless told otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from .._core.validation import as_threads
from ..errors import ValidationError

__all__ = [
    "ONEDNN_INCOMPATIBLE_JSON_OPS",
    "PIR_VERSION_READ",
    "ConfigPlan",
    "Device",
    "ModelFormat",
    "PaddleEnvironment",
    "apply_config",
    "available_cores",
    "plan_config",
]

Device = Literal["auto", "gpu", "cpu"]
ModelFormat = Literal["json", "pdmodel"]
OneDNN = Literal["auto", "on", "off"]

#: Newest ``model.json`` (PIR) serialisation version each Paddle 3 release reads (``base_code.version``,
#: measured: 3.0 writes 1, 3.1 writes 2, 3.2 writes 3, 3.3 writes 4; a reader fails on any newer version
#: with "Type of attribute ... is not right"; newer releases read older files).
PIR_VERSION_READ: dict[tuple[int, int], int] = {(3, 0): 1, (3, 1): 2, (3, 2): 3, (3, 3): 4}
_PIR_WRITER: dict[int, str] = {1: "3.0", 2: "3.1", 3: "3.2", 4: "3.3"}

#: Operators of PIR (``model.json``) programs that oneDNN cannot run in Paddle 3.x
#: ("ConvertPirAttribute2RuntimeAttribute not support ArrayAttribute<DoubleAttribute>").
ONEDNN_INCOMPATIBLE_JSON_OPS: frozenset[str] = frozenset(
    {"bilinear_interp", "nearest_interp", "bicubic_interp", "linear_interp"}
)


@dataclass(frozen=True)
class PaddleEnvironment:
    """What the installed Paddle can do.

    Attributes
    ----------
    version : tuple of int
        ``(major, minor, patch)``; ``(0, 0, 0)`` for a development build.
    cuda : bool
        Built with CUDA (``paddle.is_compiled_with_cuda()``).
    gpu_count : int
        CUDA devices visible to this process.
    """

    version: tuple[int, int, int]
    cuda: bool
    gpu_count: int

    @classmethod
    def detect(cls) -> PaddleEnvironment:
        """Ask the installed Paddle (imports it)."""
        from ._paddle import import_paddle, paddle_version

        paddle = import_paddle()
        cuda = bool(paddle.is_compiled_with_cuda())
        count = 0
        if cuda:
            try:
                count = int(paddle.device.cuda.device_count())
            except Exception:  # a broken driver: no usable device
                count = 0
        return cls(version=paddle_version(), cuda=cuda, gpu_count=count)


@dataclass(frozen=True)
class ConfigPlan:
    """Everything :func:`apply_config` sets on a Paddle ``Config``.

    Attributes
    ----------
    device : {"gpu", "cpu"}
    gpu_id : int
    gpu_memory_mb : int
        Initial GPU memory pool (``enable_use_gpu``'s first argument).
    fp16 : bool
        Half-precision GPU inference (``precision_mode=Half``).
    threads : int
        CPU math threads.
    onednn : bool
        oneDNN (MKL-DNN) kernels on CPU.
    memory_optim : bool
        ``enable_memory_optim()`` (reuse of intermediate buffers).
    notes : tuple of str
        Why a default was chosen or a wish was overridden (for logs and the CLI).
    """

    device: Literal["gpu", "cpu"]
    gpu_id: int = 0
    gpu_memory_mb: int = 512
    fp16: bool = False
    threads: int = 1
    onednn: bool = False
    memory_optim: bool = False
    notes: tuple[str, ...] = ()


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def plan_config(
    *,
    environment: PaddleEnvironment,
    model_format: ModelFormat,
    device: Device = "auto",
    fp16: bool = False,
    threads: int | None = None,
    onednn: OneDNN = "auto",
    gpu_id: int = 0,
    gpu_memory_mb: int = 512,
    memory_optim: bool = True,
    input_dtype: str = "float32",
    model_ops: Collection[str] = (),
    pir_version: int | None = None,
    cores: int | None = None,
) -> ConfigPlan:
    """Decide the Paddle Inference configuration (pure: no import, no side effect).

    Parameters
    ----------
    environment : PaddleEnvironment
        Version, CUDA build and visible devices (``PaddleEnvironment.detect()``).
    model_format : {"json", "pdmodel"}
        ``json``: Paddle 3 PIR program; ``pdmodel``: Paddle 2.x / legacy program.
    device : {"auto", "gpu", "cpu"}
        ``auto``: the GPU when Paddle is built with CUDA and a device is visible, else the CPU.
    fp16 : bool
        Half precision on the GPU (refused on an explicit CPU run; dropped with a note when ``auto``
        falls back to the CPU).
    threads : int, optional
        CPU threads (default: every available core).
    onednn : {"auto", "on", "off"}
        oneDNN on CPU. ``auto``: on, unless the model cannot run with it.
    gpu_id, gpu_memory_mb : int
        Device and initial memory pool.
    memory_optim : bool
        Ask for buffer reuse (ignored, with a note, for ``json`` models which it breaks).
    input_dtype : str
        The model's input dtype (float64 input cannot run under oneDNN).
    model_ops : collection of str
        Operator names of the program (to spot those oneDNN cannot run in ``json`` models).
    pir_version : int, optional
        ``base_code.version`` of a ``json`` model: refused when the installed Paddle 3.x is too old to read it.
    cores : int, optional
        Cores available (default :func:`available_cores`).

    Returns
    -------
    ConfigPlan
    """
    _check_options(device=device, onednn=onednn, model_format=model_format, gpu_id=gpu_id)
    _check_readable(environment, model_format, pir_version)
    threads = as_threads(threads)
    notes: list[str] = []
    use_gpu = _use_gpu(environment, device, notes)
    mem_optim = bool(memory_optim)
    if mem_optim and model_format == "json":
        mem_optim = False
        notes.append("memory optimisation off: enable_memory_optim() breaks model.json (PIR) programs")
    if use_gpu:
        if gpu_id >= environment.gpu_count:
            raise ValidationError(
                f"`gpu_id` must be below the number of visible GPUs ({environment.gpu_count}); got {gpu_id}."
            )
        if onednn == "on":
            notes.append("oneDNN is a CPU library: ignored on the GPU")
        return ConfigPlan(device="gpu", gpu_id=int(gpu_id), gpu_memory_mb=int(gpu_memory_mb), fp16=bool(fp16),
                          threads=1, onednn=False, memory_optim=mem_optim, notes=tuple(notes))
    if fp16:
        if device == "cpu":
            raise ValidationError("`fp16=True` needs the GPU; Paddle Inference runs float32 on the CPU. "
                                  "Drop fp16 or use device='gpu'.")
        notes.append("fp16 dropped: it needs a GPU")
    n_threads = threads if threads is not None else (cores if cores is not None else available_cores())
    if threads is None:
        notes.append(f"CPU threads: {n_threads} (every available core)")
    use_onednn = _use_onednn(onednn, model_format=model_format, input_dtype=input_dtype, model_ops=model_ops,
                             notes=notes)
    return ConfigPlan(device="cpu", threads=n_threads, onednn=use_onednn, memory_optim=mem_optim,
                      notes=tuple(notes))


def _check_options(*, device: object, onednn: object, model_format: object, gpu_id: int) -> None:
    if device not in ("auto", "gpu", "cpu"):
        raise ValidationError(f"`device` must be 'auto', 'gpu' or 'cpu'; got {device!r}.")
    if onednn not in ("auto", "on", "off"):
        raise ValidationError(f"`onednn` must be 'auto', 'on' or 'off'; got {onednn!r}.")
    if model_format not in ("json", "pdmodel"):
        raise ValidationError(f"`model_format` must be 'json' or 'pdmodel'; got {model_format!r}.")
    if gpu_id < 0:
        raise ValidationError(f"`gpu_id` must be >= 0; got {gpu_id}.")


def _check_readable(environment: PaddleEnvironment, model_format: ModelFormat, pir_version: int | None) -> None:
    """Refuse a ``json`` (PIR) program the installed Paddle cannot read."""
    version = tuple(environment.version)
    dev_build = version == (0, 0, 0)
    if model_format == "json" and not dev_build and version < (3, 0, 0):
        raise ValidationError(
            f"this model is a Paddle 3 `model.json` (PIR) program, which Paddle {'.'.join(map(str, version))} "
            "cannot load (it crashes). Upgrade Paddle (pip install 'paddlepaddle>=3'), or re-export the model "
            "as `model.pdmodel` with Paddle 2.x, or with Paddle 3 and FLAGS_enable_pir_api=0."
        )
    readable = PIR_VERSION_READ.get((version[0], version[1]))
    if model_format == "json" and pir_version is not None and readable is not None and pir_version > readable:
        writer = _PIR_WRITER.get(pir_version)
        upgrade = f"pip install 'paddlepaddle>={writer}'" if writer else "pip install -U paddlepaddle"
        raise ValidationError(
            f"this model.json was exported by Paddle {writer or 'newer than 3.3'} (PIR format version "
            f"{pir_version}), which Paddle {'.'.join(map(str, version))} cannot read (it reads versions <= "
            f"{readable}). Upgrade Paddle ({upgrade}), or re-export the model as model.pdmodel "
            "(FLAGS_enable_pir_api=0), which every Paddle version reads."
        )


def _use_gpu(environment: PaddleEnvironment, device: Device, notes: list[str]) -> bool:
    if device == "gpu":
        if not environment.cuda:
            raise ValidationError(
                "`device='gpu'` needs a CUDA build of Paddle, but the installed `paddlepaddle` is CPU-only "
                "(Paddle would silently run on the CPU). Install `paddlepaddle-gpu` "
                "(pip install 'medfuse[paddle-gpu]', or a newer CUDA build from Paddle's own package index), "
                "or use device='cpu'."
            )
        if environment.gpu_count == 0:
            raise ValidationError(
                "`device='gpu'`: Paddle is built with CUDA but sees no GPU (check the driver and "
                "CUDA_VISIBLE_DEVICES), or use device='cpu'."
            )
        return True
    if device == "auto":
        use_gpu = environment.cuda and environment.gpu_count > 0
        if not use_gpu:
            why = "Paddle is a CPU-only build" if not environment.cuda else "no GPU is visible"
            notes.append(f"device 'auto': {why}, running on the CPU")
        return use_gpu
    return False


def _use_onednn(onednn: OneDNN, *, model_format: ModelFormat, input_dtype: str, model_ops: Collection[str],
                notes: list[str]) -> bool:
    blockers: list[str] = []
    if str(input_dtype) == "float64":
        blockers.append("the model takes float64 input, which oneDNN rejects")
    bad_ops = sorted(ONEDNN_INCOMPATIBLE_JSON_OPS.intersection(model_ops)) if model_format == "json" else []
    if bad_ops:
        blockers.append(f"oneDNN cannot run {', '.join(bad_ops)} in model.json (PIR) programs")
    if onednn == "on" and blockers:
        raise ValidationError(
            f"`onednn='on'` cannot work for this model: {'; '.join(blockers)}. Use onednn='auto' or 'off'"
            + (", or re-export the model as model.pdmodel (FLAGS_enable_pir_api=0)" if bad_ops else "") + "."
        )
    if onednn == "auto" and blockers:
        notes.append(f"oneDNN off ({'; '.join(blockers)}): expect a slower CPU run")
    return onednn == "on" or (onednn == "auto" and not blockers)


def apply_config(plan: ConfigPlan, config: Any) -> Any:
    """Set ``plan`` on a ``paddle.inference.Config`` (or an object with the same methods); returns it.

    Newer method names (``enable_onednn``) are preferred, older ones (``enable_mkldnn``, Paddle 2.x) used
    when the newer are absent.
    """
    if plan.device == "gpu":
        if plan.fp16:
            precision = getattr(getattr(type(config), "Precision", None), "Half", None)
            if precision is None:
                raise ValidationError("this Paddle build has no half-precision mode (Config.Precision.Half); "
                                      "run without fp16.")
            config.enable_use_gpu(plan.gpu_memory_mb, plan.gpu_id, precision)
        else:
            config.enable_use_gpu(plan.gpu_memory_mb, plan.gpu_id)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(plan.threads)
        if plan.onednn:
            _call_first(config, "enable_onednn", "enable_mkldnn")
        else:
            _call_first(config, "disable_onednn", "disable_mkldnn")
    if plan.memory_optim:
        config.enable_memory_optim()
    if hasattr(config, "disable_glog_info"):
        config.disable_glog_info()
    return config


def _call_first(obj: Any, *names: str) -> None:
    for name in names:
        method = getattr(obj, name, None)
        if method is not None:
            method()
            return
    # neither exists: this build has no oneDNN switch (nothing to do)
