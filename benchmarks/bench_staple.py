"""STAPLE: medfuse's numba kernels against SimpleITK, on raters built from the real competition label map.

    python benchmarks/bench_staple.py                  # 5 raters of 107 x 256 x 256, SimpleITK once
    python benchmarks/bench_staple.py --repeat 5 --sitk-repeat 2
    python benchmarks/bench_staple.py --quick          # a small synthetic map (what pytest runs)

Raters (tests/_reference/twin_staple.real_raters): 3 good (1-voxel shifts, an erosion), 2 poor (an 8-voxel
shift; three organs missing and a shifted). Times are the minimum of N runs after one warm-up call (numba
compiles on the first); each row prints both times, the ratio and the fraction of voxels where the labels
(binary: the 0.5-thresholded probabilities) equal SimpleITK's. The real map is read from
``$MEDFUSE_REAL_DATA`` or ``../shared/data/paddleseg-competition`` beside the checkout.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))  # the rater builder lives with the twins

from _reference.twin_staple import real_raters  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "paddleseg-competition"


def _min_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def load_labels(quick: bool) -> np.ndarray:
    """(Z, Y, X) labels: the real map, every third voxel in-plane (107 x 256 x 256); or a small phantom."""
    if quick:
        z, y, x = np.indices((12, 48, 48))
        labels = np.zeros(z.shape, np.uint8)
        for k, (cz, cy, cx, r) in enumerate([(6, 20, 20, 9), (6, 30, 30, 6), (5, 12, 34, 5)], start=1):
            labels[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < r * r] = k
        return labels
    import nibabel as nib

    folder = Path(os.environ.get("MEDFUSE_REAL_DATA", DEFAULT_DATA))
    data = np.asarray(nib.load(str(folder / "case_labels.nii.gz")).dataobj).transpose(2, 1, 0)
    return np.ascontiguousarray(data[:, ::3, ::3]).astype(np.uint8)


def run(quick: bool, repeat: int, sitk_repeat: int) -> list[dict[str, Any]]:
    import SimpleITK as sitk

    from medfuse.fusion.staple import staple, staple_binary

    raters = real_raters(load_labels(quick))
    undecided = int(max(r.max() for r in raters)) + 1
    masks = [(r == 1).astype(np.uint8) for r in raters]

    def sitk_multi() -> np.ndarray:
        f = sitk.MultiLabelSTAPLEImageFilter()
        f.SetLabelForUndecidedPixels(undecided)
        return sitk.GetArrayFromImage(f.Execute([sitk.GetImageFromArray(r) for r in raters]))

    def sitk_binary() -> np.ndarray:
        f = sitk.STAPLEImageFilter()
        return sitk.GetArrayFromImage(f.Execute([sitk.GetImageFromArray(m) for m in masks]))

    rows = []
    for name, ours, theirs, same in [
        ("staple (multi-label)", lambda: staple(raters, undecided_label=undecided), sitk_multi,
         lambda a, b: a == b),
        ("staple_binary", lambda: staple_binary(masks), sitk_binary, lambda a, b: (a > 0.5) == (b > 0.5)),
    ]:
        ours()  # compile
        t_ours, a = _min_time(ours, repeat)
        t_sitk, b = _min_time(theirs, sitk_repeat)
        rows.append({"name": name, "shape": raters[0].shape, "raters": len(raters), "medfuse_s": t_ours,
                     "simpleitk_s": t_sitk, "speedup": t_sitk / t_ours, "agreement": float(same(a, b).mean())})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small synthetic label map")
    parser.add_argument("--repeat", type=int, default=5, help="medfuse runs (minimum reported)")
    parser.add_argument("--sitk-repeat", type=int, default=1, help="SimpleITK runs (minimum reported)")
    args = parser.parse_args(argv)
    print(f"{'method':<22} {'shape':<16} {'medfuse s':>10} {'SimpleITK s':>12} {'speedup':>8} {'equal':>9}")
    for r in run(args.quick, args.repeat, args.sitk_repeat):
        shape = "x".join(map(str, r["shape"]))
        print(f"{r['name']:<22} {shape:<16} {r['medfuse_s']:>10.3f} {r['simpleitk_s']:>12.2f} "
              f"{r['speedup']:>7.0f}x {100 * r['agreement']:>8.3f}%")
    return 0


def test_quick_staple_bench_runs() -> None:
    rows = run(quick=True, repeat=1, sitk_repeat=1)
    assert [r["name"] for r in rows] == ["staple (multi-label)", "staple_binary"]
    assert all(r["agreement"] > 0.99 and r["medfuse_s"] > 0 for r in rows)


if __name__ == "__main__":
    sys.exit(main())
