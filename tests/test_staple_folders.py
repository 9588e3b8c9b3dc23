"""fuse_folders(method="staple") and `medfuse fuse --method staple`: equal to medfuse.staple on the full maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medfuse import io, synthetic
from medfuse.cli.main import main as cli_main
from medfuse.errors import ValidationError
from medfuse.folders import fuse_folders
from medfuse.fusion.staple import staple

SHAPE = (12, 30, 28)
DIRECTION = (1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two v1 probability folders and two label-only folders (one of them poor), two cases each."""
    root = tmp_path_factory.mktemp("staple")
    members = [root / "v1_a", root / "v1_b", root / "labels_a", root / "labels_poor"]
    full: dict[str, list[np.ndarray]] = {}
    for i in range(2):
        case = f"case_{i}"
        ph = synthetic.phantom(SHAPE, num_labels=3, spacing=(2.0, 1.0, 1.0), seed=30 + i, direction=DIRECTION)
        box = tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)
        full[case] = []
        for m in range(2):
            probs = synthetic.simulate_probabilities(ph, quality=0.85, dtype=np.float16, seed=100 * m + i)
            io.write_v1_case(members[m], case, probabilities=np.ascontiguousarray(probs[(slice(None), *box)]),
                             geometry=ph.geometry, crop_bbox=ph.crop_bbox)
            argmax = np.zeros(SHAPE, np.uint8)
            argmax[box] = probs[(slice(None), *box)].astype(np.float32).argmax(axis=0)
            full[case].append(argmax)
        for m, quality in ((2, 0.9), (3, 0.5)):
            lab = synthetic.simulate_labels(ph, quality=quality, seed=100 * m + i)
            io.write_nifti(members[m] / f"{case}.nii.gz", lab, ph.geometry)
            full[case].append(lab)
    return members, full


def test_fuse_folders_staple_equals_staple_of_the_full_maps(folders, tmp_path):
    members, full = folders
    out = tmp_path / "fused"
    report = fuse_folders(members, out, method="staple", progress=False)
    assert report.method == "staple" and report.layouts == ("v1", "v1", "labels", "labels")
    for case, maps in full.items():
        got, _ = io.read_nifti(out / f"{case}.nii.gz")
        np.testing.assert_array_equal(got, staple(maps, num_classes=4))
    assert json.loads((out / "fusion.json").read_text())["method"] == "staple"
    # label maps only: STAPLE stays STAPLE (a "mean" without probabilities falls back to a vote)
    only = tmp_path / "only_labels"
    fuse_folders(members[2:], only, method="staple", progress=False)
    for case, maps in full.items():
        np.testing.assert_array_equal(io.read_nifti(only / f"{case}.nii.gz")[0], staple(maps[2:]))


def test_staple_over_the_whole_volume_not_the_crop(folders, tmp_path):
    """Label members with random labels in a corner only: the background outside still counts."""
    members, full = folders
    rng = np.random.default_rng(0)
    maps = {}
    for case in full:
        geometry = io.read_nifti(members[2] / f"{case}.nii.gz")[1]
        maps[case] = []
        for name in "abc":
            m = np.zeros(SHAPE, np.uint8)
            m[:4, :6, :7] = rng.integers(0, 3, (4, 6, 7))
            io.write_nifti(tmp_path / name / f"{case}.nii.gz", m, geometry)
            maps[case].append(m)
    out = tmp_path / "out"
    fuse_folders([tmp_path / name for name in "abc"], out, method="staple", progress=False)
    for case, m in maps.items():
        expected = staple(m, num_classes=3)
        np.testing.assert_array_equal(io.read_nifti(out / f"{case}.nii.gz")[0], expected)
        cropped = staple([x[:4, :6, :7] for x in m], num_classes=3)  # what ignoring the outside would give
        assert not np.array_equal(cropped, expected[:4, :6, :7])


def test_staple_refuses_weights_and_probabilities(folders, tmp_path):
    members, _ = folders
    with pytest.raises(ValidationError, match=r"`weights` are not defined for method='staple'"):
        fuse_folders(members, tmp_path / "w", method="staple", weights=[1, 1, 1, 1], progress=False)
    with pytest.raises(ValidationError, match=r"`save_probabilities` needs method='mean' \('staple'"):
        fuse_folders(members, tmp_path / "p", method="staple", save_probabilities=True, progress=False)
    with pytest.raises(ValidationError, match=r"'mean', 'vote' or 'staple'"):
        fuse_folders(members, tmp_path / "x", method="median", progress=False)  # type: ignore[arg-type]


def test_cli_fuse_method_staple(folders, tmp_path, capsys):
    members, full = folders
    out = tmp_path / "cli"
    assert cli_main(["fuse", *map(str, members), "-o", str(out), "--method", "staple", "--no-progress"]) == 0
    for case, maps in full.items():
        np.testing.assert_array_equal(io.read_nifti(out / f"{case}.nii.gz")[0], staple(maps, num_classes=4))
    # a re-run with another method is other settings: refused without --overwrite, named by its flag
    code = cli_main(["fuse", *map(str, members), "-o", str(out), "--method", "vote", "--no-progress"])
    assert code != 0
    assert cli_main(["fuse", *map(str, members), "-o", str(out), "--method", "staple", "--weights", "1,1,1,1",
                     "--no-progress"]) != 0
    assert "`--weights` are not defined" in capsys.readouterr().err
