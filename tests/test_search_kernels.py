"""The search kernels against their numpy twins (tests/_reference/twin_search.py)."""

from __future__ import annotations

import numpy as np
import pytest

from _reference import twin_search as reference
from medfuse.errors import ValidationError
from medfuse.search.scoring import CONTESTED, SAFE_MARGIN, run_case_pass, subset_masks, subset_steps
from medfuse.search.weights import ContestedSet, fit_class_weights, fit_member_weights


def _members(rng, n_members, n_classes, n_vox, dtype, *, sharp=3.0):
    logits = rng.normal(size=(n_members, n_classes, n_vox)) * sharp
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


def test_subset_steps_visit_every_subset_once_adding_one_member():
    for n in range(1, 7):
        level, member, mask = subset_steps(n)
        assert sorted(mask.tolist()) == list(range(1, 1 << n))
        built = [0] * (n + 1)
        for d, m, b in zip(level, member, mask, strict=True):
            built[d] = built[d - 1] | (1 << int(m))
            assert built[d] == b
        assert sorted(subset_masks(n).tolist()) == list(range(1, 1 << n))


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize(("n_members", "n_classes", "n_vox"),
                         [(1, 3, 10), (3, 4, 1000), (4, 5, 40_003), (2, 2, 1), (3, 2, 0), (2, 1, 7), (5, 7, 333)])
def test_subset_pass_matches_reference(rng, dtype, n_members, n_classes, n_vox):
    stack = _members(rng, n_members, n_classes, n_vox, dtype)
    ref = rng.integers(0, n_classes, n_vox).astype(np.uint8)
    result = run_case_pass(stack, ref)
    np.testing.assert_array_equal(result.subset_confusion,
                                  reference.subset_confusions(stack, ref, subset_masks(n_members)))
    safe = reference.safe_voxels(stack, SAFE_MARGIN)
    np.testing.assert_array_equal(result.contested, np.flatnonzero(~safe))
    np.testing.assert_array_equal(result.contested_values, np.moveaxis(stack[:, :, ~safe], 2, 0))
    assert result.contested_values.dtype == stack.dtype
    argmax = stack.astype(np.float32).argmax(axis=1)[0] if n_vox else np.zeros(0, np.int64)
    np.testing.assert_array_equal(result.safe_labels[safe], argmax[safe])
    assert np.all(result.safe_labels[~safe] == CONTESTED)
    np.testing.assert_array_equal(result.safe_confusion, reference.confusion(ref[safe], argmax[safe], n_classes))
    assert result.n_invalid == 0


def test_subset_pass_ties_go_to_the_lowest_class(rng):
    # two members that swap classes 1 and 2: every subset of both ties, and argmax picks class 1
    a = np.zeros((3, 50), np.float16)
    a[1], a[2] = 0.6, 0.4
    b = a[[0, 2, 1]]
    stack = np.stack([a, b])
    ref = np.full(50, 2, np.uint8)
    result = run_case_pass(stack, ref)
    # subsets: {0}, {1}, {0, 1}
    assert result.subset_confusion[0, 2, 1] == 50
    assert result.subset_confusion[1, 2, 2] == 50
    assert result.subset_confusion[2, 2, 1] == 50


def test_subset_pass_mostly_confident_members_use_the_fast_path(rng):
    n_vox = 20_000
    labels = rng.integers(0, 4, n_vox)
    stack = np.stack([np.eye(4, dtype=np.float16)[labels].T * 0.97 + 0.01 for _ in range(3)])
    stack[1, :, :100] = stack[1, :, 100:200]  # member 1 disagrees on 100 voxels
    ref = labels.astype(np.uint8)
    result = run_case_pass(stack, ref)
    assert result.contested.size <= 200
    np.testing.assert_array_equal(result.subset_confusion, reference.subset_confusions(stack, ref, subset_masks(3)))


@pytest.mark.parametrize("layout", ["fortran", "strided", "big-endian", "read-only"])
def test_subset_pass_accepts_any_layout(rng, layout):
    stack = _members(rng, 3, 4, 3000, np.float16)
    ref = rng.integers(0, 4, 3000).astype(np.uint8)
    expected = run_case_pass(stack, ref)
    if layout == "fortran":
        given = np.asfortranarray(stack)
    elif layout == "strided":
        given = np.repeat(stack, 2, axis=2)[:, :, ::2]
    elif layout == "big-endian":
        given = stack.astype(stack.dtype.newbyteorder(">"))
    else:
        given = stack.copy()
        given.setflags(write=False)
    got = run_case_pass(given, ref)
    np.testing.assert_array_equal(got.subset_confusion, expected.subset_confusion)
    np.testing.assert_array_equal(got.contested, expected.contested)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("bad", [np.nan, -0.5, 3.0, np.inf])
def test_subset_pass_counts_invalid_probabilities(rng, dtype, bad):
    stack = _members(rng, 2, 3, 100, dtype)
    stack[1, 2, 17] = bad
    result = run_case_pass(stack, rng.integers(0, 3, 100).astype(np.uint8))
    assert result.n_invalid >= 1


def test_subset_pass_rejects_bad_shapes():
    with pytest.raises(ValidationError, match="shape"):
        run_case_pass(np.zeros((2, 3, 4), np.float16), np.zeros(5, np.uint8))
    with pytest.raises(ValidationError, match="float16 or float32"):
        run_case_pass(np.zeros((2, 3, 4), np.float64), np.zeros(4, np.uint8))


def _contested(rng, n_members, n_classes, n_vox, n_cases, dtype=np.float32):
    stack = _members(rng, n_members, n_classes, n_vox, dtype, sharp=1.0)
    return ContestedSet(
        probabilities=np.ascontiguousarray(stack.transpose(2, 0, 1)),
        reference=rng.integers(0, n_classes, n_vox).astype(np.uint8),
        case=rng.integers(0, n_cases, n_vox).astype(np.int64),
        count=np.ones(n_vox),
        fixed=np.zeros((3, n_cases, n_classes)),
    )


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_weighted_scoring_matches_reference(rng, dtype):
    data = _contested(rng, 3, 5, 4001, 4, dtype)
    for weights in (np.ones((3, 5)), rng.random((3, 5)) + 0.1, np.array([[1.0] * 5, [0.0] * 5, [2.0] * 5])):
        labels = data.labels(weights)
        expected = reference.weighted_labels(data.probabilities, weights)
        np.testing.assert_array_equal(labels, expected)
        counts = data.counts(weights)
        for k in range(4):
            rows = data.case == k
            cm = reference.confusion(data.reference[rows], expected[rows], 5)
            np.testing.assert_array_equal(counts[0][k], np.diag(cm))
            np.testing.assert_array_equal(counts[1][k], cm.sum(0) - np.diag(cm))
            np.testing.assert_array_equal(counts[2][k], cm.sum(1) - np.diag(cm))


def test_indicator_weights_reproduce_subset_pass(rng):
    stack = _members(rng, 3, 4, 5000, np.float16, sharp=1.0)
    ref = rng.integers(0, 4, 5000).astype(np.uint8)
    result = run_case_pass(stack, ref)
    rows = result.contested
    data = ContestedSet(np.ascontiguousarray(stack[:, :, rows].transpose(2, 0, 1)), ref[rows],
                        np.zeros(rows.size, np.int64), np.ones(rows.size), np.zeros((3, 1, 4)))
    for s, mask in enumerate(subset_masks(3)):
        weights = np.array([[float(mask >> m & 1)] * 4 for m in range(3)])
        counts = data.counts(weights)[:, 0]
        cm = result.subset_confusion[s] - result.safe_confusion
        np.testing.assert_array_equal(counts[0], np.diag(cm))
        np.testing.assert_array_equal(counts[1], cm.sum(0) - np.diag(cm))


def test_fitted_weights_never_score_below_their_start(rng):
    data = _contested(rng, 3, 4, 3000, 5)
    labels = [1, 2, 3]
    start = np.ones(3)
    from medfuse.search.weights import score_counts

    start_score = score_counts(data.counts(np.repeat(start[:, None], 4, axis=1)), labels)
    w, score = fit_member_weights(data, start, labels=labels)
    assert score >= start_score
    assert score == pytest.approx(score_counts(data.counts(np.repeat(w[:, None], 4, axis=1)), labels))
    W, cscore = fit_class_weights(data, np.repeat(w[:, None], 4, axis=1), labels=labels)
    assert cscore >= score
    assert cscore == pytest.approx(score_counts(data.counts(W), labels))
