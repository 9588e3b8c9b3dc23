"""Log space in the streaming paths (ProbabilityAccumulator add / add_channel, ClassMajorMean) against an
obvious float64 twin: members pasted into the volume (background one-hot outside their box), weighted mean
of log(max(p, eps)), softmax. Runs compiled and with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.errors import ValidationError
from medfuse.fusion import ProbabilityAccumulator
from medfuse.fusion.classwise import ClassMajorMean

EPS = 1e-6


def _twin_logs(shape, members, weights, c_count, eps=EPS):
    sums = np.zeros((c_count, *shape))
    totals = np.zeros(c_count)
    for (kind, data, box), w in zip(members, weights, strict=True):
        if kind == "labels":
            full = (data[None] == np.arange(c_count).reshape(-1, *([1] * len(shape)))).astype(np.float64)
        else:
            full = np.zeros((c_count, *shape))
            full[0] = 1.0
            full[(slice(None), *(slice(a, b) for a, b in box))] = data.astype(np.float64)
        sums += np.asarray(w, dtype=np.float64).reshape(-1, *([1] * len(shape))) * np.log(np.maximum(full, eps))
        totals += w
    return sums / totals.reshape(-1, *([1] * len(shape)))


def _softmax(x):
    e = np.exp(x - x.max(axis=0))
    return e / e.sum(axis=0)


def _members(rng, shape, c_count, dtype):
    out = []
    for _ in range(3):
        box = tuple((int(a), int(b)) for a, b in (sorted(rng.integers(0, s + 1, size=2)) for s in shape))
        sizes = tuple(b - a for a, b in box)
        p = rng.gamma(0.3, size=(c_count, *sizes)) + 1e-9
        out.append(("probs", (p / p.sum(axis=0)).astype(dtype), box))
    out.append(("labels", rng.integers(0, c_count, size=shape).astype(np.uint8), None))
    return out


def _assert_close(shape, members, weights, c_count, probs, labels, tol):
    logs = _twin_logs(shape, members, weights, c_count)
    np.testing.assert_allclose(probs, _softmax(logs), rtol=tol, atol=1e-6)
    top2 = np.sort(logs, axis=0)[-2:] if logs.size else np.zeros((2, *shape))
    clear = top2[1] - top2[0] > 1e-3
    np.testing.assert_array_equal(labels[clear], logs.argmax(0)[clear])


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (0, 4, 4), (8, 17, 33)])
@pytest.mark.parametrize("channelwise", [False, True])
def test_probability_accumulator_in_log_space(rng, dtype, shape, channelwise):
    c_count = 4
    members = _members(rng, shape, c_count, dtype)
    weights = [rng.random(c_count) + 0.2 for _ in members]
    acc = ProbabilityAccumulator(c_count, shape, space="log")
    assert acc.space == "log"
    for (kind, data, box), w in zip(members, weights, strict=True):
        if kind == "labels" or not channelwise:
            acc.add(data, weight=w, box=box)
        else:
            for c in range(c_count):
                acc.add_channel(c, data[c], weight=float(w[c]), box=box)
    _assert_close(shape, members, weights, c_count, acc.probabilities(), acc.labels(), 2e-4)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (0, 4, 4), (8, 17, 33)])
def test_class_major_mean_in_log_space(rng, dtype, shape):
    c_count = 3
    members = _members(rng, shape, c_count, dtype)
    weights = [rng.random(c_count) + 0.2 for _ in members]
    fuser = ClassMajorMean(c_count, shape, keep_probabilities=True, space="log")
    for c in range(c_count):
        fuser.begin_class(c)
        for (kind, data, box), w in zip(members, weights, strict=True):
            if kind == "labels":
                fuser.add_labels(data, weight=float(w[c]))
            else:
                fuser.add_probabilities(np.ascontiguousarray(data[c]), weight=float(w[c]), box=box)
        fuser.end_class(float(sum(w[c] for w in weights)))
    probs = fuser.probabilities()
    assert probs.dtype == np.float16
    _assert_close(shape, members, weights, c_count, probs.astype(np.float32), fuser.labels(), 2e-3)
    np.testing.assert_array_equal(fuser.probabilities(), probs)  # normalised once


def test_streaming_log_space_equals_array_log_space(rng):
    from medfuse.fusion import fuse_probabilities

    shape = (6, 9, 10)
    members = [(lambda p: (p / p.sum(0)).astype(np.float16))(rng.gamma(0.3, size=(5, *shape)) + 1e-9)
               for _ in range(4)]
    want = fuse_probabilities(members, space="log")
    acc = ProbabilityAccumulator(5, shape, space="log")
    fuser = ClassMajorMean(5, shape, space="log")
    for m in members:
        acc.add(m)
    for c in range(5):
        fuser.begin_class(c)
        for m in members:
            fuser.add_probabilities(np.ascontiguousarray(m[c]), weight=1.0)
        fuser.end_class(4.0)
    assert (acc.labels() == want).mean() > 0.999
    assert (fuser.labels() == want).mean() > 0.999
    assert (fuse_probabilities(members) != want).any()  # log space is a different fusion


@pytest.mark.parametrize("kwargs", [{"space": "geo"}, {"space": "log", "eps": -1.0}, {"space": "log", "eps": 2}])
def test_bad_space_in_streaming_paths(kwargs):
    with pytest.raises(ValidationError, match=r"space|eps"):
        ProbabilityAccumulator(3, (2, 2, 2), **kwargs)
    with pytest.raises(ValidationError, match=r"space|eps"):
        ClassMajorMean(3, (2, 2, 2), **kwargs)
