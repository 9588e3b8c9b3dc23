"""Synthetic data in a minute: a phantom, simulated ensemble members, their scores, and postprocessing.

Run:  python examples/synthetic_quickstart.py
Needs only numpy and scipy (cc3d, when installed, makes the connected components faster).
"""

from __future__ import annotations

import numpy as np

import medfuse
from medfuse.postprocess import apply_postprocessing, determine_postprocessing
from medfuse.synthetic import phantom, simulate_labels, simulate_members, simulate_probabilities


def foreground_dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    scores = medfuse.dice(reference, prediction, labels=range(1, 12))
    return float(np.nanmean(list(scores.values())))


def main() -> None:
    # 1. a phantom: labels, a CT-like image, geometry (the competition's flipped y axis), crop box
    ph = phantom((64, 128, 128), spacing=(2.5, 0.8, 0.8), seed=0, direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
    volumes = np.bincount(ph.labels.ravel(), minlength=ph.num_classes)[1:] * np.prod(ph.spacing) / 1000
    print(f"phantom {ph.shape}, spacing {ph.spacing} mm, crop box {ph.crop_bbox}")
    for name, ml in zip(ph.label_names, volumes, strict=True):
        hu = float(np.median(ph.image[ph.labels == ph.label_names.index(name) + 1]))
        print(f"  {name:20s} {ml:7.1f} ml   {hu:6.0f} HU")

    # 2. members of decreasing quality: probabilities (float16, like nnU-Net v1 .npz) and labels
    members = simulate_members(ph, qualities=(0.9, 0.8, 0.7), seed=1)
    print(f"\n{len(members)} soft members of shape {members[0].shape} {members[0].dtype}")
    for q, m in zip((0.9, 0.8, 0.7), members, strict=True):
        print(f"  quality {q}: foreground Dice {foreground_dice(ph.labels, m.argmax(0)):.3f}")

    # 3. every knob on its own
    knobs = {
        "boundary noise 3 mm": {"boundary_noise": 3.0, "dilation": 0.0},
        "liver dilated 2 mm": {"boundary_noise": 0.0, "dilation": {3: 2.0}},
        "pancreas missed": {"missed_labels": (4,)},
        "4 false-positive blobs": {"false_positive_blobs": 4},
        "unsure spleen": {"class_strength": {2: 0.3}},
    }
    print("\nsingle knobs (hard labels):")
    for title, kw in knobs.items():
        lab = simulate_labels(ph, seed=2, **kw)
        print(f"  {title:24s} foreground Dice {foreground_dice(ph.labels, lab):.3f}")
    p = simulate_probabilities(ph, class_strength={2: 0.3}, seed=2, dtype=np.float32)
    print(f"  mean spleen probability inside the spleen: {p[2][ph.labels == 2].mean():.2f}")

    # 4. postprocessing chosen on simulated validation cases, then applied
    cases = []
    for seed in range(3):
        case = phantom((48, 96, 96), seed=10 + seed)
        pred = simulate_labels(case, quality=0.85, false_positive_blobs=5, seed=seed)
        cases.append((case.labels, pred, case.spacing))
    pp = determine_postprocessing(iter(cases), num_classes=12)
    print(f"\npostprocessing chosen on {pp.num_samples} cases: keep the largest component of {pp.for_which_classes}")
    ref, pred, spacing = cases[0]
    after = apply_postprocessing(pred, pp, spacing_mm=spacing)
    print(f"  case 0: foreground Dice {foreground_dice(ref, pred):.3f} -> {foreground_dice(ref, after):.3f}")
    print(pp.to_json(layout="compact"))


if __name__ == "__main__":
    main()
