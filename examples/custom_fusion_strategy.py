"""Unit-test a new fusion strategy on synthetic members, against medfuse's probability averaging.

The whole test is five lines (see ``test_geometric_mean_is_competitive``):

    ph = phantom(seed=0)                                                   # reference labels + geometry
    members = simulate_members(ph, qualities=(0.9, 0.8, 0.7), seed=1)      # 3 soft members, float16
    mine = foreground_dice(ph.labels, geometric_mean_fusion(members))      # your strategy
    baseline = foreground_dice(ph.labels, medfuse.fuse_probabilities(members))
    assert mine > 0.95 * baseline

Run:  python examples/custom_fusion_strategy.py     (prints a table over seeds and member qualities)
      pytest examples/custom_fusion_strategy.py     (runs the test functions)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

import medfuse
from medfuse.synthetic import phantom, simulate_members


def geometric_mean_fusion(members: Sequence[np.ndarray], *, floor: float = 1e-4) -> np.ndarray:
    """Label map of the geometric mean of members' probabilities (a 'product of experts' vote).

    One class channel at a time, in float32, so no (M, C, ...) stack is ever built.
    """
    num_classes = members[0].shape[0]
    best = np.full(members[0].shape[1:], -np.inf, dtype=np.float32)
    labels = np.zeros(members[0].shape[1:], dtype=np.uint8)
    for c in range(num_classes):
        log_sum = np.zeros(best.shape, dtype=np.float32)
        for m in members:
            log_sum += np.log(np.maximum(m[c].astype(np.float32), floor))
        wins = log_sum > best  # strict: ties go to the lowest class, as in medfuse
        labels[wins] = c
        np.maximum(best, log_sum, out=best)
    return labels


def foreground_dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    scores = medfuse.dice(reference, prediction, labels=range(1, int(reference.max()) + 1))
    return float(np.nanmean(list(scores.values())))


def test_geometric_mean_is_competitive() -> None:
    ph = phantom(seed=0)
    members = simulate_members(ph, qualities=(0.9, 0.8, 0.7), seed=1)
    mine = foreground_dice(ph.labels, geometric_mean_fusion(members))
    baseline = foreground_dice(ph.labels, medfuse.fuse_probabilities(members))
    assert mine > 0.95 * baseline


def test_a_missed_structure_vetoes_the_geometric_mean() -> None:
    """A property worth knowing: one member that never predicts a label suppresses it in the product."""
    ph = phantom((32, 64, 64), seed=3)
    members = simulate_members(ph, qualities=(0.95, 0.95, 0.9), seed=2)
    members[2] = simulate_members(ph, qualities=(0.9,), missed_labels=(8,), seed=5)[0]
    assert not np.any(geometric_mean_fusion(members) == 8)
    assert np.any(medfuse.fuse_probabilities(members) == 8)  # the arithmetic mean keeps it


def main() -> None:
    rows = []
    for qualities in ((0.9, 0.8, 0.7), (0.9, 0.9, 0.5), (0.95, 0.6, 0.6)):
        for seed in range(3):
            ph = phantom(seed=seed)
            members = simulate_members(ph, qualities=qualities, seed=seed)
            best_member = max(foreground_dice(ph.labels, m.argmax(0)) for m in members)
            inverse_error = [1.0 / (1.0 - q) ** 2 for q in qualities]  # weights a search would learn
            rows.append((qualities, seed, best_member,
                         foreground_dice(ph.labels, medfuse.fuse_probabilities(members)),
                         foreground_dice(ph.labels, medfuse.fuse_probabilities(members, weights=inverse_error)),
                         foreground_dice(ph.labels, geometric_mean_fusion(members))))
    print(f"{'qualities':18s} {'seed':>4s} {'best member':>12s} {'mean':>8s} {'weighted':>9s} {'geometric':>10s}")
    for qualities, seed, best, mean, weighted, geo in rows:
        print(f"{qualities!s:18s} {seed:4d} {best:12.4f} {mean:8.4f} {weighted:9.4f} {geo:10.4f}")
    print("mean / weighted: medfuse.fuse_probabilities; weighted uses 1 / (1 - quality)^2 per member")


if __name__ == "__main__":
    main()
