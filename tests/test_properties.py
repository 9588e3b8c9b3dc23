"""Property-based checks (hypothesis) of the kernels against their definitions, for any member mix,
weights, dtypes and memory layouts hypothesis finds: ``fuse == average.argmax``, ``vote == its twin``,
``confusion_matrix == bincount``. No deadline: kernels compile on their first example."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _reference import twin_fusion, twin_metrics
from medfuse.fusion import average_probabilities, fuse_probabilities, majority_vote
from medfuse.metrics import confusion_matrix

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = st.tuples(st.integers(1, 6), st.integers(1, 7), st.integers(1, 9))


@st.composite
def member_mixes(draw: st.DrawFn) -> tuple[list[np.ndarray], np.ndarray | None]:
    shape = draw(shapes)
    n_classes = draw(st.integers(2, 6))
    kinds = draw(st.lists(st.sampled_from(["f16", "f32", "u8"]), min_size=1, max_size=5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    members: list[np.ndarray] = []
    for kind in kinds:
        if kind == "u8":
            members.append(rng.integers(0, n_classes, size=shape, dtype=np.uint8))
            continue
        logits = rng.normal(size=(n_classes, *shape)) * 3
        p = np.exp(logits - logits.max(0))
        p /= p.sum(0)
        members.append(p.astype(np.float16 if kind == "f16" else np.float32))
    if kinds and all(k == "u8" for k in kinds):  # at least one soft member fixes the class count
        members[0] = np.full((n_classes, *shape), 1.0 / n_classes, np.float32)
    per = draw(st.sampled_from(["none", "member", "class"]))
    weights = None if per == "none" else rng.uniform(0.1, 5.0, size=(len(members),) if per == "member"
                                                     else (len(members), n_classes))
    return members, weights


@SETTINGS
@given(member_mixes())
def test_fuse_is_the_argmax_of_the_average(mix):
    members, weights = mix
    fused = fuse_probabilities(members, weights=weights, check=False)
    mean = average_probabilities(members, weights=weights, check=False)
    np.testing.assert_array_equal(fused, mean.argmax(0))


@SETTINGS
@given(shapes, st.integers(1, 5), st.integers(2, 7), st.sampled_from(["lowest", "undecided", "first"]),
       st.booleans(), st.integers(0, 2**32 - 1))
def test_vote_equals_its_twin(shape, n_members, n_labels, tie, weighted, seed):
    rng = np.random.default_rng(seed)
    maps = [rng.integers(0, n_labels, size=shape, dtype=np.uint8) for _ in range(n_members)]
    weights = rng.integers(1, 4, size=n_members).astype(np.float64) if weighted else None  # exact sums
    got = majority_vote(maps, weights=weights, num_classes=n_labels, tie=tie)
    scores = twin_fusion.vote_scores(maps, weights, n_labels)
    want = twin_fusion.majority_vote(maps, weights, tie=tie, undecided_label=n_labels, scores=scores)
    np.testing.assert_array_equal(got, want)


LAYOUTS = ["C", "F", "transposed", "reversed", "strided"]


def _layout(a: np.ndarray, layout: str) -> np.ndarray:
    if layout == "F":
        return np.asfortranarray(a)
    if layout == "transposed":
        return np.ascontiguousarray(a.transpose(2, 0, 1)).transpose(1, 2, 0)
    if layout == "reversed":
        return np.ascontiguousarray(a[::-1, :, ::-1])[::-1, :, ::-1]
    if layout == "strided":
        big = np.zeros((a.shape[0], a.shape[1], 2 * a.shape[2]), a.dtype)
        big[:, :, ::2] = a
        return big[:, :, ::2]
    return a


@SETTINGS
@given(shapes, st.sampled_from([np.uint8, np.uint16, np.int32, np.int64, np.bool_]),
       st.sampled_from(LAYOUTS), st.sampled_from(LAYOUTS), st.integers(0, 2**32 - 1))
def test_confusion_matrix_equals_bincount(shape, dtype, layout_ref, layout_pred, seed):
    rng = np.random.default_rng(seed)
    top = 2 if dtype is np.bool_ else int(rng.integers(2, 40))
    ref = rng.integers(0, top, size=shape).astype(dtype)
    pred = rng.integers(0, top, size=shape).astype(dtype)
    r, p = _layout(ref, layout_ref), _layout(pred, layout_pred)
    assert np.array_equal(r, ref) and np.array_equal(p, pred)
    k = top
    np.testing.assert_array_equal(confusion_matrix(r, p, num_classes=k), twin_metrics.confusion_matrix(ref, pred, k))
