"""Kernel paths the main kernel tests do not reach: the bandwidth probe, the kernel decorators, the float16
fallback's refusal, and uint16 label maps (more than 256 classes) in both accumulators.

These run in the no-JIT CI leg too (.ci/run), where they count towards its coverage of medfuse._kernels.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from medfuse._kernels import jit, parallel_jit
from medfuse._kernels.bandwidth import _sum_chunks
from medfuse._kernels.f16 import _bits_to_float32
from medfuse.fusion import ProbabilityAccumulator, VoteAccumulator


def test_bandwidth_probe_sums_every_chunk_with_wrapping(rng):
    a = rng.integers(0, 2**64, size=1000, dtype=np.uint64)
    chunk = 96  # 11 chunks, the last one short
    out = np.zeros(2, dtype=np.uint64)
    with np.errstate(over="ignore"):  # the plain-Python run (NUMBA_DISABLE_JIT=1) warns on the wrap
        _sum_chunks(0, 5, 0, a.ctypes.data, a.size, chunk, out)
        _sum_chunks(5, 11, 1, a.ctypes.data, a.size, chunk, out)
        expected = a.sum(dtype=np.uint64)
        got = out.sum(dtype=np.uint64)
    assert got == expected


def test_kernel_decorators_give_callables_with_the_same_results():
    def double_sum(x):
        total = 0.0
        for i in numba.prange(x.size):
            total += 2.0 * x[i]
        return total

    x = np.arange(10, dtype=np.float64)
    assert jit(double_sum)(x) == 90.0
    assert parallel_jit(double_sum)(x) == 90.0


def test_float16_fallback_refuses_other_types():
    assert _bits_to_float32(np.uint16(0x3C00)) == np.float32(1.0)
    assert _bits_to_float32(np.uint32(0x3F800000)) == np.float32(1.0)
    with pytest.raises(TypeError, match="uint16 or uint32"):
        _bits_to_float32(np.float32(1.0))


def _one_hot_mean(maps, weights, k):
    total = np.zeros((k, *maps[0].shape))
    for m, w in zip(maps, weights, strict=True):
        for c in np.unique(m):
            total[c] += w * (m == c)
    return total


@pytest.mark.parametrize("k", [300])
def test_accumulators_take_uint16_label_maps(rng, k):
    shape = (3, 5, 7)
    maps = [rng.integers(0, k, size=shape).astype(np.uint16) for _ in range(3)]
    maps[1][0] = maps[0][0]  # a majority on the first plane
    weights = [1.0, 2.0, 0.5]
    expected = _one_hot_mean(maps, weights, k)

    prob = ProbabilityAccumulator(k, shape)
    for m, w in zip(maps, weights, strict=True):
        prob.add(m, weight=w)
    np.testing.assert_allclose(prob.probabilities(), expected / sum(weights), rtol=1e-6)
    np.testing.assert_array_equal(prob.labels(), expected.argmax(0))
    assert prob.labels().dtype == np.uint16

    vote = VoteAccumulator(k, shape)
    for m in maps:
        vote.add(m)
    counts = _one_hot_mean(maps, [1.0, 1.0, 1.0], k)
    np.testing.assert_array_equal(vote.labels(), counts.argmax(0))
    assert vote.labels().dtype == np.uint16
