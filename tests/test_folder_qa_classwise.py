"""ClassMajorMean(uncertainty=True) (kernels in medfuse._kernels.planes) against the numpy twin of the maps."""

from __future__ import annotations

import numpy as np
import pytest

from _reference.twin_uncertainty import uncertainty_twin
from medfuse.errors import ValidationError
from medfuse.fusion.classwise import ClassMajorMean


def _members(rng, shape, c_count, dtype, *, n_prob=3, n_hard=1, peaked=True):
    members = []
    for _ in range(n_prob):
        box = tuple(tuple(int(v) for v in sorted(rng.integers(0, s + 1, size=2))) for s in shape)
        sizes = tuple(b - a for a, b in box)
        p = rng.random((c_count, *sizes)) ** (4 if peaked else 1)
        p /= p.sum(axis=0, keepdims=True)
        members.append(("probs", p.astype(dtype), box))
    for _ in range(n_hard):
        members.append(("labels", rng.integers(0, c_count, size=shape).astype(np.uint8), None))
    return members


def _full(member, shape, c_count):
    """The member as the twin sees it: probabilities pasted into the region (background outside), or labels."""
    kind, data, box = member
    if kind == "labels":
        return data
    full = np.zeros((c_count, *shape), dtype=np.float64)
    full[0] = 1.0
    full[(slice(None), *(slice(a, b) for a, b in box))] = data.astype(np.float64)
    return full


def _run(shape, members, weights, c_count, *, space="probability", shuffle_ids=False):
    w = np.asarray(weights, dtype=np.float64)
    wm = w if w.ndim == 2 else np.repeat(w[:, None], c_count, axis=1)
    fuser = ClassMajorMean(c_count, shape, uncertainty=True, weights=w, space=space)
    for c in range(c_count):
        fuser.begin_class(c)
        order = list(range(len(members)))[::-1] if shuffle_ids else range(len(members))
        for m in order:
            kind, data, box = members[m]
            member = m if shuffle_ids else None
            if kind == "labels":
                fuser.add_labels(data, weight=float(wm[m, c]), member=member)
            else:
                fuser.add_probabilities(np.ascontiguousarray(data[c]), weight=float(wm[m, c]), box=box, member=member)
        fuser.end_class(float(wm[:, c].sum()))
    return fuser


def _compare(maps, twin):
    np.testing.assert_allclose(maps.entropy, twin["entropy"], atol=2e-5)
    np.testing.assert_allclose(maps.mutual_information, twin["mutual_information"], atol=3e-5)
    np.testing.assert_allclose(maps.disagreement, twin["disagreement"], atol=1e-5)
    np.testing.assert_array_equal(maps.member_volumes, twin["member_volumes"])
    np.testing.assert_array_equal(maps.member_overlap, twin["member_overlap"])
    np.testing.assert_array_equal(maps.fused_volumes, twin["fused_volumes"])
    np.testing.assert_allclose(maps.member_shares, twin["member_shares"], rtol=1e-12)
    for name in ("entropy", "mutual_information", "disagreement"):
        assert maps.map(name).dtype == np.float32


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_negative_zero_and_tiny_negatives_are_below_every_probability(rng, dtype):
    """-0.0 and negatives the range check accepts (down to -1e-3) rank below every probability in a member's
    running argmax (kept on raw bits, where a sign bit would make them the largest) and add 0 ln 0."""
    shape, c_count = (4, 6, 9), 4
    members = []
    for _ in range(3):
        p = rng.random((c_count, *shape)) ** 4 + 1e-3
        p /= p.sum(axis=0, keepdims=True)
        small = p[2] < 0.2
        p[0] += np.where(small, p[2], 0.0)  # the class sums stay 1
        p[2] = np.where(small & (rng.random(shape) < 0.5), -0.0, np.where(small, -rng.random(shape) * 1e-4, p[2]))
        members.append(("probs", p.astype(dtype), tuple((0, n) for n in shape)))
    assert any(np.signbit(m[1][2]).any() for m in members)
    fuser = _run(shape, members, np.ones(3), c_count)
    fused = fuser.labels()
    full = [_full(m, shape, c_count) for m in members]
    _compare(fuser.uncertainty(), uncertainty_twin(full, fused, weights=np.ones(3), num_classes=c_count))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("space", ["probability", "log"])
def test_rows_of_zeros_are_skipped_without_changing_the_maps(rng, dtype, space):
    """Organs: each class > 0 is exactly 0 on most rows of a member (the adding kernel skips the uncertainty
    terms of such rows), including a member whose only non-zero value of a class sits at the end of a row
    and a class that beats the running maximum on a row where it is the only non-zero class."""
    shape, c_count = (4, 6, 9), 4
    members = []
    for k in range(3):
        p = np.zeros((c_count, *shape))
        p[0] = 1.0
        z = k % shape[0]
        p[1 + k % (c_count - 1), z, 1:4, 2:6] = rng.random((3, 4)) * 0.9 + 0.1  # an organ on a few rows
        p[2, :, 5, 8] = 0.7  # the last voxel of one row
        p[0] = 1.0 - p[1:].sum(axis=0)
        members.append(("probs", p.astype(dtype), tuple((0, n) for n in shape)))
    fuser = _run(shape, members, np.ones(3), c_count, space=space)
    fused = fuser.labels()
    maps = fuser.uncertainty()
    full = [_full(m, shape, c_count) for m in members]
    _compare(maps, uncertainty_twin(full, fused, weights=np.ones(3), num_classes=c_count))
    assert maps.member_volumes[:, 2].min() >= shape[0]  # the lone voxels won their members' argmax


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (0, 4, 4), (6, 11, 17)])
@pytest.mark.parametrize("weights", ["equal", "member", "class"])
@pytest.mark.parametrize("space", ["probability", "log"])
def test_maps_match_the_twin(rng, dtype, shape, weights, space):
    c_count = 4
    members = _members(rng, shape, c_count, dtype)
    n = len(members)
    w = {"equal": np.ones(n), "member": rng.random(n) + 0.2, "class": rng.random((n, c_count)) + 0.1}[weights]
    fuser = _run(shape, members, w, c_count, space=space)
    fused = fuser.labels()
    maps = fuser.uncertainty()
    full = [_full(m, shape, c_count) for m in members]
    _compare(maps, uncertainty_twin(full, fused, weights=w, num_classes=c_count))
    assert maps.entropy.shape == shape


def test_member_ids_may_come_in_any_order(rng):
    shape, c_count = (4, 6, 5), 3
    members = _members(rng, shape, c_count, np.float16, n_prob=2, n_hard=2)
    w = rng.random(4) + 0.5
    fuser = _run(shape, members, w, c_count, shuffle_ids=True)
    full = [_full(m, shape, c_count) for m in members]
    _compare(fuser.uncertainty(), uncertainty_twin(full, fuser.labels(), weights=w, num_classes=c_count))


def test_agreeing_certain_members_give_zero_maps_and_ties_go_low():
    shape, c_count = (2, 3, 4), 3
    onehot = np.zeros((c_count, *shape), np.float32)
    onehot[2] = 1.0
    box = tuple((0, s) for s in shape)
    fuser = _run(shape, [("probs", onehot, box), ("probs", onehot, box)], np.ones(2), c_count)
    maps = fuser.uncertainty()
    assert (fuser.labels() == 2).all()
    assert not maps.entropy.any() and not maps.mutual_information.any() and not maps.disagreement.any()
    assert maps.member_overlap[:, 2].tolist() == [24, 24]
    flat = np.full((c_count, *shape), 1 / 3, np.float32)  # every class tied: member argmax 0
    fuser = _run(shape, [("probs", flat, box), ("probs", onehot, box)], [1.0, 1.0], c_count)
    maps = fuser.uncertainty()
    assert maps.member_volumes[0].tolist() == [24, 0, 0]
    assert maps.mutual_information.min() > 0.1


def test_misuse_is_refused(rng):
    with pytest.raises(ValidationError, match="num_members"):
        ClassMajorMean(3, (2, 2, 2), uncertainty=True)
    fuser = ClassMajorMean(3, (2, 2, 2), uncertainty=True, num_members=2)
    fuser.begin_class(0)
    p = np.full((2, 2, 2), 0.5, np.float32)
    fuser.add_probabilities(p, weight=1.0)
    with pytest.raises(ValidationError, match="members were added"):
        fuser.end_class(1.0)
    plain = ClassMajorMean(2, (1, 1, 1))
    for c in range(2):
        plain.begin_class(c)
        plain.add_probabilities(np.full((1, 1, 1), 0.5, np.float32), weight=1.0)
        plain.end_class(1.0)
    with pytest.raises(ValidationError, match="uncertainty=True"):
        plain.uncertainty()
    one = _run((2, 2, 2), _members(rng, (2, 2, 2), 2, np.float32, n_prob=1, n_hard=0), [1.0], 2)
    one.uncertainty()
    with pytest.raises(ValidationError, match="once"):
        one.uncertainty()
