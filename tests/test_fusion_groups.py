"""The fusion kernel's member groups (1, 4 or 5 members of one kind, folded or plain argmax) on every mix.

The kernel sums runs of same-kind probability members four or five at a time and folds the argmax into
the last group when it can; each of those loops must give the numpy twin's bits, whatever run lengths
and neighbours (another float kind, a label map) surround it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse.fusion import average_probabilities, fuse_probabilities

SHAPE = (2, 3, 37)  # 222 voxels: short, and no multiple of a prefetch step
N_CLASSES = 3


def _members(rng, kinds):
    out = []
    for kind in kinds:
        if kind == "u8":
            out.append(rng.integers(0, N_CLASSES, SHAPE).astype(np.uint8))
        else:
            x = rng.gamma(1.0, size=(N_CLASSES, *SHAPE)) + 1e-3
            out.append((x / x.sum(axis=0)).astype(np.float16 if kind == "f16" else np.float32))
    return out


MIXES = [
    (first, n_first, between, n_second)
    for first in ("f16", "f32")
    for n_first, n_second in itertools.product(range(1, 7), repeat=2)
    for between in ("u8", "")
]


@pytest.mark.parametrize(("first", "n_first", "between", "n_second"), MIXES,
                         ids=[f"{n}{a}+{b or 'none'}+{m}other" for a, n, b, m in MIXES])
def test_every_member_grouping_matches_twin(rng, first, n_first, between, n_second):
    second = "f32" if first == "f16" else "f16"
    kinds = [first] * n_first + ([between] if between else []) + [second] * n_second
    members = _members(rng, kinds)
    w = (rng.random((len(members), N_CLASSES)) + 0.05).astype(np.float64)
    want = ref.weighted_mean(members, w)
    # the mean output: every group loop in its plain form
    np.testing.assert_array_equal(average_probabilities(members, weights=w), want)
    # labels only: the last group folds the argmax when it has 4 or 5 members
    np.testing.assert_array_equal(fuse_probabilities(members, weights=w), ref.fuse_probabilities(members, w))


@pytest.mark.parametrize("n", range(1, 7))
@pytest.mark.parametrize("kind", ["f16", "f32"])
def test_ties_keep_the_lowest_class_in_every_group_size(n, kind):
    # classes 1 and 2 tie exactly in every member (values exact in float16): strict ">" keeps class 1,
    # in the folded loops (4 or 5 members last) as in the argmax step after the others
    p = np.empty((N_CLASSES, *SHAPE), dtype=np.float16 if kind == "f16" else np.float32)
    p[0], p[1], p[2] = 0.25, 0.375, 0.375
    got = fuse_probabilities([p.copy() for _ in range(n)])
    np.testing.assert_array_equal(got, np.ones(SHAPE, dtype=np.uint8))
