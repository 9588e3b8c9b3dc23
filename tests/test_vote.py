"""majority_vote against the numpy twin (every tie rule, weights, dtypes, layouts), SimpleITK, bad input."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse import ValidationError
from medfuse.fusion import majority_vote

TIES = ["lowest", "undecided", "first"]


def noisy_maps(rng, n_members, shape, n_labels, flip=0.3, dtype=np.uint8):
    """Spatially coherent label maps (stripes) that disagree on a fraction ``flip`` of the voxels."""
    base = (np.indices(shape).sum(axis=0) // 3) % n_labels
    maps = []
    for _ in range(n_members):
        m = base.copy()
        noise = rng.random(shape) < flip
        m[noise] = rng.integers(0, n_labels, int(noise.sum()))
        maps.append(m.astype(dtype))
    return maps


@pytest.mark.parametrize("tie", TIES)
@pytest.mark.parametrize("n_members", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 5), (3, 7, 11), (0, 4, 4), (1, 1, 130)])
def test_vote_matches_twin(rng, tie, n_members, shape):
    maps = [rng.integers(0, 3, shape).astype(np.uint8) for _ in range(n_members)]  # many ties
    got = majority_vote(maps, tie=tie)
    assert got.shape == shape and got.dtype == np.uint8
    np.testing.assert_array_equal(got, ref.majority_vote(maps, tie=tie, undecided_label=int(max(
        (m.max() for m in maps if m.size), default=0)) + 1))


@pytest.mark.parametrize("tie", TIES)
def test_weighted_vote_matches_twin(rng, tie):
    maps = noisy_maps(rng, 6, (9, 17, 33), 4, flip=0.6)
    for w in (rng.random(6), [1, 2, 1, 2, 1, 2], [3, 0, 1, 1, 1, 0], [0.5, 0.25, 0.25, 0.5, 0.25, 0.25]):
        got = majority_vote(maps, weights=w, tie=tie, undecided_label=9 if tie == "undecided" else None)
        np.testing.assert_array_equal(got, ref.majority_vote(maps, weights=w, tie=tie, undecided_label=9),
                                      err_msg=str(w))


def test_vote_on_a_large_coherent_volume_on_several_threads(rng):
    maps = noisy_maps(rng, 5, (40, 64, 80), 6, flip=0.05)  # mostly unanimous: fast path + slow path
    want = {t: ref.majority_vote(maps, tie=t, undecided_label=6) for t in TIES}
    old = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            for t in TIES:
                np.testing.assert_array_equal(majority_vote(maps, tie=t), want[t], err_msg=t)
    finally:
        numba.set_num_threads(old)


def test_tie_rules_on_a_hand_made_example():
    # voxel 0: 1,2,1,2,0 -> 1 and 2 tie (2 votes each); voxel 1: 2,2,1,1,3 -> tie; voxel 2: unanimous 4
    maps = [np.array([1, 2, 4]), np.array([2, 2, 4]), np.array([1, 1, 4]), np.array([2, 1, 4]),
            np.array([0, 3, 4])]
    maps = [m.astype(np.uint8) for m in maps]
    np.testing.assert_array_equal(majority_vote(maps), [1, 1, 4])
    np.testing.assert_array_equal(majority_vote(maps, tie="first"), [1, 2, 4])
    np.testing.assert_array_equal(majority_vote(maps, tie="undecided"), [5, 5, 4])  # max label + 1
    np.testing.assert_array_equal(majority_vote(maps, tie="undecided", undecided_label=255), [255, 255, 4])
    np.testing.assert_array_equal(majority_vote(maps, tie="undecided", num_classes=7), [7, 7, 4])
    # weights break the tie: member 1 (label 2, 2) counts double
    np.testing.assert_array_equal(majority_vote(maps, weights=[1, 2, 1, 1, 1]), [2, 2, 4])
    np.testing.assert_array_equal(majority_vote(maps, weights=[0, 1, 1, 1, 1], tie="first"), [2, 1, 4])
    # a zero-weight member adds nothing, but 'first' still takes the tied labels in member order:
    # scores 1: 0 + 1, 2: 1, 3: 0 -> 1 and 2 tie, and member 0 (weight 0) says 1
    few = [np.array([v], np.uint8) for v in (1, 2, 1, 3)]
    assert majority_vote(few, weights=[0, 1, 1, 0], tie="first")[0] == 1
    assert majority_vote(few[1:], weights=[1, 1, 0], tie="first")[0] == 2


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.int32, np.int64,
                                   np.uint32, np.uint64])
def test_every_integer_dtype(rng, dtype):
    n = 2 if dtype == np.bool_ else 5
    maps = [rng.integers(0, n, (4, 5, 6)).astype(dtype) for _ in range(5)]
    for t in TIES:
        np.testing.assert_array_equal(majority_vote(maps, tie=t), ref.majority_vote(maps, tie=t, undecided_label=int(
            max(int(m.max()) for m in maps)) + 1), err_msg=f"{dtype} {t}")


def test_large_labels_give_uint16(rng):
    maps = [rng.choice([0, 300, 1000], (3, 4, 5)).astype(np.uint16) for _ in range(3)]
    got = majority_vote(maps)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, ref.majority_vote(maps))
    small = [m.astype(np.uint8) for m in [rng.integers(0, 3, (3, 4)) for _ in range(3)]]
    assert majority_vote(small, tie="undecided", undecided_label=256).dtype == np.uint16
    assert majority_vote(small, num_classes=300).dtype == np.uint16
    assert majority_vote(small, num_classes=256).dtype == np.uint8
    mixed = [small[0], small[1].astype(np.uint16), small[2]]
    np.testing.assert_array_equal(majority_vote(mixed), majority_vote(small))


def test_layouts_and_stacks(rng):
    maps = noisy_maps(rng, 3, (5, 6, 7), 4)
    want = majority_vote(maps)
    stack = np.stack(maps)
    np.testing.assert_array_equal(majority_vote(stack), want)
    ro = maps[1].copy()
    ro.flags.writeable = False
    variants = {
        "fortran": np.asfortranarray(maps[1]),
        "big-endian": maps[1].astype(">u2"),
        "read-only": ro,
        "strided": np.repeat(maps[1], 2, axis=-1)[..., ::2],
        "negative": maps[1][::-1][::-1],
        "transposed stack": np.ascontiguousarray(np.moveaxis(stack, 0, -1))[..., 1],
    }
    for name, v in variants.items():
        np.testing.assert_array_equal(majority_vote([maps[0], v, maps[2]]), want, err_msg=name)
    before = [m.copy() for m in maps]
    majority_vote(maps, tie="first")
    for m, b in zip(maps, before, strict=True):
        np.testing.assert_array_equal(m, b)


def test_bool_masks(rng):
    masks = [rng.random((4, 5, 6)) < 0.5 for _ in range(3)]
    got = majority_vote(masks)
    np.testing.assert_array_equal(got, (np.sum(masks, axis=0) >= 2).astype(np.uint8))


def test_agrees_with_simpleitk_label_voting(rng):
    sitk = pytest.importorskip("SimpleITK")
    maps = noisy_maps(rng, 5, (6, 20, 24), 4, flip=0.5)
    images = [sitk.GetImageFromArray(m) for m in maps]
    undecided = 4
    want = sitk.GetArrayFromImage(sitk.LabelVoting(images, undecided))
    np.testing.assert_array_equal(majority_vote(maps, tie="undecided", undecided_label=undecided), want)
    assert (want == undecided).any()  # the example has ties


def test_bad_input(rng):
    m = rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)
    cases = [
        (dict(label_maps=[]), "at least one member"),
        (dict(label_maps=[m, m[:3]]), r"`label_maps\[1\]`.*\(4, 5, 6\)"),
        (dict(label_maps=[m, m.astype(np.float32)]), r"`label_maps\[1\]` must be an integer"),
        (dict(label_maps=[m, m], num_classes=2), r"`label_maps\[\d\]` holds label 2.*\[0, 2\)"),
        (dict(label_maps=[m, m.astype(np.int32) - 1]), r"`label_maps\[1\]` holds negative labels"),
        (dict(label_maps=[m, m.astype(np.int8) - 1]), r"`label_maps\[1\]` holds negative labels"),
        (dict(label_maps=[m, m], tie="majority"), r"`tie` must be one of"),
        (dict(label_maps=[m, m], undecided_label=9), r"`undecided_label` is only used with tie='undecided'"),
        (dict(label_maps=[m, m], tie="undecided", undecided_label=-1), r"`undecided_label` must be >= 0"),
        (dict(label_maps=[m, m], tie="undecided", undecided_label=70000), r"`undecided_label` must be at most"),
        (dict(label_maps=[m, m], weights=[1.0]), r"`weights`.*one entry per member"),
        (dict(label_maps=[m, m], weights=[1.0, -1.0]), r"`weights` must be non-negative"),
        (dict(label_maps=[m, m], weights=[0.0, 0.0]), r"`weights` must not be all zero"),
        (dict(label_maps=[m, m], weights=np.ones((2, 3))), r"`weights` must have one entry per member, shape \(2,\)"),
        (dict(label_maps=[m, m], weights=np.ones((2, 1))), r"Per-class weights are not defined for a vote"),
        (dict(label_maps=[m, m], num_classes=0), r"`num_classes` must be >= 1"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValidationError, match=match):
            majority_vote(**kwargs)
    big = m.astype(np.uint16)
    big[0, 0, 0] = 9
    with pytest.raises(ValidationError, match=r"`label_maps\[1\]` holds label 9"):
        majority_vote([m, big], num_classes=3)
