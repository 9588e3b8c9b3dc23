"""ProbabilityAccumulator and VoteAccumulator against the numpy twins; boxes, channels, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse import ValidationError
from medfuse.fusion import ProbabilityAccumulator, VoteAccumulator, fuse_probabilities, majority_vote


def probabilities(rng, c, shape, dtype=np.float32):
    x = rng.gamma(1.0, size=(c, *shape)) + 1e-3
    return (x / x.sum(axis=0)).astype(dtype)


# ----------------------------------------------------------------------------- ProbabilityAccumulator
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (2, 0, 3), (6, 40, 300)])
def test_members_match_twin(rng, dtype, shape):
    members = [probabilities(rng, 4, shape, dtype) for _ in range(3)]
    weights = [1.0, rng.random(4) + 0.1, 2.5]
    acc = ProbabilityAccumulator(4, shape)
    for m, w in zip(members, weights, strict=True):
        acc.add(m, weight=w)
    sums, totals = ref.accumulate([(m, w, None) for m, w in zip(members, weights, strict=True)], shape, 4)
    want = ref.accumulated_probabilities(sums, totals)
    np.testing.assert_array_equal(acc.probabilities(), want)
    np.testing.assert_array_equal(acc.labels(), want.argmax(0))
    np.testing.assert_allclose(acc.weight_totals, totals)
    assert acc.num_members == 3 and acc.num_classes == 4 and acc.shape == shape


def test_close_to_fuse_probabilities(rng):
    members = [probabilities(rng, 5, (8, 9, 10), np.float16) for _ in range(4)]
    acc = ProbabilityAccumulator(5, (8, 9, 10))
    for m in members:
        acc.add(m)
    fused = fuse_probabilities(members)
    assert (acc.labels() == fused).mean() > 0.999  # only float32 rounding differs


def test_channels_equal_whole_members(rng):
    shape = (4, 6, 9)
    members = [probabilities(rng, 3, shape, np.float16) for _ in range(2)]
    by_member = ProbabilityAccumulator(3, shape)
    by_channel = ProbabilityAccumulator(3, shape)
    for m, w in zip(members, [1.0, 3.0], strict=True):
        by_member.add(m, weight=w)
        for c in range(3):
            assert by_channel.num_members == (0 if w == 1.0 else 1)
            by_channel.add_channel(c, m[c], weight=w)
    assert by_channel.num_members == 2
    np.testing.assert_array_equal(by_channel.probabilities(), by_member.probabilities())
    np.testing.assert_array_equal(by_channel.weight_totals, by_member.weight_totals)


@pytest.mark.parametrize("box", [((1, 4), (2, 5), (3, 9)), ((0, 5), (0, 6), (2, 7)), ((2, 3), (0, 6), (0, 9)),
                                 ((0, 5), (0, 6), (0, 9)), ((1, 1), (0, 6), (0, 9))])
def test_box_counts_as_background_outside(rng, box):
    shape = (5, 6, 9)
    sizes = tuple(hi - lo for lo, hi in box)
    cropped = probabilities(rng, 3, sizes, np.float16)
    full = probabilities(rng, 3, shape)
    acc = ProbabilityAccumulator(3, shape)
    acc.add(full)
    acc.add(cropped, weight=2.0, box=box)
    sums, totals = ref.accumulate([(full, 1.0, None), (cropped, 2.0, box)], shape, 3)
    np.testing.assert_array_equal(acc.probabilities(), ref.accumulated_probabilities(sums, totals))
    # the same as pasting the crop into a background volume
    pasted = np.zeros((3, *shape), np.float16)
    pasted[0] = 1
    pasted[(slice(None), *(slice(lo, hi) for lo, hi in box))] = cropped
    acc2 = ProbabilityAccumulator(3, shape)
    acc2.add(full)
    acc2.add(pasted, weight=2.0)
    np.testing.assert_array_equal(acc.probabilities(), acc2.probabilities())
    # and channel by channel
    acc3 = ProbabilityAccumulator(3, shape)
    acc3.add(full)
    for c in range(3):
        acc3.add_channel(c, cropped[c], weight=2.0, box=box)
    np.testing.assert_array_equal(acc3.probabilities(), acc.probabilities())


def test_long_rows_and_many_rows_are_split_correctly(rng):
    shape = (3, 200, 400)  # full box: runs of 80k voxels are cut into rows
    member = probabilities(rng, 2, shape, np.float16)
    acc = ProbabilityAccumulator(2, shape)
    acc.add(member)
    box = ((0, 3), (10, 190), (5, 395))  # 540 rows of 390 voxels
    crop = probabilities(rng, 2, (3, 180, 390), np.float16)
    acc.add(crop, box=box)
    sums, totals = ref.accumulate([(member, 1.0, None), (crop, 1.0, box)], shape, 2)
    np.testing.assert_array_equal(acc.probabilities(), ref.accumulated_probabilities(sums, totals))


def test_hard_members_and_class_weights(rng):
    shape = (4, 5, 6)
    p = probabilities(rng, 3, shape)
    lab = rng.integers(0, 3, shape).astype(np.int32)
    box = ((1, 3), (0, 5), (2, 6))
    crop = rng.integers(0, 3, (2, 5, 4)).astype(bool)
    acc = ProbabilityAccumulator(3, shape)
    acc.add(p, weight=[1.0, 2.0, 0.5])
    acc.add(lab, weight=[0.5, 1.0, 1.0])
    acc.add(crop, weight=3.0, box=box)
    sums, totals = ref.accumulate([(p, [1.0, 2.0, 0.5], None), (lab, [0.5, 1.0, 1.0], None), (crop, 3.0, box)],
                                  shape, 3)
    np.testing.assert_array_equal(acc.probabilities(), ref.accumulated_probabilities(sums, totals))


def test_layouts(rng):
    shape = (4, 5, 6)
    m = probabilities(rng, 3, shape, np.float16)
    acc = ProbabilityAccumulator(3, shape)
    acc.add(m)
    want = acc.probabilities()
    ro = m.copy()
    ro.flags.writeable = False
    variants = (np.asfortranarray(m), m.astype(">f2"), ro, np.repeat(m, 2, axis=-1)[..., ::2], m.astype(np.float64))
    for variant in variants:
        a = ProbabilityAccumulator(3, shape)
        a.add(variant)
        np.testing.assert_array_equal(a.probabilities(), want)
        b = ProbabilityAccumulator(3, shape)
        for c in range(3):
            b.add_channel(c, variant[c])
        np.testing.assert_array_equal(b.probabilities(), want)


def test_probability_checks_and_broken_state(rng):
    shape = (4, 5, 6)
    acc = ProbabilityAccumulator(3, shape)
    acc.add(probabilities(rng, 3, shape))
    logits = rng.normal(size=(3, *shape)).astype(np.float32)
    with pytest.raises(ValidationError, match="softmax"):
        acc.add(logits)
    with pytest.raises(ValidationError, match="unusable"):
        acc.labels()
    with pytest.raises(ValidationError, match="unusable"):
        acc.add(probabilities(rng, 3, shape))
    acc = ProbabilityAccumulator(3, shape)
    with pytest.raises(ValidationError, match="sum to 1"):
        acc.add(probabilities(rng, 3, shape) * np.float32(0.5))
    acc = ProbabilityAccumulator(3, shape)
    bad = probabilities(rng, 3, shape)[0]
    bad[1, 2, 3] = np.nan
    with pytest.raises(ValidationError, match="non-finite"):
        acc.add_channel(0, bad)


def test_bad_input(rng):
    shape = (4, 5, 6)
    acc = ProbabilityAccumulator(3, shape)
    p = probabilities(rng, 3, shape)
    cases = [
        (lambda: acc.add(p[:2]), r"`member` must have shape \(3, 4, 5, 6\)"),
        (lambda: acc.add(p, box=((0, 2), (0, 5), (0, 6))), r"`member` must have shape \(3, 2, 5, 6\)"),
        (lambda: acc.add(p, box=((0, 9), (0, 5), (0, 6))), r"`box`"),
        (lambda: acc.add(p, box=((0, 4), (0, 5))), r"`box`"),
        (lambda: acc.add(p, weight=-1.0), r"`weight` must be finite and non-negative"),
        (lambda: acc.add(p, weight=[1.0, 2.0]), r"`weight` must be a number or have one entry per class"),
        (lambda: acc.add(p.astype(np.complex64)), r"`member` must be"),
        (lambda: acc.add(np.full(shape, 3, np.uint8)), r"`member` holds labels in \[3, 3\]"),
        (lambda: acc.add(np.full(shape, -1, np.int16)), r"`member` holds labels in \[-1, -1\]"),
        (lambda: acc.add(np.zeros((4, 5), np.uint8)), r"`member` is a label map and must have shape"),
        (lambda: acc.add_channel(3, p[0]), r"`c` must be a class index in \[0, 3\)"),
        (lambda: acc.add_channel(0, p[0, :2]), r"`channel` must have shape \(4, 5, 6\)"),
        (lambda: acc.add_channel(0, np.zeros(shape, np.uint8)), r"`channel` must hold float16/float32"),
        (lambda: ProbabilityAccumulator(0, shape), r"`num_classes` must be >= 1"),
        (lambda: ProbabilityAccumulator(3, ()), r"`shape`"),
        (lambda: ProbabilityAccumulator(3, (4, -1)), r"`shape` must be >= 0"),
        (lambda: ProbabilityAccumulator(3, shape).labels(), "no member has been added"),
    ]
    for fn, match in cases:
        with pytest.raises(ValidationError, match=match):
            fn()
    half = ProbabilityAccumulator(3, shape)
    half.add_channel(0, p[0])
    with pytest.raises(ValidationError, match="every class channel"):
        half.labels()
    zero = ProbabilityAccumulator(3, shape)
    zero.add(p, weight=[1.0, 0.0, 1.0])
    with pytest.raises(ValidationError, match=r"class\(es\) \[1\] have zero total weight"):
        zero.probabilities()


def test_memory_does_not_grow_with_members(rng):
    import tracemalloc

    shape = (8, 32, 32)
    acc = ProbabilityAccumulator(4, shape)
    members = [probabilities(rng, 4, shape, np.float16) for _ in range(6)]
    acc.add(members[0])
    tracemalloc.start()
    try:
        for m in members[1:]:
            acc.add(m)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < members[0].nbytes, peak  # per-add work buffers only, no member-sized copy


# ----------------------------------------------------------------------------- VoteAccumulator
@pytest.mark.parametrize("tie", ["lowest", "undecided", "first"])
def test_vote_accumulator_equals_majority_vote(rng, tie):
    shape = (5, 17, 23)
    maps = [rng.integers(0, 4, shape).astype(np.uint8) for _ in range(6)]
    weights = [1, 2, 1, 3, 0, 1]
    acc = VoteAccumulator(4, shape, tie=tie)
    for m, w in zip(maps, weights, strict=True):
        acc.add(m, weight=w)
    assert acc.num_members == 6 and acc.weight_total == sum(weights)
    np.testing.assert_array_equal(acc.labels(), majority_vote(maps, weights=weights, tie=tie, num_classes=4))
    np.testing.assert_array_equal(acc.labels(), ref.majority_vote(maps, weights=weights, tie=tie,
                                                                    undecided_label=4))


def test_vote_accumulator_widens_its_counts(rng):
    shape = (3, 4, 5)
    maps = [rng.integers(0, 3, shape).astype(np.uint16) for _ in range(5)]
    weights = [200.0, 100.0, 70000.0, 0.5, 1.0]  # uint8 -> uint16 -> float32
    acc = VoteAccumulator(3, shape, tie="undecided", undecided_label=300)
    for m, w in zip(maps, weights, strict=True):
        acc.add(m, weight=w)
    got = acc.labels()
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, ref.majority_vote(maps, weights=weights, tie="undecided",
                                                          undecided_label=300))


def test_vote_accumulator_bad_input(rng):
    acc = VoteAccumulator(3, (2, 3))
    with pytest.raises(ValidationError, match="no member"):
        acc.labels()
    with pytest.raises(ValidationError, match=r"`label_map` holds labels in \[0, 3\]"):
        acc.add(np.array([[0, 1, 2], [3, 0, 0]]))
    with pytest.raises(ValidationError, match=r"`label_map` must have shape \(2, 3\)"):
        acc.add(np.zeros((3, 2), np.uint8))
    with pytest.raises(ValidationError, match=r"`label_map` must be an integer"):
        acc.add(np.zeros((2, 3)))
    with pytest.raises(ValidationError, match="`weight`"):
        acc.add(np.zeros((2, 3), np.uint8), weight=-2)
    with pytest.raises(ValidationError, match="`tie`"):
        VoteAccumulator(3, (2, 3), tie="max")
    acc.add(np.zeros((2, 3), np.uint8), weight=0.0)
    with pytest.raises(ValidationError, match="positive weight"):
        acc.labels()
    acc.add(np.ones((2, 3), bool))
    assert (acc.labels() == 1).all()
