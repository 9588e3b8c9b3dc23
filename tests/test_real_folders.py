"""Section 6 of the folders issue: members simulated from the REAL competition label maps.

The 40 label maps of the baseline submission (512² / 768² in-plane, non-trivial geometry) serve as
references. Three models are simulated from two of them, written as PaddleSeg v1 folders with real-style
properties (crop box, the real case's non-identity direction), fused and evaluated; the fused maps must
come out in exactly the input geometry.
"""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from medfuse import io, synthetic
from medfuse.folders import evaluate_folder, fuse_folders
from medfuse.geometry import Geometry

pytestmark = pytest.mark.real_data


def _smallest_cases(zip_path, n):
    with zipfile.ZipFile(zip_path) as zf:
        infos = sorted(zf.infolist(), key=lambda i: i.file_size)
    return [i.filename for i in infos[:n]]


def _crop_box(labels: np.ndarray, margin: int = 6) -> list[list[int]]:
    """Foreground bounding box plus a margin: a non-trivial crop box like nnU-Net's crop to nonzero."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(labels.any(axis=other))
        box.append([max(0, int(nz[0]) - margin), min(labels.shape[axis], int(nz[-1]) + 1 + margin)])
    return box


@pytest.fixture(scope="module")
def real_cv(real_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    refs = root / "references"
    refs.mkdir()
    with zipfile.ZipFile(real_data / "baseline_submit.zip") as zf:
        names = _smallest_cases(real_data / "baseline_submit.zip", 2)
        for name in names:
            zf.extract(name, refs)
    real_props = io.load_pickle(real_data / "case_properties.pkl")
    members = [root / f"model_{m}" for m in range(3)]
    geometries = {}
    for name in names:
        case = name[: -len(".nii.gz")]
        labels, g = io.read_nifti(refs / name)
        # the real case's direction (1, 0, 0, 0, -1, 0, 0, 0, 1) as in case_properties.pkl
        geometry = Geometry(g.shape, g.spacing, g.origin, tuple(real_props["itk_direction"]))
        io.write_nifti(refs / name, labels, geometry)
        geometries[case] = geometry
        box = _crop_box(labels)
        cropped = np.ascontiguousarray(labels[tuple(slice(a, b) for a, b in box)])
        for m, q in enumerate((0.9, 0.8, 0.6)):
            probs = synthetic.simulate_probabilities(cropped, num_classes=12, quality=q, spacing=geometry.spacing,
                                                     dtype=np.float16, seed=np.random.SeedSequence([m, len(case)]))
            io.write_v1_case(members[m], case, probabilities=probs, geometry=geometry, crop_bbox=box)
            del probs
    return root, members, refs, geometries, real_props


def test_v1_properties_look_like_the_real_pickle(real_cv):
    _, members, _, geometries, real_props = real_cv
    case = sorted(geometries)[0]
    props = io.load_pickle(members[0] / f"{case}.pkl")
    assert set(real_props) - {"list_of_data_files", "seg_file"} <= set(props)
    for key in ("itk_origin", "itk_spacing", "itk_direction", "size_after_cropping"):
        assert type(props[key]) is type(real_props[key]), key
    assert isinstance(props["crop_bbox"], list)


def test_fused_real_cases_keep_the_input_geometry_and_beat_the_weak_member(real_cv, tmp_path):
    _, members, refs, geometries, _ = real_cv
    out = tmp_path / "fused"
    fuse_folders(members, out, weights=[2, 1, 0.5], progress=False)
    for case, geometry in geometries.items():
        labels, g = io.read_nifti(out / f"{case}.nii.gz")
        assert g == geometry and labels.dtype == np.uint8
    fused = evaluate_folder(refs, out, labels=range(1, 12), progress=False)
    weak = evaluate_folder(refs, members[2], labels=range(1, 12), progress=False)
    assert fused.foreground_mean_dice > weak.foreground_mean_dice
    assert fused.foreground_mean_dice > 0.8
