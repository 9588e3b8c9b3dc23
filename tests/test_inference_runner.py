"""The Predictor on tiny networks exported inside the tests, in both formats (Paddle 3 ``model.json`` and
legacy ``model.pdmodel``): equality with the dynamic graph, TTA, folds, 2D, cascade, end to end on a
synthetic CT into a v1 folder that the fusion reads, and clear errors for bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from medfuse import fusion, io
from medfuse.errors import FormatError, GeometryMismatchError, ValidationError
from medfuse.geometry import Geometry
from medfuse.inference import ConfigPlan, Predictor, find_model, load_model, read_signature
from medfuse.synthetic import phantom
from paddle_models import exported, make_plans, make_plans_2d

pytestmark = pytest.mark.paddle

FORMATS = ["json", "pdmodel"]


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    return tmp_path_factory.mktemp("paddle_models")


@pytest.fixture(scope="session", params=FORMATS)
def models(request, models_root):
    return request.param, exported(models_root, request.param)


@pytest.fixture(scope="session")
def json_models(models_root):
    return exported(models_root, "json")


@pytest.fixture(scope="module")
def ct():
    # CT-like, 2.5 mm slices and a non-trivial crop box; network grid at (2.5, 1.6, 1.6) is ~ (20, 22, 24)
    return phantom((20, 48, 52), num_labels=2, spacing=(2.5, 0.8, 0.8), seed=11)


PLANS = make_plans(num_classes=2)
PLANS_2D = make_plans_2d(num_classes=2)


# ------------------------------------------------------------------------------------------------------
# the runner is the network


@pytest.mark.parametrize("name,spatial", [("conv3d", 3), ("conv2d", 2), ("cascade", 3), ("logits3d", 3)])
def test_runner_equals_the_dynamic_graph_on_a_tile(models, name, spatial):
    fmt, folders = models
    files = find_model(folders[name])
    assert files.format == fmt
    ref = np.load(folders[name] / "reference.npz")
    for onednn in (False, True):
        if onednn and fmt == "json" and spatial == 2:
            continue  # bilinear in a PIR program: oneDNN cannot run it (the plan turns it off)
        model = load_model(files, ConfigPlan(device="cpu", threads=2, onednn=onednn), spatial_dims=spatial)
        out = model(ref["input"])
        assert out.shape == ref["output"].shape and out.dtype == np.float32
        np.testing.assert_allclose(out, ref["output"], rtol=1e-4, atol=2e-5 if onednn else 1e-6)
        assert model.seconds > 0
        model.close()


def files_format(folders):
    return find_model(folders["cascade"]).format


def test_signatures_of_exported_models(models):
    _, folders = models
    sig = read_signature(find_model(folders["cascade"]))
    assert sig.input_shape == (-1, 3, 8, 16, 16) and sig.input_dtype == "float32" and sig.input_name == "image"
    assert "conv3d" in sig.ops
    assert (sig.pir_version is not None) == (files_format(folders) == "json")
    sig2 = read_signature(find_model(folders["conv2d"]))
    assert sig2.input_shape == (-1, 1, 16, 16)
    assert any(op.startswith("bilinear_interp") for op in sig2.ops)


def test_2d_json_model_runs_without_onednn_and_pdmodel_with_it(models):
    fmt, folders = models
    p = Predictor(folders["conv2d"], plans=PLANS_2D, stage=0, device="cpu")
    assert p.config[0].onednn == (fmt == "pdmodel")
    assert p.patch_size == (1, 16, 16) and p.mirror_axes == (1, 2) and p.spatial_dims == 2


def test_onednn_failure_at_run_time_falls_back(json_models):
    files = find_model(json_models["conv2d"])
    ref = np.load(json_models["conv2d"] / "reference.npz")
    model = load_model(files, ConfigPlan(device="cpu", threads=1, onednn=True), spatial_dims=2)
    with pytest.warns(RuntimeWarning, match="oneDNN off"):
        out = model(ref["input"])
    np.testing.assert_allclose(out, ref["output"], rtol=1e-4, atol=1e-6)
    assert not model.plan.onednn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(ref["input"])  # no second warning


# ------------------------------------------------------------------------------------------------------
# whole cases


def test_predict_a_ct_case(models, ct):
    _, folders = models
    with Predictor(folders["conv3d"], plans=PLANS, stage=1, device="auto") as p:
        assert p.device == "cpu" and p.patch_size == (8, 16, 16) and p.mirror_axes == (0, 1, 2)
        assert p.batch_size == 1 and not p.is_cascade
        pred = p.predict(ct.image, geometry=ct.geometry)
    crop = tuple(hi - lo for lo, hi in ct.crop_bbox)
    assert pred.crop_bbox == ct.crop_bbox and pred.geometry == ct.geometry
    assert pred.probabilities is not None and pred.probabilities.shape == (3, *crop)
    np.testing.assert_allclose(pred.probabilities.sum(0), 1, atol=1e-4)
    assert pred.labels is not None and pred.labels.shape == ct.shape and pred.labels.dtype == np.uint8
    np.testing.assert_array_equal(pred.labels[tuple(slice(lo, hi) for lo, hi in ct.crop_bbox)],
                                  pred.probabilities.argmax(0))
    outside = np.ones(ct.shape, bool)
    outside[tuple(slice(lo, hi) for lo, hi in ct.crop_bbox)] = False
    assert not pred.labels[outside].any()
    t = pred.timings
    assert t.predictor > 0 and t.preprocess > 0 and 0 <= t.outside_predictor_share < 1


def test_same_result_from_both_formats(models_root, ct):
    preds = [Predictor(exported(models_root, fmt)["conv3d"], plans=PLANS, stage=1, onednn="off").predict(
        ct.image, geometry=ct.geometry) for fmt in FORMATS]
    np.testing.assert_allclose(preds[0].probabilities, preds[1].probabilities, atol=1e-5)


def test_tta_on_a_flip_equivariant_network(json_models, ct):
    kw = dict(plans=PLANS, stage=1)
    with_tta = Predictor(json_models["pointwise3d"], tta=True, **kw).predict(ct.image, geometry=ct.geometry)
    without = Predictor(json_models["pointwise3d"], tta=False, **kw).predict(ct.image, geometry=ct.geometry)
    np.testing.assert_allclose(with_tta.probabilities, without.probabilities, atol=2e-5)
    # and for a network that is not equivariant, TTA does change the result
    a = Predictor(json_models["conv3d"], tta=True, **kw).predict(ct.image, geometry=ct.geometry)
    b = Predictor(json_models["conv3d"], tta=False, **kw).predict(ct.image, geometry=ct.geometry)
    assert np.abs(a.probabilities - b.probabilities).max() > 1e-3


def test_folds_are_averaged_and_residency_does_not_matter(json_models, ct):
    folds = [json_models["conv3d"], json_models["conv3d_fold1"]]
    both = Predictor(folds, plans=PLANS, stage=1, folds_resident="all").predict(ct.image, geometry=ct.geometry)
    one_at_a_time = Predictor(folds, plans=PLANS, stage=1, folds_resident="one")
    assert one_at_a_time.folds_resident == "one"
    again = one_at_a_time.predict(ct.image, geometry=ct.geometry)
    np.testing.assert_allclose(again.probabilities, both.probabilities, atol=1e-6)
    singles = [Predictor(f, plans=PLANS, stage=1).predict(ct.image, geometry=ct.geometry).probabilities
               for f in folds]
    # the mean is taken on the network grid; resampling (linear) commutes with it
    np.testing.assert_allclose(both.probabilities, np.mean(singles, axis=0), atol=1e-5)


def test_logits_model_gets_a_softmax(json_models, ct):
    p = Predictor(json_models["logits3d"], plans=PLANS, stage=1)
    pred = p.predict(ct.image, geometry=ct.geometry)
    np.testing.assert_allclose(pred.probabilities.sum(0), 1, atol=1e-4)
    assert pred.probabilities.min() >= 0


def test_deploy_yaml_export(json_models, ct):
    p = Predictor(json_models["deploy_softmax"], plans=PLANS, stage=1)
    assert p.model_output == "probabilities" and p.models[0].output_op == "softmax"
    assert p.predict(ct.image, spacing=ct.spacing).labels.shape == ct.shape


def test_2d_model_slice_by_slice(models, ct):
    _, folders = models
    pred = Predictor(folders["conv2d"], plans=PLANS_2D, stage=0).predict(ct.image, geometry=ct.geometry)
    crop = tuple(hi - lo for lo, hi in ct.crop_bbox)
    assert pred.probabilities.shape == (3, *crop)
    assert pred.size_after_resampling[0] == crop[0]  # slices are not resampled in 2D
    np.testing.assert_allclose(pred.probabilities.sum(0), 1, atol=1e-4)


def test_cascade_full_res(models, ct):
    _, folders = models
    p = Predictor(folders["cascade"], plans=PLANS, stage=1)
    assert p.is_cascade
    pred = p.predict(ct.image, geometry=ct.geometry, lowres=ct.labels, lowres_geometry=ct.geometry)
    other = p.predict(ct.image, geometry=ct.geometry, lowres=np.zeros_like(ct.labels))
    assert np.abs(pred.probabilities - other.probabilities).max() > 1e-3  # the low-res channels matter
    with pytest.raises(ValidationError, match="low-res stage's segmentation"):
        p.predict(ct.image, geometry=ct.geometry)
    with pytest.raises(GeometryMismatchError, match="shape"):
        p.predict(ct.image, geometry=ct.geometry, lowres=ct.labels[:, :-1])
    moved = Geometry(ct.shape, (3.0, 0.8, 0.8), ct.geometry.origin, ct.geometry.direction)
    with pytest.raises(GeometryMismatchError, match="spacing"):
        p.predict(ct.image, geometry=ct.geometry, lowres=ct.labels, lowres_geometry=moved)


def test_predict_into_an_accumulator(json_models, ct):
    p = Predictor(json_models["conv3d"], plans=PLANS, stage=1)
    full = p.predict(ct.image, geometry=ct.geometry)
    acc = fusion.ProbabilityAccumulator(3, ct.shape)
    res = p.predict_into(acc, ct.image, geometry=ct.geometry, weight=2.0)
    assert res.probabilities is None and res.crop_bbox == ct.crop_bbox
    pasted = np.zeros((3, *ct.shape), np.float32)
    pasted[0] = 1
    pasted[(slice(None), *(slice(lo, hi) for lo, hi in ct.crop_bbox))] = full.probabilities
    np.testing.assert_allclose(acc.probabilities(), pasted, atol=1e-6)
    np.testing.assert_array_equal(acc.labels(), full.labels)
    with pytest.raises(GeometryMismatchError):
        p.predict_into(fusion.ProbabilityAccumulator(3, (4, 4, 4)), ct.image, geometry=ct.geometry)


# ------------------------------------------------------------------------------------------------------
# folders


def _write_images(folder, cases):
    folder.mkdir(parents=True, exist_ok=True)
    for name, ph in cases.items():
        io.write_nifti(folder / f"{name}_0000.nii.gz", ph.image.astype(np.int16), ph.geometry)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    cases = {"case_a": phantom((16, 40, 44), num_labels=2, seed=1, direction=(1, 0, 0, 0, -1, 0, 0, 0, 1)),
             "case_b": phantom((18, 36, 40), num_labels=2, seed=2)}
    _write_images(root / "imagesTs", cases)
    return root / "imagesTs", cases


def test_folder_end_to_end_is_read_back(json_models, image_folder, tmp_path):
    images, cases = image_folder
    p3d = Predictor([json_models["conv3d"], json_models["conv3d_fold1"]], plans=PLANS, stage=1)
    report = p3d.predict_folder(images, tmp_path / "pred_3d", save_probabilities=True, progress=False)
    assert report.written == ("case_a", "case_b") and report.skipped == ()
    assert report.timings.predictor > 0 and report.timings.write > 0
    folder = io.open_folder(tmp_path / "pred_3d")
    assert folder.layout == "v1" and list(folder.cases) == ["case_a", "case_b"]
    for name, ph in cases.items():
        src = folder.case(name)
        assert src.geometry.matches(ph.geometry) and tuple(map(tuple, src.crop_bbox)) == ph.crop_bbox
        assert src.num_classes == 3
        probs = src.read_probabilities()
        assert probs.dtype == np.float16 and probs.shape == (3, *(hi - lo for lo, hi in ph.crop_bbox))
        labels = src.read_labels()
        # (the geometry read back from the file: NIfTI stores spacing in float32, which can move nnU-Net's
        # rounding of the network grid size by one voxel)
        image, geometry = io.read_nifti(images / f"{name}_0000.nii.gz")
        direct = p3d.predict(image, geometry=geometry)
        np.testing.assert_array_equal(labels, direct.labels)
        assert src.properties["size_after_resampling"] == direct.size_after_resampling
    # a re-run resumes: nothing left to do
    again = p3d.predict_folder(images, tmp_path / "pred_3d", save_probabilities=True, progress=False)
    assert again.written == () and again.skipped == ("case_a", "case_b")


def test_predicted_folders_are_fused(json_models, image_folder, tmp_path):
    from medfuse.folders import fuse_folders

    images, cases = image_folder
    Predictor(json_models["conv3d"], plans=PLANS, stage=1).predict_folder(
        images, tmp_path / "pred_3d", save_probabilities=True, progress=False)
    Predictor(json_models["conv2d"], plans=PLANS_2D, stage=0).predict_folder(
        images, tmp_path / "pred_2d", save_probabilities=True, progress=False)
    fused = fuse_folders([tmp_path / "pred_3d", tmp_path / "pred_2d"], tmp_path / "fused", progress=False)
    assert sorted(fused.written) == ["case_a", "case_b"]
    out, geo = io.read_nifti(tmp_path / "fused" / "case_a.nii.gz")
    assert geo.matches(cases["case_a"].geometry) and out.shape == cases["case_a"].shape
    assert set(np.unique(out)) <= {0, 1, 2}


def test_labels_only_folder(models, image_folder, tmp_path):
    _, folders = models
    images, cases = image_folder
    Predictor(folders["conv3d"], plans=PLANS, stage=1).predict_folder(images, tmp_path / "out", progress=False,
                                                                      cases=["case_b"])
    assert sorted(f.name for f in (tmp_path / "out").iterdir() if not f.name.startswith(".")) == ["case_b.nii.gz"]
    labels, geo = io.read_nifti(tmp_path / "out" / "case_b.nii.gz")
    assert labels.dtype == np.uint8 and geo.matches(cases["case_b"].geometry)


def test_cascade_folder_needs_and_checks_lowres(json_models, image_folder, tmp_path):
    images, cases = image_folder
    p = Predictor(json_models["cascade"], plans=PLANS, stage=1)
    with pytest.raises(ValidationError, match="--lowres"):
        p.predict_folder(images, tmp_path / "out", progress=False)
    low = tmp_path / "low"
    low.mkdir()
    io.write_nifti(low / "case_a.nii.gz", cases["case_a"].labels, cases["case_a"].geometry)
    with pytest.raises(FormatError, match="case_b"):
        p.predict_folder(images, tmp_path / "out", lowres=low, progress=False)
    wrong = cases["case_b"].geometry
    wrong = Geometry(wrong.shape, (2.0, 0.8, 0.8), wrong.origin, wrong.direction)
    io.write_nifti(low / "case_b.nii.gz", cases["case_b"].labels, wrong)
    with pytest.raises(GeometryMismatchError, match=r"case_b.*spacing"):
        p.predict_folder(images, tmp_path / "out", lowres=low, progress=False)
    assert not (tmp_path / "out").exists()  # nothing started
    io.write_nifti(low / "case_b.nii.gz", cases["case_b"].labels, cases["case_b"].geometry)
    report = p.predict_folder(images, tmp_path / "out", lowres=low, progress=False)
    assert report.written == ("case_a", "case_b")


# ------------------------------------------------------------------------------------------------------
# bad input, caught before any computation


def test_model_channels_must_match_the_plans(json_models):
    with pytest.raises(ValidationError, match="takes 1 input channels, but the plans have 2 modalities"):
        Predictor(json_models["conv3d"], plans=make_plans(num_modalities=2), stage=1)
    with pytest.raises(ValidationError, match="takes 3 input channels"):
        Predictor(json_models["cascade"], plans=make_plans(num_classes=4), stage=1)
    with pytest.raises(ValidationError, match="cascade=True"):
        Predictor(json_models["conv3d"], plans=PLANS, stage=1, cascade=True)


def test_plain_model_refuses_lowres(json_models, ct):
    p = Predictor(json_models["conv3d"], plans=PLANS, stage=1)
    with pytest.raises(ValidationError, match="only for cascade"):
        p.predict(ct.image, geometry=ct.geometry, lowres=ct.labels)


def test_2d_model_with_a_3d_stage(json_models):
    with pytest.raises(ValidationError, match=r"3D .*takes 2D input.*plans_2D"):
        Predictor(json_models["conv2d"], plans=PLANS, stage=1)


def test_folds_of_different_networks(json_models):
    with pytest.raises(ValidationError, match="same network"):
        Predictor([json_models["conv3d"], json_models["cascade"]], plans=PLANS, stage=1)


def test_argmax_export_is_refused(json_models):
    with pytest.raises(FormatError, match="output_op softmax"):
        Predictor(json_models["argmax3d"], plans=PLANS, stage=1)


def test_gpu_request_on_the_cpu_build(json_models):
    with pytest.raises(ValidationError, match="paddlepaddle-gpu"):
        Predictor(json_models["conv3d"], plans=PLANS, stage=1, device="gpu")


@pytest.mark.parametrize("image,kw,err,match", [
    (np.zeros((40, 40), np.float32), {"spacing": (1, 1)}, ValidationError, "3D volume"),
    (np.zeros((2, 3, 8, 8, 8), np.float32), {"spacing": (1, 1, 1)}, ValidationError, "3D volume"),
    (np.zeros((2, 8, 8, 8), np.float32), {"spacing": (1, 1, 1)}, ValidationError, "1 modalities"),
    (np.zeros((8, 8, 8), np.complex64), {"spacing": (1, 1, 1)}, ValidationError, "real-valued"),
    (np.zeros((8, 8, 8), np.float32), {}, ValidationError, "spacing"),
    (np.zeros((8, 8, 8), np.float32), {"geometry": Geometry.default((8, 8, 9))}, GeometryMismatchError, "shape"),
])
def test_bad_images(json_models, image, kw, err, match):
    p = Predictor(json_models["conv3d"], plans=PLANS, stage=1)
    with pytest.raises(err, match=match):
        p.predict(image, **kw)


def test_bad_folders(json_models, image_folder, tmp_path):
    p = Predictor(json_models["conv3d"], plans=PLANS, stage=1)
    with pytest.raises(FormatError, match="no images"):
        p.predict_folder(tmp_path, tmp_path / "out", progress=False)
    images, _ = image_folder
    with pytest.raises(FormatError, match="case_x"):
        p.predict_folder(images, tmp_path / "o", cases=["case_x"], progress=False)
    multi = tmp_path / "multi"
    multi.mkdir()
    io.write_nifti(multi / "a_0001.nii.gz", np.zeros((8, 8, 8), np.int16), Geometry.default((8, 8, 8)))
    with pytest.raises(FormatError, match=r"a: \['_0001'\]"):
        p.predict_folder(multi, tmp_path / "o", progress=False)
    flat = tmp_path / "flat"
    flat.mkdir()
    io.write_nifti(flat / "xray_0000.nii.gz", np.zeros((8, 9), np.int16), Geometry.default((8, 9)))
    with pytest.raises(ValidationError, match="must be a 3D volume"):
        p.predict_folder(flat, tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_gpu_set_up_without_a_gpu(json_models, monkeypatch):
    """The GPU branch of the set-up (device, fold residency, batch) with a faked CUDA environment."""
    from medfuse.inference import runner
    from medfuse.inference.config import PaddleEnvironment

    monkeypatch.setattr(runner.PaddleEnvironment, "detect",
                        classmethod(lambda cls: PaddleEnvironment(version=(3, 3, 1), cuda=True, gpu_count=1)))
    p = Predictor([json_models["conv3d"], json_models["conv3d_fold1"]], plans=PLANS, stage=1, fp16=True)
    assert p.device == "gpu" and p.config[0].fp16 and p.config[0].gpu_id == 0
    assert p.folds_resident == "one"  # folds loaded one after another on a GPU
    assert p.batch_size == 2  # the plans' training batch size, below the 8 flips of a tile
    cpu = Predictor([json_models["conv3d"], json_models["conv3d_fold1"]], plans=PLANS, stage=1, device="cpu")
    assert cpu.folds_resident == "all" and cpu.batch_size == 1
