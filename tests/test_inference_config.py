"""The pure Paddle configuration decision (every branch, the GPU one included) and its apply step."""

from __future__ import annotations

from typing import Any

import pytest

from medfuse.errors import ValidationError
from medfuse.inference.config import ConfigPlan, PaddleEnvironment, apply_config, plan_config

CPU_BUILD = PaddleEnvironment(version=(3, 3, 1), cuda=False, gpu_count=0)
GPU_BUILD = PaddleEnvironment(version=(3, 3, 1), cuda=True, gpu_count=2)
GPU_BUILD_NO_DEVICE = PaddleEnvironment(version=(3, 3, 1), cuda=True, gpu_count=0)
PADDLE_26 = PaddleEnvironment(version=(2, 6, 2), cuda=False, gpu_count=0)


class FakeConfig:
    """Records the calls apply_config makes (the names of paddle.inference.Config's methods)."""

    class Precision:
        Float32 = "Float32"
        Half = "Half"

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in {
            "enable_use_gpu", "disable_gpu", "set_cpu_math_library_num_threads", "enable_onednn",
            "disable_onednn", "enable_memory_optim", "disable_glog_info",
        }:
            raise AttributeError(name)
        return lambda *args: self.calls.append((name, args))

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class FakeConfigPaddle2(FakeConfig):
    """Paddle 2.x: oneDNN switches are still called *mkldnn*."""

    def __getattr__(self, name: str) -> Any:
        if name in ("enable_onednn", "disable_onednn"):
            raise AttributeError(name)
        if name in ("enable_mkldnn", "disable_mkldnn"):
            return lambda *args: self.calls.append((name, args))
        return super().__getattr__(name)


def test_auto_picks_the_gpu_when_cuda_and_a_device():
    plan = plan_config(environment=GPU_BUILD, model_format="pdmodel")
    assert plan.device == "gpu" and plan.gpu_id == 0 and not plan.onednn and not plan.fp16
    assert plan.memory_optim


def test_gpu_plan_applies_enable_use_gpu_with_half_precision():
    plan = plan_config(environment=GPU_BUILD, model_format="pdmodel", device="gpu", fp16=True, gpu_id=1,
                       gpu_memory_mb=1024)
    assert plan.device == "gpu" and plan.fp16 and plan.gpu_id == 1
    cfg = FakeConfig()
    apply_config(plan, cfg)
    assert ("enable_use_gpu", (1024, 1, "Half")) in cfg.calls
    assert "disable_gpu" not in cfg.names() and "set_cpu_math_library_num_threads" not in cfg.names()
    assert "enable_memory_optim" in cfg.names()


def test_gpu_plan_without_fp16_keeps_float32():
    cfg = FakeConfig()
    apply_config(plan_config(environment=GPU_BUILD, model_format="json", device="gpu"), cfg)
    assert ("enable_use_gpu", (512, 0)) in cfg.calls
    assert "enable_memory_optim" not in cfg.names()  # breaks .json programs


def test_gpu_on_a_cpu_build_is_a_clear_error():
    with pytest.raises(ValidationError, match=r"CPU-only.*paddlepaddle-gpu"):
        plan_config(environment=CPU_BUILD, model_format="pdmodel", device="gpu")


def test_gpu_with_cuda_but_no_visible_device_is_an_error():
    with pytest.raises(ValidationError, match="sees no GPU"):
        plan_config(environment=GPU_BUILD_NO_DEVICE, model_format="pdmodel", device="gpu")


def test_gpu_id_out_of_range():
    with pytest.raises(ValidationError, match="gpu_id"):
        plan_config(environment=GPU_BUILD, model_format="pdmodel", device="gpu", gpu_id=2)


def test_auto_falls_back_to_cpu_and_says_so():
    plan = plan_config(environment=CPU_BUILD, model_format="pdmodel", fp16=True, cores=6)
    assert plan.device == "cpu" and plan.threads == 6 and plan.onednn and not plan.fp16
    assert any("CPU-only build" in n for n in plan.notes)
    assert any("fp16 dropped" in n for n in plan.notes)
    plan = plan_config(environment=GPU_BUILD_NO_DEVICE, model_format="pdmodel")
    assert plan.device == "cpu" and any("no GPU is visible" in n for n in plan.notes)


def test_cpu_plan_applies_threads_and_onednn():
    plan = plan_config(environment=GPU_BUILD, model_format="pdmodel", device="cpu", threads=3)
    cfg = FakeConfig()
    apply_config(plan, cfg)
    assert cfg.names()[:3] == ["disable_gpu", "set_cpu_math_library_num_threads", "enable_onednn"]
    assert ("set_cpu_math_library_num_threads", (3,)) in cfg.calls
    assert "enable_use_gpu" not in cfg.names()


def test_paddle2_method_names_are_used_when_the_new_ones_are_missing():
    cfg = FakeConfigPaddle2()
    apply_config(plan_config(environment=PADDLE_26, model_format="pdmodel", device="cpu"), cfg)
    assert "enable_mkldnn" in cfg.names()
    cfg = FakeConfigPaddle2()
    apply_config(plan_config(environment=PADDLE_26, model_format="pdmodel", onednn="off"), cfg)
    assert "disable_mkldnn" in cfg.names()


def test_explicit_fp16_on_cpu_is_refused():
    with pytest.raises(ValidationError, match="fp16"):
        plan_config(environment=GPU_BUILD, model_format="pdmodel", device="cpu", fp16=True)


def test_json_model_on_paddle_2_is_refused_before_loading():
    with pytest.raises(ValidationError, match=r"model\.json.*cannot load"):
        plan_config(environment=PADDLE_26, model_format="json")
    assert plan_config(environment=PADDLE_26, model_format="pdmodel").device == "cpu"


def test_memory_optim_is_dropped_for_json_models():
    plan = plan_config(environment=CPU_BUILD, model_format="json")
    assert not plan.memory_optim and any("memory optimisation off" in n for n in plan.notes)
    assert plan_config(environment=CPU_BUILD, model_format="pdmodel").memory_optim


def test_onednn_auto_steps_aside_for_float64_and_json_interpolation():
    assert not plan_config(environment=CPU_BUILD, model_format="pdmodel", input_dtype="float64").onednn
    plan = plan_config(environment=CPU_BUILD, model_format="json", model_ops={"conv2d", "bilinear_interp"})
    assert not plan.onednn and any("bilinear_interp" in n for n in plan.notes)
    # the same operator is fine in a legacy program, and trilinear is fine in both
    assert plan_config(environment=CPU_BUILD, model_format="pdmodel", model_ops={"bilinear_interp_v2"}).onednn
    assert plan_config(environment=CPU_BUILD, model_format="json", model_ops={"trilinear_interp"}).onednn


def test_onednn_on_with_a_blocker_is_an_error():
    with pytest.raises(ValidationError, match="nearest_interp"):
        plan_config(environment=CPU_BUILD, model_format="json", onednn="on", model_ops={"nearest_interp"})
    with pytest.raises(ValidationError, match="float64"):
        plan_config(environment=CPU_BUILD, model_format="pdmodel", onednn="on", input_dtype="float64")


def test_onednn_off_is_applied():
    cfg = FakeConfig()
    apply_config(plan_config(environment=CPU_BUILD, model_format="pdmodel", onednn="off"), cfg)
    assert "disable_onednn" in cfg.names() and "enable_onednn" not in cfg.names()


@pytest.mark.parametrize("kwargs", [
    {"device": "tpu"}, {"onednn": "yes"}, {"threads": 0}, {"model_format": "onnx"}, {"gpu_id": -1},
])
def test_bad_options(kwargs):
    args: dict[str, Any] = {"environment": CPU_BUILD, "model_format": "pdmodel", **kwargs}
    with pytest.raises(ValidationError):
        plan_config(**args)


def test_plan_is_frozen():
    plan = ConfigPlan(device="cpu")
    with pytest.raises(AttributeError):
        plan.device = "gpu"  # type: ignore[misc]


def test_fp16_on_a_build_without_half_precision():
    class NoPrecision:
        def enable_use_gpu(self, *args: Any) -> None:  # pragma: no cover - must not be reached
            raise AssertionError

    with pytest.raises(ValidationError, match="half-precision"):
        apply_config(ConfigPlan(device="gpu", fp16=True), NoPrecision())


def test_json_from_a_newer_paddle_3_is_refused():
    # measured: Paddle 3.0 / 3.1 / 3.2 / 3.3 write PIR versions 1 / 2 / 3 / 4 and fail on newer ones
    old = PaddleEnvironment(version=(3, 0, 0), cuda=False, gpu_count=0)
    with pytest.raises(ValidationError, match=r"exported by Paddle 3\.3 .*paddlepaddle>=3\.3"):
        plan_config(environment=old, model_format="json", pir_version=4)
    assert plan_config(environment=old, model_format="json", pir_version=1).device == "cpu"
    assert plan_config(environment=CPU_BUILD, model_format="json", pir_version=1).device == "cpu"
    assert plan_config(environment=CPU_BUILD, model_format="json", pir_version=4).device == "cpu"
    with pytest.raises(ValidationError, match=r"newer than 3\.3"):
        plan_config(environment=CPU_BUILD, model_format="json", pir_version=9)
    # releases after 3.3 are not second-guessed
    assert plan_config(environment=PaddleEnvironment((3, 4, 0), False, 0), model_format="json", pir_version=5)
