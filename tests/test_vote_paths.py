"""The vote kernel's three paths per chunk (copy of member 0, table for a few contested voxels, branch-free
pairwise counting for many) against the numpy twin, for every tie rule, weights and member count, at
agreement levels from unanimous to random. Runs compiled and with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse._kernels.vote import PAIRWISE_FROM
from medfuse.fusion import arrays, majority_vote

CHUNK = arrays.VOTE_CHUNK


def _maps(rng, n_members, contested, n_labels=14, n_chunks=3, dtype=np.uint8):
    """Label maps over ``n_chunks`` chunks (plus an uneven tail): chunk k has ``contested[k]`` of its
    voxels changed in one or two members (random labels), the rest unanimous."""
    n = n_chunks * CHUNK + 123
    base = rng.integers(0, n_labels, n).astype(dtype)
    maps = [base.copy() for _ in range(n_members)]
    for k in range(n_chunks + 1):
        lo, hi = k * CHUNK, min(n, (k + 1) * CHUNK)
        frac = contested[min(k, len(contested) - 1)]
        idx = lo + np.flatnonzero(rng.random(hi - lo) < frac)
        for _ in range(2):
            who = rng.integers(0, n_members, idx.size)
            for j in range(n_members):
                sel = idx[who == j]
                maps[j][sel] = rng.integers(0, n_labels, sel.size)
    return [m.reshape(1, 1, -1) for m in maps]


LEVELS = {
    "unanimous": [0.0],
    "one voxel": [1.5 / CHUNK],
    "few (table)": [0.5 / PAIRWISE_FROM],
    "many (pairwise)": [0.55],
    "random": [1.0],
    "mixed chunks": [0.0, 0.55, 1.5 / CHUNK, 1.0],
}


@pytest.mark.parametrize("level", list(LEVELS))
@pytest.mark.parametrize("tie", ["lowest", "undecided", "first"])
@pytest.mark.parametrize("n_members", [2, 3, 5, 6])
def test_plain_vote_matches_twin_at_every_agreement(rng, level, tie, n_members):
    maps = _maps(rng, n_members, LEVELS[level], n_labels=4 if n_members > 3 else 14)
    got = majority_vote(maps, tie=tie)
    np.testing.assert_array_equal(got, ref.majority_vote(maps, tie=tie))


@pytest.mark.parametrize("level", ["few (table)", "many (pairwise)", "mixed chunks"])
@pytest.mark.parametrize("tie", ["lowest", "undecided", "first"])
@pytest.mark.parametrize("weights", ["random", "ties"])
def test_weighted_vote_matches_twin_at_every_agreement(rng, level, tie, weights):
    maps = _maps(rng, 5, LEVELS[level], n_labels=3)
    w = rng.random(5) + 0.1 if weights == "random" else np.array([1.0, 1.0, 0.5, 0.5, 1.0])
    got = majority_vote(maps, weights=w, tie=tie)
    np.testing.assert_array_equal(got, ref.majority_vote(maps, weights=w, tie=tie))


@pytest.mark.parametrize("tie", ["lowest", "undecided", "first"])
def test_uint16_labels_and_undecided_label_on_pairwise_chunks(rng, tie):
    maps = _maps(rng, 5, [0.7], n_labels=300, dtype=np.uint16)
    kwargs = {"undecided_label": 1000} if tie == "undecided" else {}
    got = majority_vote(maps, tie=tie, **kwargs)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, ref.majority_vote(maps, tie=tie, **kwargs))
    small = [np.minimum(m, 9).astype(np.uint16) for m in maps]
    if tie == "undecided":
        np.testing.assert_array_equal(majority_vote(small, tie=tie, undecided_label=200),
                                      ref.majority_vote(small, tie=tie, undecided_label=200))


def test_pairwise_path_is_taken_and_counted(rng, monkeypatch):
    # the per-range count of contested voxels covers both paths: equal to the twin's count
    maps = _maps(rng, 5, [0.0, 0.55, 1.5 / CHUNK])
    stack = np.stack([m.ravel() for m in maps])
    score0 = (stack == stack[0]).sum(axis=0)
    contested = int((score0 <= 2).sum())
    seen = {}
    from medfuse._kernels import threads

    original = threads.run_ranges

    def spy(kernel, ranges, n, *args):
        out = original(kernel, ranges, n, *args)
        seen["n_slow"] = int(args[-1].sum())
        return out

    monkeypatch.setattr(threads, "run_ranges", spy)
    majority_vote(maps)  # majority_vote imports run_ranges from threads at call time: the spy sees it
    assert seen["n_slow"] == contested
