"""Legacy environment (Paddle 2.6, numpy 1, PaddleSeg 2.8): a PaddleSeg UNet exported in the legacy
``model.pdmodel`` format runs through medfuse's runner, and Paddle-3-only models are refused cleanly.

Run by ``.ci/legacy`` (its own virtualenv); collected only with ``--legacy``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from medfuse.errors import ValidationError
from medfuse.inference import ConfigPlan, PaddleEnvironment, Predictor, find_model, load_model, read_signature
from medfuse.inference.plans import Plans
from medfuse.synthetic import phantom

PATCH = (64, 64)


def _plans_2d():
    props = {"mean": 40.0, "sd": 150.0, "percentile_00_5": -990.0, "percentile_99_5": 300.0}
    return {
        "modalities": {0: "CT"}, "normalization_schemes": {0: "CT"}, "use_mask_for_norm": {0: False},
        "dataset_properties": {"intensityproperties": {0: props}}, "num_classes": 2,
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "plans_per_stage": {0: {"patch_size": np.array(PATCH), "current_spacing": np.array([2.5, 1.0, 1.0]),
                                "batch_size": 12}},
        "preprocessor_name": "PreprocessorFor2D",
    }


def test_the_environment_is_the_legacy_one():
    import paddle
    import paddleseg

    assert np.__version__.startswith("1.")
    assert paddle.__version__.startswith("2.6")
    assert paddleseg.__version__ == "2.8.0"
    env = PaddleEnvironment.detect()
    assert env.version[:2] == (2, 6) and not env.cuda


@pytest.fixture(scope="module")
def unet_export(tmp_path_factory):
    """PaddleSeg's UNet, exported the way PaddleSeg's tools/export.py does with ``--output_op softmax``."""
    import paddle
    from paddleseg.models import UNet

    paddle.seed(0)
    net = UNet(num_classes=3, in_channels=1)

    class SoftmaxExport(paddle.nn.Layer):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return paddle.nn.functional.softmax(self.model(x)[0], axis=1)

    wrapped = SoftmaxExport(net)
    wrapped.eval()
    folder = tmp_path_factory.mktemp("unet_export")
    spec = paddle.static.InputSpec([None, 1, *PATCH], "float32", name="x")
    paddle.jit.save(wrapped, str(folder / "model"), input_spec=[spec])
    (folder / "deploy.yaml").write_text(
        "Deploy:\n  input_shape:\n  - -1\n  - 1\n  - 64\n  - 64\n  model: model.pdmodel\n"
        "  output_dtype: float32\n  output_op: softmax\n  params: model.pdiparams\n  transforms:\n"
        "  - type: Normalize\n"
    )
    x = np.random.default_rng(0).standard_normal((2, 1, *PATCH)).astype(np.float32)
    y = wrapped(paddle.to_tensor(x)).numpy()
    return folder, x, y


def test_export_is_found_and_read(unet_export):
    folder, _, _ = unet_export
    files = find_model(folder)
    assert files.format == "pdmodel" and files.output_op == "softmax"
    sig = read_signature(files)
    assert sig.input_shape == (-1, 1, *PATCH) and sig.input_dtype == "float32"
    assert "conv2d" in sig.ops and "bilinear_interp_v2" in sig.ops


@pytest.mark.parametrize("onednn", [False, True])
def test_runner_equals_the_dynamic_graph(unet_export, onednn):
    folder, x, y = unet_export
    model = load_model(find_model(folder), ConfigPlan(device="cpu", threads=2, onednn=onednn), spatial_dims=2)
    np.testing.assert_allclose(model(x), y, rtol=1e-4, atol=1e-4 if onednn else 1e-5)


def test_predictor_end_to_end(unet_export):
    folder, _, _ = unet_export
    ct = phantom((8, 72, 80), num_labels=2, spacing=(2.5, 0.9, 0.9), seed=3)
    with Predictor(folder, plans=_plans_2d(), stage=0) as p:
        assert p.config[0].onednn and p.config[0].memory_optim and p.model_output == "probabilities"
        pred = p.predict(ct.image, geometry=ct.geometry)
    crop = tuple(hi - lo for lo, hi in ct.crop_bbox)
    assert pred.probabilities.shape == (3, *crop)
    np.testing.assert_allclose(pred.probabilities.sum(0), 1, atol=1e-4)
    assert pred.labels.shape == ct.shape


def test_paddle3_json_model_is_refused_not_crashed(unet_export, tmp_path):
    # a Paddle 3 PIR program: Paddle 2.6 segfaults on it, medfuse must refuse it before loading
    doc = {"base_code": {"magic": "pir", "version": 1}, "program": {"regions": [{"blocks": [{"ops": [
        {"#": "1.data", "A": [{"AT": {"#": "0.a_str", "D": "x"}, "N": "name"},
                              {"AT": {"#": "1.a_intarray", "D": [-1, 1, *PATCH]}, "N": "shape"},
                              {"AT": {"#": "1.a_dtype", "D": "float32"}, "N": "dtype"}], "I": [], "O": [{"%": 1}]},
        {"#": "1.conv2d", "A": [], "I": [{"%": 1}], "O": [{"%": 2}]},
    ]}]}]}}
    (tmp_path / "model.json").write_text(json.dumps(doc))
    (tmp_path / "model.pdiparams").write_bytes((unet_export[0] / "model.pdiparams").read_bytes())
    with pytest.raises(ValidationError, match=r"model\.json.*cannot load"):
        Predictor(tmp_path, plans=_plans_2d(), stage=0)


def test_real_plans_unpickle_with_numpy_1(real_data):
    from medfuse.inference import load_plans

    plans = load_plans(real_data / "nnUNetPlansv2.1_plans_3D.pkl")
    assert isinstance(plans, Plans) and plans.num_classes == 11 and len(plans.stages) == 2
