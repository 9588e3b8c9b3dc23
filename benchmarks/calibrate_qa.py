"""Calibration of the QA score on simulated ensembles of varying quality built from real label maps.

    MEDFUSE_REAL_DATA=/work/shared/data/paddleseg-competition python benchmarks/calibrate_qa.py [--fit]

Truth: the 40 real label maps of ``baseline_submit.zip`` (abdominal CT, 11 organs), resampled by taking
every n-th voxel to about 5 x 2 x 2 mm and cropped to the labelled box plus a margin. Per case, an ensemble
of 3-5 members is simulated around the truth (:func:`medfuse.synthetic.simulate_probabilities`: smooth
boundary noise, random per-class dilation / erosion, soft boundaries) with a case quality drawn at random,
so cases range from near perfect to poor; members also get, at random and more often in poor cases, a shift
of 1-2 voxels, false-positive blobs, a strong erosion or dilation, missed organs (an organ that is hard in
this case is missed by each member with probability 0.6), shared errors (correlation 0.3-0.7) and some
members are hard label maps. The ensemble is fused by the mean of probabilities (argmax, lowest class on
ties); its uncertainty maps are computed by a numpy function following the definitions of
``tests/_reference/twin_uncertainty.py``; :func:`medfuse.quality.case_qa` scores the case, and the fused
case Dice against the truth (mean over the organs in truth or fused result) is what the score should rank.

The cases are split in two halves at random (seeded). ``--fit`` looks at the tuning half only: each
component's Spearman correlation with the Dice loss, the non-negative least-squares fit of the Dice loss
on the best pair of components, and the Spearman of ``expected_dice_gap + B * disagreement_band`` over a
grid of B; ``medfuse.quality.SCORE_COEFFICIENTS`` took a round B from the plateau of that grid (0.25).
Without ``--fit``, the score as the library computes it (fixed coefficients) is evaluated on
both halves, the held-out half being the honest number (docs/uncertainty.md records it).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import medfuse as mf
from medfuse import io, synthetic
from medfuse.errors import ValidationError
from medfuse.fusion import UncertaintyMaps
from medfuse.quality import COMPONENTS, SCORE_COEFFICIENTS, CaseQA, case_qa, qa_calibration
from medfuse.quality.calibration import spearman

NUM_CLASSES = 12
TARGET_MM = (5.0, 2.0, 2.0)
#: components that are 0 when every member agrees with the fused labels (the score may use only these)
SCORABLE = ("expected_dice_gap", "member_dice_gap", "worst_class_gap", "disagreement_band", "mutual_information_band",
            "disagreement_fg", "mutual_information_fg", "volume_cv", "partial_classes")


@dataclass(frozen=True)
class CaseResult:
    case: str
    dice: float
    qa: CaseQA
    n_members: int
    quality: float
    shape: tuple[int, ...]


def load_cases(root: Path, *, max_cases: int | None = None, target_mm: Sequence[float] = TARGET_MM,
               margin: int = 4) -> dict[str, tuple[np.ndarray, tuple[float, ...]]]:
    """The real label maps, every n-th voxel (to about ``target_mm``), cropped to the labels plus ``margin``."""
    cases: dict[str, tuple[np.ndarray, tuple[float, ...]]] = {}
    with zipfile.ZipFile(root / "baseline_submit.zip") as z, tempfile.TemporaryDirectory() as tmp:
        names = sorted(n for n in z.namelist() if n.endswith(".nii.gz"))[:max_cases]
        for name in names:
            z.extract(name, tmp)
            labels, geometry = io.read_nifti(Path(tmp) / name)
            steps = [max(1, round(t / s)) for t, s in zip(target_mm, geometry.spacing, strict=True)]
            small = labels[tuple(slice(None, None, s) for s in steps)]
            nz = np.argwhere(small > 0)
            if nz.size:
                lo, hi = np.maximum(nz.min(0) - margin, 0), nz.max(0) + margin + 1
                small = small[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
            spacing = tuple(float(s * st) for s, st in zip(geometry.spacing, steps, strict=True))
            cases[name[: -len(".nii.gz")]] = (np.ascontiguousarray(small, dtype=np.uint8), spacing)
            os.unlink(Path(tmp) / name)
    return cases


def simulate_ensemble(truth: np.ndarray, spacing: Sequence[float], *, seed: int) -> tuple[list[np.ndarray], float]:
    """3-5 members of a randomly drawn case quality (see the module docstring); returns (members, quality)."""
    rng = np.random.default_rng(seed)
    quality = float(rng.uniform(0.45, 0.97))
    n_members = int(rng.integers(3, 6))
    present = [int(c) for c in np.unique(truth) if c > 0]
    hard = [c for c in present if rng.random() < 0.3 * (1.0 - quality)]
    correlation = float(rng.uniform(0.3, 0.7))
    members: list[np.ndarray] = []
    for i in range(n_members):
        q = float(np.clip(quality + rng.normal(0.0, 0.05), 0.3, 0.99))
        missed = [c for c in hard if rng.random() < 0.6]
        missed += [c for c in present if c not in missed and rng.random() < 0.15 * (1.0 - q)]
        knobs: dict[str, Any] = {"quality": q, "missed_labels": missed,
                                 "false_positive_blobs": int(rng.poisson(2.0 * (1.0 - q)))}
        if rng.random() < 0.2:
            knobs["dilation"] = float(rng.choice([-1.0, 1.0]) * rng.uniform(2.0, 5.0))
        common = {"num_classes": NUM_CLASSES, "spacing": spacing, "error_correlation": correlation,
                  "seed": np.random.SeedSequence([seed, 1, i]), "shared_seed": np.random.SeedSequence([seed, 0])}
        try:
            p = synthetic.simulate_probabilities(truth, **common, **knobs)
        except ValidationError:  # no room for the blobs
            knobs["false_positive_blobs"] = 0
            p = synthetic.simulate_probabilities(truth, **common, **knobs)
        if rng.random() < 1.0 - q:
            axis, step = int(rng.integers(2, 4)), int(rng.choice([-2, -1, 1, 2]))
            p = np.roll(p, step, axis=axis)
        members.append(p.argmax(axis=0).astype(np.uint8) if rng.random() < 0.2 else p)
    return members, quality


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return -t.sum(axis=0, dtype=np.float32)


def fuse_with_uncertainty(members: Sequence[np.ndarray], num_classes: int = NUM_CLASSES
                          ) -> tuple[np.ndarray, UncertaintyMaps]:
    """Mean-of-probabilities fusion and its maps, in numpy, by the definitions of the twin (equal weights)."""
    n = len(members)
    omega = np.full(n, 1.0 / n)

    def probs(m: np.ndarray) -> np.ndarray:
        if m.dtype.kind == "f":
            return m.astype(np.float32)
        return (m[None] == np.arange(num_classes, dtype=m.dtype).reshape((-1,) + (1,) * m.ndim)).astype(np.float32)

    shape = members[0].shape[1:] if members[0].dtype.kind == "f" else members[0].shape
    pbar = np.zeros((num_classes, *shape), dtype=np.float32)
    member_entropy = np.zeros(shape, dtype=np.float32)
    for m, w in zip(members, omega, strict=True):
        p = probs(m)
        pbar += np.float32(w) * p
        if m.dtype.kind == "f":
            member_entropy += np.float32(w) * _entropy(p)
    pbar /= pbar.sum(axis=0)
    fused = pbar.argmax(axis=0).astype(np.uint8)
    entropy = _entropy(pbar)
    del pbar
    disagreement = np.zeros(shape, dtype=np.float32)
    volumes = np.zeros((n, num_classes), dtype=np.int64)
    overlap = np.zeros((n, num_classes), dtype=np.int64)
    for i, (m, w) in enumerate(zip(members, omega, strict=True)):
        a = m.argmax(axis=0) if m.dtype.kind == "f" else m
        differs = a != fused
        disagreement += np.float32(w) * differs
        volumes[i] = np.bincount(a.ravel(), minlength=num_classes)
        overlap[i] = np.bincount(a[~differs], minlength=num_classes)
    maps = UncertaintyMaps(
        entropy=entropy, mutual_information=np.maximum(entropy - member_entropy, 0.0).astype(np.float32),
        disagreement=disagreement, member_volumes=volumes, member_overlap=overlap,
        fused_volumes=np.bincount(fused.ravel(), minlength=num_classes).astype(np.int64), member_shares=omega)
    return fused, maps


def case_dice(truth: np.ndarray, fused: np.ndarray) -> float:
    """Mean Dice over the organs in the truth or the fused labels (NaN when there are none)."""
    values = mf.dice(truth, fused)
    return float(np.mean(list(values.values()))) if values else float("nan")


def run(root: Path, *, max_cases: int | None = None, seed: int = 0, target_mm: Sequence[float] = TARGET_MM,
        verbose: bool = False) -> list[CaseResult]:
    """Simulate, fuse, score and QA every case."""
    out = []
    for i, (name, (truth, spacing)) in enumerate(load_cases(root, max_cases=max_cases, target_mm=target_mm).items()):
        t0 = time.perf_counter()
        members, quality = simulate_ensemble(truth, spacing, seed=seed * 1000 + i)
        fused, maps = fuse_with_uncertainty(members)
        qa = case_qa(fused, maps, case=name, spacing_mm=spacing)
        out.append(CaseResult(name, case_dice(truth, fused), qa, len(members), quality, truth.shape))
        if verbose:
            print(f"  {i + 1:2d} {name[:8]} {truth.shape} {time.perf_counter() - t0:5.1f}s", file=sys.stderr)
    return out


def split(results: Sequence[CaseResult], *, seed: int = 0) -> tuple[list[CaseResult], list[CaseResult]]:
    """(tuning half, held-out half), drawn at random with ``seed``."""
    order = np.random.default_rng(seed + 7).permutation(len(results))
    half = len(results) // 2
    return [results[i] for i in sorted(order[:half])], [results[i] for i in sorted(order[half:])]


def fit(tuning: Sequence[CaseResult]) -> dict[str, Any]:
    """On the tuning half only: each component's Spearman with the Dice loss, and the best NNLS pair."""
    from scipy.optimize import nnls

    loss = np.array([1.0 - r.dice for r in tuning])
    x = {k: np.array([r.qa.components[k] for r in tuning]) for k in COMPONENTS}
    single = {k: spearman(v, loss) for k, v in x.items()}
    best: dict[str, Any] = {"spearman": -np.inf}
    for pair in itertools.combinations(SCORABLE, 2):
        a = np.stack([x[k] for k in pair], axis=1)
        coef, _ = nnls(a, loss)
        rho = spearman(a @ coef, loss)
        if np.isfinite(rho) and rho > best["spearman"]:
            best = {"spearman": rho, "coefficients": dict(zip(pair, (float(c) for c in coef), strict=True))}
    grid = {b: spearman(x["expected_dice_gap"] + b * x["disagreement_band"], loss)
            for b in (0.0, 0.1, 0.2, 0.25, 0.3, 0.5, 1.0, 2.0, 5.0)}
    return {"single": single, "best_pair": best, "grid": grid}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-cases", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--fit", action="store_true", help="look at the tuning half only and fit coefficients")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = parser.parse_args(argv)
    root = Path(os.environ.get("MEDFUSE_REAL_DATA", "/work/shared/data/paddleseg-competition"))
    t0 = time.perf_counter()
    results = run(root, max_cases=args.max_cases, seed=args.seed, verbose=True)
    tuning, held_out = split(results, seed=args.seed)
    print(f"{len(results)} cases simulated and scored in {time.perf_counter() - t0:.0f} s; "
          f"tuning half {len(tuning)}, held-out half {len(held_out)}")
    if args.fit:
        found = fit(tuning)
        print("\ntuning half: Spearman of each component with the Dice loss")
        for k, v in sorted(found["single"].items(), key=lambda kv: -np.nan_to_num(kv[1], nan=-2)):
            print(f"  {k:26s} {v:+.3f}")
        print(f"best pair (NNLS on 1 - Dice): {found['best_pair']}")
        print("expected_dice_gap + B * disagreement_band: "
              + ", ".join(f"B={b:g}: {v:.3f}" for b, v in found["grid"].items()))
        return 0
    print(f"\nscore: {' + '.join(f'{w:g} * {k}' for k, w in SCORE_COEFFICIENTS.items() if w)}\n")
    header = f"{'case':10s} {'half':8s} {'M':>2s} {'quality':>7s} {'Dice':>6s} {'qa_score':>8s} " + " ".join(
        f"{k[:14]:>14s}" for k in ("expected_dice_gap", "disagreement_band", "partial_classes"))
    print(header)
    for half, rows in (("tuning", tuning), ("held-out", held_out)):
        for r in sorted(rows, key=lambda r: -r.qa.qa_score):
            print(f"{r.case[:10]:10s} {half:8s} {r.n_members:2d} {r.quality:7.2f} {r.dice:6.3f} {r.qa.qa_score:8.4f} "
                  + " ".join(f"{r.qa.components[k]:14.4f}"
                             for k in ("expected_dice_gap", "disagreement_band", "partial_classes")))
    report: dict[str, Any] = {"n_cases": len(results), "coefficients": dict(SCORE_COEFFICIENTS)}
    print()
    for half, rows in (("tuning", tuning), ("held-out", held_out), ("all", results)):
        cal = qa_calibration([r.qa.qa_score for r in rows], [r.dice for r in rows], n_boot=args.n_boot, seed=args.seed)
        report[half] = cal.to_dict()
        print(f"{half:9s} {cal}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
