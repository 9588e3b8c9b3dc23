"""Property-based tests (hypothesis) of the public fusion and metrics API against obvious numpy definitions.

Each property is checked on inputs hypothesis draws: member mixes of float16 / float32 probabilities and
hard label maps, any weights (per member or per member and class), any integer dtype, byte order and
memory layout. The obvious definitions live in this file, so a failure names the rule that broke.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import medfuse

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

shapes = st.tuples(st.integers(1, 5), st.integers(1, 6), st.integers(1, 7))


@st.composite
def member_mixes(draw: st.DrawFn) -> tuple[list[np.ndarray], np.ndarray | None, int]:
    """Members (probabilities of float16/float32, or hard label maps), weights, number of classes."""
    shape = draw(shapes)
    n_classes = draw(st.integers(2, 6))
    n_members = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    members: list[np.ndarray] = []
    for _ in range(n_members):
        kind = draw(st.sampled_from(["float16", "float32", "labels"]))
        if kind == "labels":
            members.append(rng.integers(0, n_classes, size=shape).astype(draw(st.sampled_from(
                [np.uint8, np.int16, np.int32, np.int64]))))
        else:
            logits = rng.normal(size=(n_classes, *shape)) * draw(st.floats(0.1, 4.0))
            p = np.exp(logits - logits.max(axis=0))
            members.append((p / p.sum(axis=0)).astype(kind))
    weighting = draw(st.sampled_from(["none", "member", "class"]))
    weights: np.ndarray | None = None
    if weighting == "member":
        weights = rng.integers(1, 5, size=n_members).astype(np.float64)
    elif weighting == "class":
        weights = rng.integers(1, 5, size=(n_members, n_classes)).astype(np.float64)
    return members, weights, n_classes


@SETTINGS
@given(member_mixes())
def test_fuse_is_the_argmax_of_the_average(mix: tuple[list[np.ndarray], np.ndarray | None, int]) -> None:
    members, weights, n_classes = mix
    fused = medfuse.fuse_probabilities(members, weights=weights, num_classes=n_classes)
    mean = medfuse.average_probabilities(members, weights=weights, num_classes=n_classes)
    np.testing.assert_array_equal(fused, mean.argmax(axis=0))


@SETTINGS
@given(member_mixes())
def test_average_is_the_weighted_mean_of_one_hot_and_probabilities(
        mix: tuple[list[np.ndarray], np.ndarray | None, int]) -> None:
    members, weights, n_classes = mix
    dense = []
    for m in members:
        if m.dtype.kind in "iub":
            dense.append((np.arange(n_classes).reshape(-1, *([1] * m.ndim)) == m[None]).astype(np.float64))
        else:
            dense.append(m.astype(np.float64))
    stack = np.stack(dense)  # (M, C, ...)
    w = np.ones((len(members), n_classes)) if weights is None else np.broadcast_to(
        weights.reshape(len(members), -1), (len(members), n_classes))
    w = w / w.sum(axis=0, keepdims=True)
    expected = np.einsum("mc,mc...->c...", w, stack)
    got = medfuse.average_probabilities(members, weights=weights, num_classes=n_classes)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6 * len(members))


@st.composite
def label_pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    shape = draw(st.tuples(st.integers(0, 6), st.integers(1, 9), st.integers(1, 70)))
    k = draw(st.integers(1, 20))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = np.dtype(draw(st.sampled_from(["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8"])))
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(draw(st.sampled_from(["<", ">"])))
    runs = draw(st.booleans())  # long runs of one label (the kernel's uniform-block path) or noise

    def one() -> np.ndarray:
        if runs:
            a = np.repeat(rng.integers(0, k, size=max(1, int(np.prod(shape)) // 37 + 1)), 37)[:int(np.prod(shape))]
            a = a.reshape(shape)
        else:
            a = rng.integers(0, k, size=shape)
        a = a.astype(dtype)
        layout = draw(st.sampled_from(["C", "F", "strided"]))
        if layout == "F":
            a = np.asfortranarray(a)
        elif layout == "strided":
            big = np.zeros((shape[0], shape[1], 2 * shape[2]), dtype=dtype)
            big[..., ::2] = a
            a = big[..., ::2]
        return a

    return one(), one(), k


@SETTINGS
@given(label_pairs())
def test_confusion_matrix_is_a_bincount(pair: tuple[np.ndarray, np.ndarray, int]) -> None:
    reference, prediction, k = pair
    got = medfuse.confusion_matrix(reference, prediction, num_classes=k)
    r = reference.astype(np.int64).ravel()
    p = prediction.astype(np.int64).ravel()
    expected = np.bincount(r * k + p, minlength=k * k).reshape(k, k)
    np.testing.assert_array_equal(got, expected)


@st.composite
def votes(draw: st.DrawFn) -> tuple[list[np.ndarray], np.ndarray | None, int]:
    shape = draw(shapes)
    k = draw(st.integers(2, 15))
    n = draw(st.integers(1, 7))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    agree = draw(st.floats(0.0, 1.0))
    base = rng.integers(0, k, size=shape)
    maps = []
    for _ in range(n):
        noise = rng.integers(0, k, size=shape)
        maps.append(np.where(rng.random(shape) < agree, base, noise).astype(
            draw(st.sampled_from([np.uint8, np.uint16, np.int32]))))
    weights = rng.integers(1, 4, size=n).astype(np.float64) if draw(st.booleans()) else None
    return maps, weights, k


def _vote_twin(maps: list[np.ndarray], weights: np.ndarray | None, k: int, tie: str) -> np.ndarray:
    w = np.ones(len(maps)) if weights is None else weights
    scores = np.zeros((k, *maps[0].shape))
    for m, wm in zip(maps, w, strict=True):
        scores += wm * (np.arange(k).reshape(-1, 1, 1, 1) == m[None])
    best = scores.max(axis=0)
    tied = (scores == best[None]).sum(axis=0) > 1
    labels = scores.argmax(axis=0)  # the lowest of the tied labels
    if tie == "undecided":
        labels = np.where(tied, k, labels)
    elif tie == "first":  # the tied label that the earliest member voted for
        chosen = np.full(labels.shape, -1)
        for m in maps:
            is_top = np.take_along_axis(scores, m[None].astype(np.int64), axis=0)[0] == best
            chosen = np.where((chosen < 0) & is_top, m, chosen)
        labels = np.where(tied, chosen, labels)
    return labels


@SETTINGS
@given(votes(), st.sampled_from(["lowest", "undecided", "first"]))
def test_vote_equals_its_twin(vote: tuple[list[np.ndarray], np.ndarray | None, int], tie: str) -> None:
    maps, weights, k = vote
    got = medfuse.majority_vote(maps, weights=weights, num_classes=k, tie=tie)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, _vote_twin(maps, weights, k, tie))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -0.5, 3.0])
def test_fuse_refuses_bad_values_anywhere(bad: float) -> None:
    rng = np.random.default_rng(0)
    p = rng.random((3, 4, 5, 6)).astype(np.float32)
    p /= p.sum(axis=0)
    q = p.copy()
    q[(1, 3, 4, 5)] = bad
    with pytest.raises(medfuse.ValidationError):
        medfuse.fuse_probabilities([p, q])
