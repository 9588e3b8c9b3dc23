"""Finding exported model files (no Paddle needed): layouts, folds, and clear errors for bad folders."""

from __future__ import annotations

import json

import pytest

from medfuse.errors import FormatError, ValidationError
from medfuse.inference.models import ModelFiles, ModelSignature, _json_signature, find_model, find_models


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).write_bytes(b"x")
    return folder


def test_legacy_pdmodel_folder(tmp_path):
    m = find_model(_touch(tmp_path / "f", "model.pdmodel", "model.pdiparams", "model.pdiparams.info"))
    assert m == ModelFiles(tmp_path / "f" / "model.pdmodel", tmp_path / "f" / "model.pdiparams", "pdmodel")
    assert m.folder == tmp_path / "f"


def test_pir_json_folder(tmp_path):
    m = find_model(_touch(tmp_path / "f", "model.json", "model.pdiparams"))
    assert m.format == "json" and m.model_file.name == "model.json"


def test_both_formats_prefer_pdmodel(tmp_path):
    m = find_model(_touch(tmp_path / "f", "model.json", "model.pdmodel", "model.pdiparams"))
    assert m.format == "pdmodel"


def test_program_file_given_directly(tmp_path):
    _touch(tmp_path, "net.json", "net.pdiparams")
    assert find_model(tmp_path / "net.json").params_file == tmp_path / "net.pdiparams"
    with pytest.raises(FormatError, match=r"\.pdmodel or \.json"):
        find_model(tmp_path / "net.pdiparams")


def test_other_stem_is_found_when_unique(tmp_path):
    m = find_model(_touch(tmp_path / "f", "inference.pdmodel", "inference.pdiparams"))
    assert m.model_file.name == "inference.pdmodel"
    _touch(tmp_path / "f", "other.json", "other.pdiparams")
    with pytest.raises(FormatError, match="several models"):
        find_model(tmp_path / "f")


def test_paddleseg_deploy_yaml(tmp_path):
    f = _touch(tmp_path / "export", "seg.pdmodel", "seg.pdiparams")
    (f / "deploy.yaml").write_text(
        "Deploy:\n  input_shape:\n  - -1\n  - 1\n  model: seg.pdmodel\n  output_dtype: float32\n"
        "  output_op: softmax\n  params: seg.pdiparams\n  transforms:\n  - type: Normalize\n"
    )
    m = find_model(f)
    assert m.model_file.name == "seg.pdmodel" and m.params_file.name == "seg.pdiparams" and m.output_op == "softmax"


def test_deploy_yaml_naming_missing_files(tmp_path):
    f = _touch(tmp_path / "export", "seg.pdmodel")
    (f / "deploy.yaml").write_text("Deploy:\n  model: seg.pdmodel\n  params: seg.pdiparams\n")
    with pytest.raises(FormatError, match=r"seg\.pdiparams"):
        find_model(f)
    (f / "deploy.yaml").write_text("Deploy:\n  transforms: []\n")
    with pytest.raises(FormatError, match="must name `model` and `params`"):
        find_model(f)


def test_missing_params_is_named(tmp_path):
    with pytest.raises(FormatError, match=r"no weights file 'model\.pdiparams'"):
        find_model(_touch(tmp_path / "f", "model.pdmodel"))


def test_weights_without_program(tmp_path):
    with pytest.raises(FormatError, match="no program file"):
        find_model(_touch(tmp_path / "f", "model.pdiparams"))


def test_missing_folder(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        find_model(tmp_path / "nope")


def test_fold_subfolders_expand(tmp_path):
    for k in (0, 1, 2):
        _touch(tmp_path / "3d_fullres" / f"fold_{k}", "model.pdmodel", "model.pdiparams")
    folds = find_models(tmp_path / "3d_fullres")
    assert [m.folder.name for m in folds] == ["fold_0", "fold_1", "fold_2"]
    # and several folders given explicitly keep their order
    folds = find_models([tmp_path / "3d_fullres" / "fold_2", tmp_path / "3d_fullres" / "fold_0"])
    assert [m.folder.name for m in folds] == ["fold_2", "fold_0"]


def test_same_fold_twice_is_an_error(tmp_path):
    f = _touch(tmp_path / "f", "model.pdmodel", "model.pdiparams")
    with pytest.raises(ValidationError, match="given twice"):
        find_models([f, f / "model.pdmodel"])
    with pytest.raises(ValidationError, match="empty"):
        find_models([])


def test_json_signature_reads_the_data_op(tmp_path):
    doc = {"base_code": {"magic": "pir", "version": 4}, "program": {"regions": [{"blocks": [{"ops": [
        {"#": "1.data", "A": [{"AT": {"#": "0.a_str", "D": "image"}, "N": "name"},
                              {"AT": {"#": "1.a_intarray", "D": [-1, 3, 8, 16, 16]}, "N": "shape"},
                              {"AT": {"#": "1.a_dtype", "D": "float32"}, "N": "dtype"}], "I": [], "O": [{"%": 1}]},
        {"#": "1.conv3d", "A": [], "I": [{"%": 1}], "O": [{"%": 2}]},
        {"#": "1.bilinear_interp", "A": [], "I": [{"%": 2}], "O": [{"%": 3}]},
    ]}]}]}}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(doc))
    sig = _json_signature(path)
    ops = frozenset({"data", "conv3d", "bilinear_interp"})
    assert sig == ModelSignature("image", (-1, 3, 8, 16, 16), "float32", ops, pir_version=4)
    assert sig.channels == 3 and sig.spatial_dims == 3 and sig.spatial_shape == (8, 16, 16)


def test_json_that_is_not_a_program(tmp_path):
    path = tmp_path / "model.json"
    path.write_text('{"a": 1}')
    with pytest.raises(FormatError, match="not a Paddle PIR program"):
        _json_signature(path)
    path.write_text("{not json")
    with pytest.raises(FormatError, match="not a readable"):
        _json_signature(path)


def test_signature_dynamic_sizes():
    sig = ModelSignature(input_shape=(-1, -1, -1, -1))
    assert sig.channels is None and sig.spatial_shape is None and sig.spatial_dims == 2
    assert ModelSignature().spatial_dims is None


def test_importing_the_inference_package_is_light():
    import subprocess
    import sys

    code = ("import sys, medfuse.inference, medfuse.cli.infer; "
            "heavy = [m for m in ('paddle', 'scipy', 'numba', 'SimpleITK') if m in sys.modules]; "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
