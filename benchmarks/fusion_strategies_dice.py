"""Dice of each fusion strategy on ensembles simulated from the real competition label map.

    MEDFUSE_REAL_DATA=/work/shared/data/paddleseg-competition python benchmarks/fusion_strategies_dice.py

Members are simulated from ``case_labels.nii.gz`` (in-plane every 2nd voxel, for speed) with
:func:`medfuse.synthetic.simulate_probabilities`: three good models (quality 0.9, 0.85, 0.8), one poor
(0.55 with 4 false-positive blobs) and one that never predicts the largest organ; errors correlated 0.5.
Prints the mean foreground Dice (over the labels of the reference) of each member and of each strategy on
the full ensemble and on subsets, for docs/fusion.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

import medfuse as mf
from medfuse import io, synthetic


def mean_dice(ref: np.ndarray, pred: np.ndarray, labels: list[int]) -> float:
    out = []
    for k in labels:
        a, b = ref == k, pred == k
        out.append(2 * np.count_nonzero(a & b) / max(1, np.count_nonzero(a) + np.count_nonzero(b)))
    return float(np.mean(out))


def main() -> int:
    root = Path(os.environ.get("MEDFUSE_REAL_DATA", "/work/shared/data/paddleseg-competition"))
    labels_full, geometry = io.read_nifti(root / "case_labels.nii.gz")
    ref = np.ascontiguousarray(labels_full[:, ::2, ::2]).astype(np.uint8)
    present = [int(k) for k in np.unique(ref) if k > 0]
    c = int(ref.max()) + 1
    sizes = {k: int(np.count_nonzero(ref == k)) for k in present}
    largest = max(sizes, key=lambda k: sizes[k])
    spacing = (geometry.spacing[0], geometry.spacing[1] * 2, geometry.spacing[2] * 2)  # (z, y, x)
    print(f"reference {ref.shape}, labels {present}, largest organ {largest}; spacing (z, y, x) {spacing}")
    kw = {"num_classes": c, "spacing": spacing, "dtype": np.float16, "error_correlation": 0.5, "shared_seed": 3}
    specs = [("good 0.90", {"quality": 0.9}), ("good 0.85", {"quality": 0.85}), ("good 0.80", {"quality": 0.8}),
             ("poor 0.55", {"quality": 0.55, "false_positive_blobs": 4}),
             (f"no label {largest}", {"quality": 0.85, "missed_labels": [largest]})]
    members = [synthetic.simulate_probabilities(ref, seed=10 + i, **kw, **s) for i, (_, s) in enumerate(specs)]
    argmax = [mf.fuse_probabilities([m]) for m in members]
    for (name, _), a in zip(specs, argmax, strict=True):
        print(f"| member {name} | {mean_dice(ref, a, present):.4f} |")
    subsets = {"3 good": [0, 1, 2], "3 good + poor": [0, 1, 2, 3], "3 good + missing organ": [0, 1, 2, 4],
               "all 5": [0, 1, 2, 3, 4]}
    print("| ensemble | mean | log | vote | staple |")
    for name, idx in subsets.items():
        row = []
        for strategy in ("mean", "log", "vote", "staple"):
            t = time.perf_counter()
            if strategy in ("mean", "log"):
                fused = mf.fuse_probabilities([members[i] for i in idx],
                                              space="log" if strategy == "log" else "probability")
            elif strategy == "vote":
                fused = mf.majority_vote([argmax[i] for i in idx])
            else:
                fused = mf.staple([argmax[i] for i in idx], num_classes=c)
            row.append(f"{mean_dice(ref, fused, present):.4f}")
            print(f"  {name} {strategy}: {time.perf_counter() - t:.2f} s", file=sys.stderr)
        print(f"| {name} | " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
