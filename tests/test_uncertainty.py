"""Uncertainty maps in the fusion pass (fusion_uncertainty, fuse_probabilities(return_uncertainty=True)): the
kernel against the numpy twin of tests/_reference/twin_uncertainty.py on random members of every kind and
layout, the labels against fuse_probabilities bit for bit, edge cases, and bad members refused exactly as
fusion refuses them. Runs compiled and with NUMBA_DISABLE_JIT=1 (small arrays)."""

from __future__ import annotations

import numba
import numpy as np
import pytest

import medfuse
from _reference.twin_uncertainty import uncertainty_twin
from medfuse import ValidationError
from medfuse.fusion import (
    UncertaintyMaps,
    fuse_probabilities,
    fusion_uncertainty,
    run as fusion_run,
    uncertainty as unc,
)

SLOW = bool(numba.config.DISABLE_JIT)
N_RANDOM = 6 if SLOW else 40
MAPS = ("entropy", "mutual_information", "disagreement")
COUNTS = ("member_volumes", "member_overlap", "fused_volumes")


def probabilities(rng, c, shape, dtype=np.float32, concentration=0.5):
    x = rng.gamma(concentration, size=(c, *shape)) + 1e-4
    return (x / x.sum(axis=0)).astype(dtype)


def assert_matches_twin(members, *, weights=None, num_classes=None, space="probability", atol=1e-5):
    labels, maps = fuse_probabilities(members, weights=weights, num_classes=num_classes, space=space,
                                      return_uncertainty=True)
    expected_labels = fuse_probabilities(members, weights=weights, num_classes=num_classes, space=space)
    np.testing.assert_array_equal(labels, expected_labels)
    assert labels.dtype == expected_labels.dtype
    twin = uncertainty_twin(list(members), labels, weights=weights, num_classes=num_classes)
    for name in MAPS:
        got = getattr(maps, name)
        assert got.dtype == np.float32 and got.shape == labels.shape
        np.testing.assert_allclose(got, twin[name], atol=atol, rtol=0, err_msg=name)
    for name in COUNTS:
        np.testing.assert_array_equal(getattr(maps, name), twin[name], err_msg=name)
    np.testing.assert_allclose(maps.member_shares, twin["member_shares"], rtol=1e-12)
    assert np.isclose(maps.member_shares.sum(), 1.0)
    return labels, maps


def random_members(rng, n_members, n_classes, shape):
    members = []
    for _ in range(n_members):
        kind = rng.integers(0, 4)
        if kind == 0:
            members.append(probabilities(rng, n_classes, shape, np.float16, rng.choice([0.1, 0.5, 3.0])))
        elif kind == 1:
            members.append(probabilities(rng, n_classes, shape, np.float32, rng.choice([0.1, 0.5, 3.0])))
        elif kind == 2:
            members.append(rng.integers(0, n_classes, shape).astype(rng.choice([np.uint8, np.int16, np.int64])))
        else:  # the argmax of a soft member: agrees with the others more often than noise does
            members.append(probabilities(rng, n_classes, shape).argmax(axis=0).astype(np.uint8))
    return members


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_random_members_match_twin(seed):
    rng = np.random.default_rng(seed)
    n_members = int(rng.integers(1, 7))
    n_classes = int(rng.integers(2, 8 if SLOW else 21))
    high = 6 if SLOW else 24
    shape = tuple(int(s) for s in rng.integers(1, high, size=int(rng.integers(1, 4))))
    members = random_members(rng, n_members, n_classes, shape)
    weights = [None, rng.random(n_members) + 0.05, rng.random((n_members, n_classes)) + 0.05][seed % 3]
    space = "log" if seed % 4 == 1 else "probability"
    assert_matches_twin(members, weights=weights, num_classes=n_classes, space=space)


@pytest.mark.parametrize("space", ["probability", "log"])
def test_layouts_fortran_strided_stacked_float64_bigendian(rng, space):
    shape = (3, 5, 7)
    stack = probabilities(rng, 4, (3, *shape), np.float16).transpose(1, 0, 2, 3, 4)  # (M, C, ...) C order
    stack = np.ascontiguousarray(stack)
    members = [
        np.asfortranarray(probabilities(rng, 4, shape, np.float32)),
        stack[0],
        probabilities(rng, 4, (*shape[:2], 14), np.float32)[..., ::2],  # strided crop: copied
        probabilities(rng, 4, shape, np.float64),
        probabilities(rng, 4, shape, np.float32).astype(">f4"),
        np.asfortranarray(rng.integers(0, 4, shape).astype(np.int32)),
        rng.random(shape) > 0.5,
    ]
    assert_matches_twin(members, weights=np.arange(1, 8), space=space)
    labels, maps = fuse_probabilities(stack, return_uncertainty=True, space=space)  # one stacked array
    np.testing.assert_array_equal(labels, fuse_probabilities(stack, space=space))
    _, listed = assert_matches_twin(list(stack), space=space)
    for name in MAPS:
        np.testing.assert_array_equal(getattr(maps, name), getattr(listed, name))


def test_many_chunks_and_samples_match(rng, monkeypatch):
    """Small chunks (several per fusion chunk, several fusion chunks): same maps, same sampled checks."""
    monkeypatch.setattr(unc, "SCRATCH_BYTES", 1)  # the smallest chunk, 1024 voxels
    monkeypatch.setattr(unc, "FUSION_CHUNK", 2048)
    monkeypatch.setattr(fusion_run, "FUSION_CHUNK", 2048)
    shape = (5, 31, 47)  # 7285 voxels: 8 chunks, 4 fusion chunks (the last one short)
    members = [probabilities(rng, 3, shape, np.float16), probabilities(rng, 3, shape, np.float32),
               rng.integers(0, 3, shape).astype(np.uint8)]
    assert_matches_twin(members, weights=[1.0, 2.0, 0.5])
    bad = members[1].copy()
    flat = bad.reshape(3, -1)
    flat[0, ::7] += 0.3  # unnormalised on 1 voxel in 7: a sample sees some
    members[1] = bad
    with pytest.raises(ValidationError) as fused_error:
        fuse_probabilities(members)
    with pytest.raises(ValidationError) as maps_error:
        fusion_uncertainty(members)
    assert str(maps_error.value) == str(fused_error.value)
    assert "members[1]" in str(maps_error.value)
    fusion_uncertainty(members, check=False)  # accepted without checks


def test_many_classes_uint16_labels(rng):
    shape = (2, 3, 5)
    members = [probabilities(rng, 300, shape, np.float16), rng.integers(0, 300, shape).astype(np.uint16),
               probabilities(rng, 300, shape, np.float32)]
    labels, _ = assert_matches_twin(members, num_classes=300)
    assert labels.dtype == np.uint16
    assert_matches_twin(members[1:2], num_classes=300, space="log")


def test_all_members_agree_gives_zeros(rng):
    shape = (4, 6, 5)
    lab = rng.integers(0, 5, shape).astype(np.uint8)
    onehot = np.stack([(lab == c) for c in range(5)]).astype(np.float16)
    members = [lab, onehot, onehot.astype(np.float32), lab.astype(np.int64)]
    for space in ("probability", "log"):
        labels, maps = fuse_probabilities(members, return_uncertainty=True, space=space)
        np.testing.assert_array_equal(labels, lab)
        for name in MAPS:
            assert not getattr(maps, name).any(), name
        vol = np.bincount(lab.ravel(), minlength=5)
        np.testing.assert_array_equal(maps.fused_volumes, vol)
        np.testing.assert_array_equal(maps.member_volumes, np.tile(vol, (4, 1)))
        np.testing.assert_array_equal(maps.member_overlap, np.tile(vol, (4, 1)))
        dice = maps.member_dice()
        assert np.all(dice[:, vol > 0] == 1.0) and np.all(np.isnan(dice[:, vol == 0]))


def test_one_member_no_mutual_information_no_disagreement(rng):
    # float32: the class sums are 1 to rounding. (A float16 member's sums are off 1 by up to ~1e-3; the mean is
    # renormalised, the member entropies are not, so by the definition its MI is up to ~1e-4, not 0.)
    p = probabilities(rng, 6, (5, 7, 3), np.float32)
    maps = fusion_uncertainty([p])
    assert np.abs(maps.mutual_information).max() <= 1e-6
    assert not maps.disagreement.any()
    pf = p.astype(np.float64)
    expected = -(pf * np.log(pf)).sum(axis=0)
    np.testing.assert_allclose(maps.entropy, expected, atol=1e-5)
    assert maps.entropy.max() <= np.log(6) + 1e-5
    identical = fusion_uncertainty([p, p, p], weights=[1, 2, 3])  # members that agree exactly: no MI either
    assert np.abs(identical.mutual_information).max() <= 1e-5
    assert not identical.disagreement.any()


@pytest.mark.parametrize("shape", [(0, 4, 4), (3, 0), (1,), (1, 1, 1)])
def test_empty_and_single_voxel(rng, shape):
    members = [probabilities(rng, 3, shape, np.float16), rng.integers(0, 3, shape).astype(np.uint8)]
    labels, maps = fuse_probabilities(members, return_uncertainty=True)
    assert labels.shape == shape and maps.entropy.shape == shape
    assert maps.member_volumes.shape == (2, 3) and maps.fused_volumes.shape == (3,)
    assert int(maps.fused_volumes.sum()) == int(np.prod(shape))
    if np.prod(shape):
        assert_matches_twin(members)


def test_result_type_and_top_level_exports(rng):
    assert medfuse.fusion_uncertainty is fusion_uncertainty
    assert medfuse.UncertaintyMaps is UncertaintyMaps
    members = [probabilities(rng, 3, (4, 5), np.float32) for _ in range(2)]
    maps = fusion_uncertainty(members)
    assert isinstance(maps, UncertaintyMaps)
    assert maps.num_members == 2 and maps.num_classes == 3
    for name in UncertaintyMaps.MAP_NAMES:
        assert maps.map(name) is getattr(maps, name)
    with pytest.raises(ValidationError, match="unknown uncertainty map"):
        maps.map("variance")
    assert "2 members, 3 classes" in repr(maps)
    labels = fuse_probabilities(members)
    dice = maps.member_dice()
    for m, p in enumerate(members):
        own = p.argmax(axis=0)
        for c in range(3):
            both = np.count_nonzero(own == c) + np.count_nonzero(labels == c)
            if both:
                assert dice[m, c] == pytest.approx(2 * np.count_nonzero((own == c) & (labels == c)) / both)


def _same_refusal(members, **kwargs):
    with pytest.raises(ValidationError) as fused_error:
        fuse_probabilities(members, **kwargs)
    with pytest.raises(ValidationError) as maps_error:
        fusion_uncertainty(members, **kwargs)
    assert str(maps_error.value) == str(fused_error.value)
    with pytest.raises(ValidationError):
        fuse_probabilities(members, return_uncertainty=True, **kwargs)
    return str(maps_error.value)


def test_bad_members_refused_like_fusion(rng):
    shape = (3, 4, 5)
    good = probabilities(rng, 3, shape, np.float32)
    logits = good * 8.0 - 2.0
    assert "softmax" in _same_refusal([good, logits])
    nan = good.copy()
    nan[1, 0, 0, 0] = np.nan
    assert "non-finite" in _same_refusal([nan.astype(np.float16), good])
    assert "label 7" in _same_refusal([good, np.full(shape, 7, np.uint8)])
    _same_refusal([good, np.full(shape, 300, np.uint16)])
    _same_refusal([good, -np.ones(shape, np.int16)])
    unnormalised = good * 0.8
    assert "sum to 1" in _same_refusal([unnormalised.astype(np.float16)])
    _same_refusal([good, probabilities(rng, 4, shape)])
    _same_refusal([good, good[:, :2]])
    _same_refusal([])
    _same_refusal([good, good], weights=[1.0])
    _same_refusal([good, good], weights=[-1.0, 1.0])
    _same_refusal([good, good], weights=[[1, 0, 1], [1, 0, 1]])
    _same_refusal([good], space="geometric")
    _same_refusal([good], space="log", eps=0.0)
    _same_refusal([good], num_classes=4)
    with pytest.raises(ValidationError, match="return_uncertainty"):
        fuse_probabilities([good], return_uncertainty="yes")  # type: ignore[call-overload]


@pytest.mark.skipif(SLOW, reason="8200 classes: slow without the JIT")
def test_float16_member_with_more_classes_than_the_argmax_key_holds(rng):
    from medfuse._kernels.uncertainty import KEY_MASK

    n_classes = KEY_MASK + 1 + 8  # float16 members compare values instead of packed keys
    shape = (2, 3)
    members = [probabilities(rng, n_classes, shape, np.float16, 0.05), probabilities(rng, n_classes, shape)]
    members[0][:, 0, 0] = 0  # a tie at 0 everywhere but two classes: the lower class wins
    members[0][[5, 9], 0, 0] = 0.5
    # the counts (the member argmax) exactly; the maps sum 8200 float32 terms per member: 1e-3
    labels, _ = assert_matches_twin(members, num_classes=n_classes, atol=1e-3)
    assert labels.dtype == np.uint16


def test_plogp_accuracy():
    from medfuse._kernels.logf import _plogp

    bits = np.arange(0, 0x3C01, dtype=np.uint16)  # every float16 in [0, 1]
    p = bits.view(np.float16).astype(np.float32)
    if SLOW:
        p = p[::97]
    extra = np.array([0.0, 1.0, np.finfo(np.float32).tiny, 1e-30, 0.5, 0.70710677, 0.7071068, 1.4142135],
                     np.float32)
    p = np.concatenate([p, extra, rng_values()])
    got = np.array([_plogp(np.float32(x)) for x in p], dtype=np.float64)
    pd = p.astype(np.float64)
    expected = np.where(pd > 0, pd * np.log(np.where(pd > 0, pd, 1.0)), 0.0)
    assert np.abs(got - expected).max() <= 2e-7
    assert got[p == 0].max() == 0.0


def rng_values():
    return np.random.default_rng(5).random(200 if SLOW else 20000).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("n_classes", [3, 5])
def test_negative_zero_and_tiny_negatives_are_below_every_probability(rng, dtype, n_classes):
    """Values the range check accepts (-0.0 and negatives down to -1e-3, rounding of 1 - sum) rank below
    every probability in a member's argmax and add 0 ln 0, as in the twin: their bit patterns, read as
    unsigned, are the largest of all and must not win the member's argmax."""
    shape = (3, 4, 37)
    members = []
    for _ in range(3):
        p = probabilities(rng, n_classes, shape, np.float32, 2.0)
        small = p[1] < 0.2
        p[0] += np.where(small, p[1], 0.0)  # the class sums stay 1
        p[1] = np.where(small & (rng.random(shape) < 0.5), -0.0, np.where(small, -rng.random(shape) * 1e-4, p[1]))
        members.append(p.astype(dtype))
    assert any(np.signbit(m[1]).any() for m in members)
    assert_matches_twin(members)
