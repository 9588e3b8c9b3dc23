"""``medfuse postprocess``: postprocessing.json (v1) and nnU-Net v2's postprocessing.pkl applied to a folder."""

from __future__ import annotations

import json
import pickle
import sys
import types

import numpy as np
import pytest

from medfuse import io
from medfuse.cli import main
from medfuse.errors import FormatError, UnsafePickleError
from medfuse.geometry import Geometry
from medfuse.postprocess import keep_largest_component, read_any_postprocessing, read_nnunet2_postprocessing

V2_MODULE = "nnunetv2.postprocessing.remove_connected_components"
V2_NAME = "remove_all_but_largest_component_from_segmentation"


def _labels() -> np.ndarray:
    """Label 1: a big cube and a small one touching it only diagonally; label 2: two cubes; label 3: one."""
    a = np.zeros((12, 16, 16), np.uint8)
    a[1:5, 1:5, 1:5] = 1
    a[5, 5, 5] = 1  # corner-touching: its own component under 6-connectivity, joined under 26
    a[8:11, 1:4, 1:4] = 2
    a[9, 12, 12] = 2
    a[1:4, 10:14, 10:14] = 3
    return a


@pytest.fixture
def folder(tmp_path):
    src = tmp_path / "pred"
    g = Geometry((12, 16, 16), (2.0, 1.0, 1.0), (1.0, 2.0, 3.0), (1, 0, 0, 0, -1, 0, 0, 0, 1))
    for case in ("a", "b"):
        io.write_nifti(src / f"{case}.nii.gz", _labels(), g)
    (src / "fusion.json").write_text("{}")  # not a label map: ignored
    return src


def _v2_pickle(path, steps, *, fn_module=V2_MODULE, fn_name=V2_NAME):
    """Write a postprocessing.pkl as nnU-Net v2 does, with a stand-in module of the same name."""
    parts = fn_module.split(".")
    saved = {n: sys.modules.get(n) for n in (".".join(parts[:i]) for i in range(1, len(parts) + 1))}
    for name in saved:
        sys.modules[name] = types.ModuleType(name)

    def fn(segmentation, **kwargs):  # pragma: no cover - never called
        raise AssertionError

    fn.__module__, fn.__name__, fn.__qualname__ = fn_module, fn_name, fn_name
    setattr(sys.modules[fn_module], fn_name, fn)
    try:
        path.write_bytes(pickle.dumps(([fn] * len(steps), [dict(s) for s in steps])))
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:  # pragma: no cover
                sys.modules[name] = module
    return path


def test_json_applies_6_connected_largest_component(folder, tmp_path, capsys):
    ppj = tmp_path / "postprocessing.json"
    ppj.write_text(json.dumps({"for_which_classes": [1, 2], "min_valid_object_sizes": "None"}))
    out = tmp_path / "out"
    assert main(["postprocess", str(folder), "-o", str(out), "--postprocessing", str(ppj)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.nii.gz", "b.nii.gz"]
    got, g = io.read_nifti(out / "a.nii.gz")
    _, g_in = io.read_nifti(folder / "a.nii.gz")
    expected = _labels()
    expected[5, 5, 5] = 0
    expected[9, 12, 12] = 0
    np.testing.assert_array_equal(got, expected)
    assert g == g_in
    assert "4 voxels set to background in 2 of them"  # 2 per map in capsys.readouterr().out


def test_v2_pickle_steps_map_to_medfuse_26_connected(folder, tmp_path):
    pkl = _v2_pickle(tmp_path / "postprocessing.pkl",
                     [{"labels_or_regions": [1, 2, 3]}, {"labels_or_regions": 1}, {"labels_or_regions": 2}])
    pp, conn = read_any_postprocessing(pkl)
    assert pp.for_which_classes == ((1, 2, 3), 1, 2) and conn == 26
    out = tmp_path / "out"
    assert main(["postprocess", str(folder), "-o", str(out), "--postprocessing", str(pkl)]) == 0
    got, _ = io.read_nifti(out / "b.nii.gz")
    # merged foreground first: under 26-connectivity label 1's cube + corner voxel (65 voxels) is the largest
    # object, so labels 3 and 2 vanish; then the per-label steps change nothing
    expected = keep_largest_component(_labels(), for_which_classes=[(1, 2, 3), 1, 2], connectivity=26)
    np.testing.assert_array_equal(got, expected)
    assert (got == 1).sum() == 65 and (got == 3).sum() == 0


def test_v2_region_tuple_and_empty_step_list(tmp_path):
    pkl = _v2_pickle(tmp_path / "r.pkl", [{"labels_or_regions": (2, 3)}, {"labels_or_regions": [(1, 2), 3]}])
    assert read_nnunet2_postprocessing(pkl).for_which_classes == ((2, 3), (1, 2, 3))
    empty = tmp_path / "e.pkl"
    empty.write_bytes(pickle.dumps(([], [])))
    assert read_nnunet2_postprocessing(empty).for_which_classes == ()


def test_unknown_callable_is_refused_and_never_run(folder, tmp_path, capsys):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(([print], [{"labels_or_regions": 1}])))
    with pytest.raises(UnsafePickleError, match=r"builtins\.print"):
        read_nnunet2_postprocessing(evil)

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil.write_bytes(pickle.dumps(Boom()))
    assert main(["postprocess", str(folder), "-o", str(tmp_path / "out"), "--postprocessing", str(evil)]) == 2
    err = capsys.readouterr().err
    assert "io.open" in err and "NOT loaded or executed" in err and "nnUNetv2_apply_postprocessing" in err
    assert not marker.exists() and not (tmp_path / "out").exists()
    other = _v2_pickle(tmp_path / "other.pkl", [{"labels_or_regions": 1}], fn_name="some_other_step")
    with pytest.raises(UnsafePickleError, match="some_other_step"):
        read_nnunet2_postprocessing(other)


@pytest.mark.parametrize(("steps", "match"), [
    ([{"labels_or_regions": 0}], "positive labels"),
    ([{"labels_or_regions": 1, "background_label": 5}], "background_label 0"),
    ([{"labels_or_regions": []}], "empty labels_or_regions"),
])
def test_malformed_v2_steps_are_refused(tmp_path, steps, match):
    with pytest.raises(FormatError, match=match):
        read_nnunet2_postprocessing(_v2_pickle(tmp_path / "pp.pkl", steps))


def test_not_a_pair_is_refused(tmp_path):
    p = tmp_path / "pp.pkl"
    p.write_bytes(pickle.dumps({"for_which_classes": [1]}))
    with pytest.raises(FormatError, match=r"expected a pair \(list of functions, list of keyword dicts\)"):
        read_nnunet2_postprocessing(p)
    p.write_bytes(b"not a pickle")
    with pytest.raises(FormatError, match="not a readable pickle"):
        read_nnunet2_postprocessing(p)


@pytest.mark.parametrize("where", ["same", "inside", "around"])
def test_never_writes_into_its_input(folder, tmp_path, capsys, where):
    ppj = tmp_path / "pp.json"
    ppj.write_text(json.dumps({"for_which_classes": [1]}))
    out = {"same": folder, "inside": folder / "pp", "around": tmp_path}[where]
    before = sorted(p.name for p in folder.iterdir())
    assert main(["postprocess", str(folder), "-o", str(out), "--postprocessing", str(ppj)]) == 2
    assert "`--output`" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_refusals_name_the_problem(folder, tmp_path, capsys):
    ppj = tmp_path / "pp.json"
    ppj.write_text(json.dumps({"for_which_classes": [1]}))
    txt = tmp_path / "pp.txt"
    txt.write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    empty_in = tmp_path / "empty_in"
    empty_in.mkdir()
    cases = [
        ([str(folder), "-o", str(tmp_path / "o1"), "--postprocessing", str(txt)], "`--postprocessing` must be"),
        ([str(folder), "-o", str(full), "--postprocessing", str(ppj)], "is not empty"),
        ([str(empty_in), "-o", str(tmp_path / "o2"), "--postprocessing", str(ppj)], "holds no label maps"),
        ([str(folder), "-o", str(tmp_path / "o3"), "--postprocessing", str(tmp_path / "nope.json")],
         "cannot read postprocessing file"),
    ]
    for argv, match in cases:
        assert main(["postprocess", *argv]) == 2
        assert match in capsys.readouterr().err


def test_real_competition_maps_postprocessed_from_a_read_only_folder(real_data, tmp_path, capsys):
    ppj = tmp_path / "postprocessing.json"  # the example of FORMATS.md: liver, a merged group, label 6
    ppj.write_text(json.dumps({"for_which_classes": [1, 11, 6], "min_valid_object_sizes": "None"}))
    out = tmp_path / "out"
    assert main(["postprocess", str(real_data), "-o", str(out), "--postprocessing", str(ppj)]) == 0
    names = sorted(p.name for p in real_data.iterdir() if p.name.endswith(".nii.gz"))
    assert sorted(p.name for p in out.iterdir()) == names
    labels, geometry = io.read_nifti(real_data / "case_labels.nii.gz")
    got, got_geometry = io.read_nifti(out / "case_labels.nii.gz")
    assert got_geometry == geometry
    np.testing.assert_array_equal(got, keep_largest_component(labels, for_which_classes=[1, 11, 6]))
