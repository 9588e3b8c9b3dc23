"""Tiny Paddle networks exported inside the tests, and synthetic plans that match them.

``export_models(specs, root, fmt)`` builds each network with a fixed seed, exports it with
``paddle.jit.save`` and saves a reference tile (input and dynamic-graph output) beside it as
``reference.npz``. Export runs in a subprocess: the legacy ``model.pdmodel`` format needs
``FLAGS_enable_pir_api=0`` before Paddle is imported, and the test process keeps a clean Paddle.

Run as a script it exports: ``python paddle_models.py SPECS_JSON ROOT``.

Networks (all fully convolutional, input ``[-1, C_in, *patch]`` with the patch fixed as MedicalSeg exports):

* ``conv3d``: conv 3x3x3 -> ReLU -> avg-pool 2 -> trilinear x2 -> conv 1x1x1 -> softmax (3D, not
  flip-equivariant);
* ``conv2d``: the 2D analogue with bilinear upsampling (which oneDNN cannot run in ``model.json``);
* ``pointwise3d``: one 1x1x1 conv + softmax: equivariant to every flip (for the TTA test);
* ``logits3d``: ``conv3d`` without the softmax;
* ``argmax3d``: ``conv3d`` ending in an argmax (what PaddleSeg's default ``--output_op argmax`` exports).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def make_plans(
    *, num_classes: int = 2, num_modalities: int = 1, stages: tuple[dict[str, Any], ...] | None = None,
    scheme: str = "CT", transpose_forward: tuple[int, int, int] = (0, 1, 2),
    preprocessor_name: str = "GenericPreprocessor",
) -> dict[str, Any]:
    """A small plans dict with the real file's structure (see ``nnUNetPlansv2.1_plans_3D.pkl``)."""
    if stages is None:
        stages = (
            {"patch_size": np.array([8, 16, 16]), "current_spacing": np.array([4.0, 2.4, 2.4]), "batch_size": 2},
            {"patch_size": np.array([8, 16, 16]), "current_spacing": np.array([2.5, 1.6, 1.6]), "batch_size": 2},
        )
    tb = tuple(int(i) for i in np.argsort(transpose_forward))
    props = {"mean": np.float32(40.0), "sd": np.float32(150.0), "percentile_00_5": np.float64(-990.0),
             "percentile_99_5": np.float64(300.0), "median": np.float32(50.0)}
    return {
        "num_stages": len(stages),
        "num_modalities": num_modalities,
        "modalities": {i: "CT" for i in range(num_modalities)},
        "normalization_schemes": {i: scheme for i in range(num_modalities)},
        "use_mask_for_norm": {i: False for i in range(num_modalities)},
        "dataset_properties": {"intensityproperties": {i: dict(props) for i in range(num_modalities)}},
        "num_classes": num_classes,
        "all_classes": list(range(1, num_classes + 1)),
        "transpose_forward": list(transpose_forward),
        "transpose_backward": list(tb),
        "plans_per_stage": dict(enumerate(stages)),
        "preprocessor_name": preprocessor_name,
    }


def make_plans_2d(*, num_classes: int = 2, patch: tuple[int, int] = (16, 16),
                  spacing: tuple[float, float, float] = (2.5, 1.6, 1.6)) -> dict[str, Any]:
    return make_plans(
        num_classes=num_classes,
        stages=({"patch_size": np.array(patch), "current_spacing": np.array(spacing), "batch_size": 12},),
        preprocessor_name="PreprocessorFor2D",
    )


def export_models(specs: list[dict[str, Any]], root: Path, *, fmt: str) -> dict[str, Path]:
    """Export every spec (``name``, ``kind``, ``in_channels``, ``num_classes``, ``patch``, ``seed``) under
    ``root/<name>/`` in ``fmt`` ("json" or "pdmodel"); returns name -> folder."""
    root.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["FLAGS_enable_pir_api"] = "0" if fmt == "pdmodel" else "1"
    env.setdefault("GLOG_minloglevel", "2")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), json.dumps(specs), str(root)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"exporting test models failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = {s["name"]: root / s["name"] for s in specs}
    suffix = ".json" if fmt == "json" else ".pdmodel"
    for name, folder in out.items():
        if not (folder / f"model{suffix}").is_file():
            raise RuntimeError(f"export of {name} did not write model{suffix}: {sorted(os.listdir(folder))}")
    return out


#: the networks the inference tests share (plans: ``make_plans()``: 1 CT modality, 2 labels -> 3 classes)
STANDARD_SPECS: list[dict[str, Any]] = [
    {"name": "conv3d", "kind": "conv3d", "in_channels": 1, "num_classes": 3, "patch": [8, 16, 16], "seed": 0},
    {"name": "conv3d_fold1", "kind": "conv3d", "in_channels": 1, "num_classes": 3, "patch": [8, 16, 16], "seed": 5},
    {"name": "conv2d", "kind": "conv2d", "in_channels": 1, "num_classes": 3, "patch": [16, 16], "seed": 1},
    {"name": "cascade", "kind": "conv3d", "in_channels": 3, "num_classes": 3, "patch": [8, 16, 16], "seed": 2},
    {"name": "pointwise3d", "kind": "pointwise3d", "in_channels": 1, "num_classes": 3, "patch": [8, 16, 16]},
    {"name": "logits3d", "kind": "logits3d", "in_channels": 1, "num_classes": 3, "patch": [8, 16, 16], "seed": 3},
    {"name": "deploy_softmax", "kind": "conv3d", "in_channels": 1, "num_classes": 3, "patch": [8, 16, 16],
     "seed": 4, "deploy": "softmax"},
]
#: only exportable in the PIR format (dy2static's argmax fails under FLAGS_enable_pir_api=0)
JSON_ONLY_SPECS: list[dict[str, Any]] = [
    {"name": "argmax3d", "kind": "argmax3d", "in_channels": 1, "num_classes": 3, "patch": [8, 16, 16],
     "deploy": "argmax"},
]

_EXPORTED: dict[str, dict[str, Path]] = {}


def exported(root: Path, fmt: str) -> dict[str, Path]:
    """The standard networks exported once per test session (``root`` from ``tmp_path_factory``)."""
    if fmt not in _EXPORTED:
        specs = STANDARD_SPECS + (JSON_ONLY_SPECS if fmt == "json" else [])
        _EXPORTED[fmt] = export_models(specs, root / fmt, fmt=fmt)
    return _EXPORTED[fmt]


def _build(paddle: Any, kind: str, in_channels: int, num_classes: int, dims: int) -> Any:
    nn, F = paddle.nn, paddle.nn.functional
    conv = nn.Conv3D if dims == 3 else nn.Conv2D
    pool = F.avg_pool3d if dims == 3 else F.avg_pool2d
    mode = "trilinear" if dims == 3 else "bilinear"

    class Net(nn.Layer):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            if kind == "pointwise":
                self.head = conv(in_channels, num_classes, 1)
            else:
                self.body = conv(in_channels, 6, 3, padding=1)
                self.head = conv(6, num_classes, 1)

        def forward(self, x: Any) -> Any:
            if kind == "pointwise":
                return F.softmax(self.head(x), axis=1)
            y = F.relu(self.body(x))
            y = F.interpolate(pool(y, 2), scale_factor=2, mode=mode)
            y = self.head(y) + 0.1 * self.body(x)[:, :1]  # keep some full-resolution detail
            if kind == "logits":
                return y
            if kind == "argmax":
                return paddle.argmax(y, axis=1, keepdim=True).astype("int32")
            return F.softmax(y, axis=1)

    return Net()


def _export_main(specs: list[dict[str, Any]], root: Path) -> None:
    import paddle

    for spec in specs:
        paddle.seed(int(spec.get("seed", 0)))
        kind = spec["kind"]
        dims = 2 if kind.endswith("2d") else 3
        base = {"conv3d": "softmax", "conv2d": "softmax", "pointwise3d": "pointwise", "logits3d": "logits",
                "argmax3d": "argmax"}[kind]
        net = _build(paddle, base, int(spec["in_channels"]), int(spec["num_classes"]), dims)
        net.eval()
        patch = [int(p) for p in spec["patch"]]
        folder = root / spec["name"]
        folder.mkdir(parents=True, exist_ok=True)
        spec_in = paddle.static.InputSpec([-1, int(spec["in_channels"]), *patch], "float32", name="image")
        rng = np.random.default_rng(int(spec.get("seed", 0)))
        x = rng.standard_normal((2, int(spec["in_channels"]), *patch)).astype(np.float32)
        y = net(paddle.to_tensor(x)).numpy()
        paddle.jit.save(net, str(folder / "model"), input_spec=[spec_in])
        np.savez(folder / "reference.npz", input=x, output=y)
        if spec.get("deploy"):
            model_name = "model.json" if (folder / "model.json").is_file() else "model.pdmodel"
            (folder / "deploy.yaml").write_text(
                "Deploy:\n"
                f"  model: {model_name}\n"
                f"  output_op: {spec['deploy']}\n"
                "  params: model.pdiparams\n"
                "  transforms: []\n"
            )


if __name__ == "__main__":
    _export_main(json.loads(sys.argv[1]), Path(sys.argv[2]))
