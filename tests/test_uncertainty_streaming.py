"""Uncertainty maps from the streaming accumulators (ProbabilityAccumulator / VoteAccumulator with
uncertainty=True) against fusion_uncertainty of the same members and the numpy twin: whole members, boxes,
channel by channel, log space, votes. Runs compiled and with NUMBA_DISABLE_JIT=1 (small arrays)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from _reference.twin_uncertainty import uncertainty_twin
from medfuse import ValidationError
from medfuse.fusion import ProbabilityAccumulator, VoteAccumulator, fuse_probabilities, fusion_uncertainty

SLOW = bool(numba.config.DISABLE_JIT)
MAPS = ("entropy", "mutual_information", "disagreement")
COUNTS = ("member_volumes", "member_overlap", "fused_volumes")


def probabilities(rng, c, shape, dtype=np.float32, concentration=0.5):
    x = rng.gamma(concentration, size=(c, *shape)) + 1e-4
    return (x / x.sum(axis=0)).astype(dtype)


def assert_same_maps(got, expected, *, atol=1e-5):
    for name in MAPS:
        np.testing.assert_allclose(getattr(got, name), getattr(expected, name), atol=atol, rtol=0, err_msg=name)
    for name in COUNTS:
        np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)
    np.testing.assert_allclose(got.member_shares, expected.member_shares, rtol=1e-12)


def assert_twin(maps, members, labels, weights, n_classes, *, atol=1e-5):
    twin = uncertainty_twin(members, labels, weights=weights, num_classes=n_classes)
    for name in MAPS:
        np.testing.assert_allclose(getattr(maps, name), twin[name], atol=atol, rtol=0, err_msg=name)
    for name in COUNTS:
        np.testing.assert_array_equal(getattr(maps, name), twin[name], err_msg=name)


def mixed_members(rng, n_classes, shape, n_members):
    kinds = [np.float16, np.float32, np.uint8]
    out = []
    for m in range(n_members):
        kind = kinds[m % 3]
        out.append(probabilities(rng, n_classes, shape, kind) if kind != np.uint8
                   else rng.integers(0, n_classes, shape).astype(np.uint8))
    return out


@pytest.mark.parametrize("space", ["probability", "log"])
@pytest.mark.parametrize("per_class", [False, True])
def test_probability_accumulator_equals_fusion_uncertainty(rng, space, per_class):
    n_classes, shape = 5, ((3, 4, 5) if SLOW else (7, 19, 23))
    members = mixed_members(rng, n_classes, shape, 5)
    weights = rng.random((5, n_classes)) + 0.1 if per_class else rng.random(5) + 0.1
    acc = ProbabilityAccumulator(n_classes, shape, space=space, uncertainty=True)
    for member, w in zip(members, weights, strict=True):
        acc.add(member, weight=w)
    maps = acc.uncertainty()
    labels = acc.labels()
    np.testing.assert_array_equal(labels, fuse_probabilities(members, weights=weights, space=space))
    assert_same_maps(maps, fusion_uncertainty(members, weights=weights, space=space))
    assert_twin(maps, members, labels, weights, n_classes)


def test_boxes_count_as_background_outside(rng):
    n_classes, shape = 4, (6, 7, 5)
    boxes = [((1, 5), (0, 7), (2, 4)), ((0, 6), (0, 7), (0, 5)), ((2, 3), (3, 6), (0, 5))]
    members, full = [], []
    for k, box in enumerate(boxes):
        sizes = tuple(b - a for a, b in box)
        region = tuple(slice(a, b) for a, b in box)
        if k == 2:
            part = rng.integers(0, n_classes, sizes).astype(np.uint8)
            whole = np.zeros(shape, np.uint8)
            whole[region] = part
        else:
            part = probabilities(rng, n_classes, sizes, np.float16 if k == 0 else np.float32)
            whole = np.zeros((n_classes, *shape), part.dtype)
            whole[0] = 1
            whole[(slice(None), *region)] = part
        members.append((part, box))
        full.append(whole)
    weights = [1.0, 2.0, 0.5]
    for space in ("probability", "log"):
        acc = ProbabilityAccumulator(n_classes, shape, space=space, uncertainty=True)
        for (part, box), w in zip(members, weights, strict=True):
            acc.add(part, weight=w, box=box)
        maps = acc.uncertainty()
        np.testing.assert_array_equal(acc.labels(), fuse_probabilities(full, weights=weights, space=space))
        assert_same_maps(maps, fusion_uncertainty(full, weights=weights, space=space))


def test_channel_by_channel_equals_whole_members(rng):
    n_classes, shape = 4, (5, 6, 7)
    members = [probabilities(rng, n_classes, shape, dt) for dt in (np.float16, np.float32, np.float16)]
    members[2][:, 0, 0, :] = 0.25  # exact ties between all classes: the lowest class wins, whatever the order
    weights = [[1.0, 1.0, 1.0, 1.0], [0.5, 2.0, 1.0, 1.5], [3.0, 3.0, 3.0, 3.0]]
    box = ((1, 5), (0, 6), (2, 7))
    region = (slice(None), *(slice(a, b) for a, b in box))
    for space in ("probability", "log"):
        whole = ProbabilityAccumulator(n_classes, shape, space=space, uncertainty=True)
        by_channel = ProbabilityAccumulator(n_classes, shape, space=space, uncertainty=True)
        for member, w in zip(members, weights, strict=True):
            whole.add(member[region], weight=w, box=box)
        for c in rng.permutation(n_classes):  # classes in any order, members in the same order for each
            for member, w in zip(members, weights, strict=True):
                by_channel.add_channel(int(c), member[region][c], weight=w[c], box=box)
        np.testing.assert_array_equal(by_channel.labels(), whole.labels())
        assert_same_maps(by_channel.uncertainty(), whole.uncertainty())


@pytest.mark.parametrize("n_classes", [3, 300])
def test_vote_accumulator_equals_fusion_uncertainty(rng, n_classes):
    shape = (4, 5, 6) if SLOW or n_classes > 3 else (9, 17, 21)
    maps_in = [rng.integers(0, min(n_classes, 4), shape).astype(np.uint8 if n_classes <= 256 else np.uint16)
               for _ in range(5)]
    weights = [1, 2, 1, 3, 1]
    acc = VoteAccumulator(n_classes, shape, uncertainty=True)
    for lab, w in zip(maps_in, weights, strict=True):
        acc.add(lab, weight=w)
    maps = acc.uncertainty()
    expected = fusion_uncertainty(maps_in, weights=weights, num_classes=n_classes)
    np.testing.assert_array_equal(acc.labels(), fuse_probabilities(maps_in, weights=weights, num_classes=n_classes))
    assert_same_maps(maps, expected)
    np.testing.assert_array_equal(maps.mutual_information, maps.entropy)
    assert_twin(maps, maps_in, acc.labels(), weights, n_classes)


def test_vote_undecided_voxels_agree_with_nobody(rng):
    shape = (3, 4, 5)
    a = rng.integers(0, 3, shape).astype(np.uint8)
    b = (a + 1) % 3
    acc = VoteAccumulator(3, shape, tie="undecided", uncertainty=True)
    acc.add(a)
    acc.add(b)
    labels = acc.labels()
    assert np.all(labels == 3)  # every voxel is a tie
    maps = acc.uncertainty()
    assert np.all(maps.disagreement == 1.0)
    assert not maps.fused_volumes.any() and not maps.member_overlap.any()
    np.testing.assert_allclose(maps.entropy, np.log(2), atol=1e-6)


def test_memory_grows_one_byte_per_member(rng):
    shape = (4, 8, 8)
    n_voxels = int(np.prod(shape))
    acc = ProbabilityAccumulator(3, shape, uncertainty=True)
    vote = VoteAccumulator(3, shape, uncertainty=True)
    for m in range(1, 4):
        acc.add(probabilities(rng, 3, shape, np.float16), weight=float(m))
        vote.add(rng.integers(0, 3, shape).astype(np.uint8))
        assert acc._unc.nbytes == m * n_voxels + 4 * n_voxels  # argmax maps + one running entropy map
        assert vote._unc.nbytes == m * n_voxels


def test_empty_volume(rng):
    acc = ProbabilityAccumulator(3, (0, 4), uncertainty=True)
    acc.add(np.zeros((3, 0, 4), np.float32))
    maps = acc.uncertainty()
    assert maps.entropy.shape == (0, 4) and maps.member_volumes.shape == (1, 3)
    vote = VoteAccumulator(3, (0, 4), uncertainty=True)
    vote.add(np.zeros((0, 4), np.uint8))
    assert vote.uncertainty().disagreement.shape == (0, 4)


def test_errors(rng):
    acc = ProbabilityAccumulator(3, (2, 3))
    acc.add(probabilities(rng, 3, (2, 3)))
    with pytest.raises(ValidationError, match="uncertainty=True"):
        acc.uncertainty()
    vote = VoteAccumulator(3, (2, 3))
    vote.add(np.zeros((2, 3), np.uint8))
    with pytest.raises(ValidationError, match="uncertainty=True"):
        vote.uncertainty()
    with pytest.raises(ValidationError, match="`uncertainty` must be True or False"):
        ProbabilityAccumulator(3, (2, 3), uncertainty="yes")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="`uncertainty` must be True or False"):
        VoteAccumulator(3, (2, 3), uncertainty=1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="no member"):
        ProbabilityAccumulator(3, (2, 3), uncertainty=True).uncertainty()
    with pytest.raises(ValidationError, match="no member"):
        VoteAccumulator(3, (2, 3), uncertainty=True).uncertainty()
    half = ProbabilityAccumulator(3, (2, 3), uncertainty=True)
    half.add_channel(0, probabilities(rng, 3, (2, 3))[0])
    with pytest.raises(ValidationError, match="add_channel"):
        half.uncertainty()


@pytest.mark.parametrize("weights", [[100, 200, 50], [0.5, 1.5, 1.0]])  # uint16 counts, float32 counts
def test_vote_wide_counts(rng, weights):
    shape = (3, 5, 7)
    maps_in = [rng.integers(0, 4, shape).astype(np.uint8) for _ in weights]
    acc = VoteAccumulator(4, shape, uncertainty=True)
    for lab, w in zip(maps_in, weights, strict=True):
        acc.add(lab, weight=w)
    assert acc._counts.dtype == (np.uint16 if float(weights[0]).is_integer() else np.float32)
    assert_twin(acc.uncertainty(), maps_in, acc.labels(), weights, 4)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_negative_zero_and_tiny_negatives_are_below_every_probability(rng, dtype):
    """-0.0 and the negatives the range check accepts count as 0 in the accumulator's member argmax and
    entropy, as in the twin."""
    n_classes, shape = 4, (3, 5, 7)
    members = []
    for _ in range(3):
        p = probabilities(rng, n_classes, shape, np.float64, concentration=2.0)
        small = p[1] < 0.2
        p[0] += np.where(small, p[1], 0.0)  # the class sums stay 1
        p[1] = np.where(small & (rng.random(shape) < 0.5), -0.0, np.where(small, -rng.random(shape) * 1e-4, p[1]))
        members.append(p.astype(dtype))
    assert any(np.signbit(m[1]).any() for m in members)
    acc = ProbabilityAccumulator(n_classes, shape, uncertainty=True)
    for member in members:
        acc.add(member)
    assert_twin(acc.uncertainty(), members, acc.labels(), None, n_classes)
