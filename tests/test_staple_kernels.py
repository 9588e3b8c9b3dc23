"""STAPLE kernels against their numpy twins (tests/_reference/twin_staple.py) on random inputs.

Every dtype (uint8, uint16, int labels, bool masks), size 0 and 1, odd shapes, 1..7 raters, the three
counting paths (dense table, sorted codes, sorted rows) and 1 or 2 threads. Also run with
NUMBA_DISABLE_JIT=1 (.ci/run), so sizes stay small.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from _reference import twin_staple as ref
from medfuse.fusion import staple as staple_module
from medfuse.fusion.staple import _tally, staple, staple_binary

SHAPES = [(1, 1, 1), (3, 5, 7), (2, 9, 13), (1, 1, 37)]
PATHS = ["dense", "codes", "rows"]


def noisy(rng, n_members, shape, n_labels, dtype, flip=0.3):
    """Raters that mostly agree (stripes) and flip a fraction of voxels to a random label."""
    base = (np.indices(shape).sum(axis=0) // 2) % n_labels
    maps = []
    for _ in range(n_members):
        m = base.copy()
        noise = rng.random(shape) < flip
        m[noise] = rng.integers(0, n_labels, int(noise.sum()))
        maps.append(m.astype(dtype))
    return maps


@pytest.fixture(params=PATHS)
def path(request, monkeypatch):
    if request.param in ("codes", "rows"):
        monkeypatch.setattr(staple_module, "_DENSE_LIMIT", 0)
    if request.param == "rows":
        monkeypatch.setattr(staple_module, "_CODE_LIMIT", 0)
    return request.param


@pytest.mark.parametrize("n_members", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_tally_counts_and_labels_every_tuple(rng, path, n_members, dtype):
    for shape in SHAPES:
        maps = [np.ascontiguousarray(m) for m in noisy(rng, n_members, shape, 4, dtype, flip=0.6)]
        tuples, counts, label = _tally(maps, 4)
        want_tuples, want_counts = ref.tuple_histogram(maps)
        np.testing.assert_array_equal(tuples, want_tuples)
        np.testing.assert_array_equal(counts, want_counts)
        out = np.zeros(shape, np.uint16)
        label(np.arange(len(tuples), dtype=np.uint16), out)  # each voxel gets the index of its tuple
        rows = np.stack([m.reshape(-1) for m in maps], axis=1).astype(np.int64)
        np.testing.assert_array_equal(tuples[out.reshape(-1)], rows)


def _assert_labels_match(got, want, margin):
    """Equal wherever the twin's best posterior beats the second by more than rounding can move it."""
    clear = margin > 1e-9
    np.testing.assert_array_equal(got[clear], want[clear])


@pytest.mark.parametrize("n_members", [1, 2, 3, 4, 5, 7])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64])
def test_staple_matches_twin(rng, path, n_members, dtype):
    for shape in SHAPES:
        for n_labels in (2, 3, 5):
            maps = noisy(rng, n_members, shape, n_labels, dtype)
            top = int(max(m.max() for m in maps))
            for undecided in (None, top + 1):
                want, margin = ref.staple(maps, undecided=undecided)
                got = staple(maps, undecided_label=undecided)
                assert got.shape == shape and got.dtype == np.uint8
                _assert_labels_match(got, want, margin)
            want, margin = ref.staple(maps, max_iterations=2)
            _assert_labels_match(staple(maps, max_iterations=2), want, margin)


def test_staple_matches_twin_with_a_prior_and_wide_labels(rng, path):
    maps = [m * 300 for m in noisy(rng, 3, (4, 6, 5), 3, np.uint16)]  # labels 0, 300, 600
    prior = rng.random(601) + 0.1
    want, margin = ref.staple(maps, prior=prior / prior.sum(), undecided=700)
    got = staple(maps, prior_probabilities=prior, undecided_label=700)
    assert got.dtype == np.uint16
    _assert_labels_match(got, want, margin)


def test_staple_size_zero(path):
    for dtype in (np.uint8, np.uint16, np.int64, np.bool_):
        empty = [np.zeros((0, 3, 4), dtype)] * 3
        assert staple(empty).shape == (0, 3, 4)
        assert staple_binary(empty).shape == (0, 3, 4)


@pytest.mark.parametrize("n_members", [1, 2, 3, 5, 7])
def test_staple_binary_matches_twin(rng, path, n_members):
    for shape in SHAPES:
        for dtype in (np.bool_, np.uint8, np.int16):
            masks = [m.astype(dtype) for m in noisy(rng, n_members, shape, 2, np.uint8)]
            for kwargs in ({}, {"max_iterations": 2, "confidence_weight": 0.7}):
                got = staple_binary(masks, **kwargs)
                assert got.dtype == np.float32 and got.shape == shape
                np.testing.assert_allclose(got, ref.staple_binary(masks, **kwargs), rtol=0, atol=1e-6)


def test_staple_binary_degenerate_masks_give_0_or_1():
    zeros = np.zeros((2, 3, 4), np.uint8)
    assert (staple_binary([zeros, zeros]) == 0).all()
    assert (staple_binary([zeros + 1, zeros + 1]) == 1).all()
    assert (staple_binary([zeros + 2, zeros + 2], foreground_value=2) == 1).all()


def test_staple_same_on_one_and_two_threads(rng):
    maps = noisy(rng, 5, (6, 30, 40), 6, np.uint8, flip=0.2)
    old = numba.get_num_threads()
    try:
        results = []
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            results.append((staple(maps), staple_binary([m == 1 for m in maps])))
    finally:
        numba.set_num_threads(old)
    for labels, probabilities in results[1:]:
        np.testing.assert_array_equal(labels, results[0][0])
        np.testing.assert_array_equal(probabilities, results[0][1])
