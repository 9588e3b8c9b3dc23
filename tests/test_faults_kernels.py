"""The check outputs of the streaming kernels (max bit pattern, argmax, sampled sums) against numpy twins.

Random inputs in float16 and float32, odd shapes, sizes 0 and 1, and bad values (NaN, negative, > 1)
planted at random positions including the last voxel of a chunk. Runs compiled and with
NUMBA_DISABLE_JIT=1 (plain Python).
"""

from __future__ import annotations

import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse._kernels.channelwise import _add_box, _argmax_bits, _max_bits
from medfuse._kernels.threads import run_chunked
from medfuse.errors import ValidationError
from medfuse.fusion.checks import ChannelChecks, channel_max_bits, sample_positions
from medfuse.fusion.inputs import SUM_TOLERANCE, range_limit_bits

DTYPES = [np.float16, np.float32]
SHAPES = [(0, 3, 4), (1, 1, 1), (3, 5, 7), (2, 1, 9), (5, 4, 0), (7, 6, 5)]
PLANTS = [None, np.nan, -0.5, 1.5, np.inf]


def _bits(a):
    return a.view(np.uint16 if a.dtype == np.float16 else np.uint32)


def _plant(rng, a, value, *, last_of_chunk: int | None = None):
    """Put ``value`` at a random voxel, or at the last voxel of a random chunk of ``last_of_chunk`` voxels."""
    if value is None or a.size == 0:
        return a
    flat = a.reshape(-1)
    if last_of_chunk is None:
        at = int(rng.integers(flat.size))
    else:
        n_chunks = -(-flat.size // last_of_chunk)
        k = int(rng.integers(n_chunks))
        at = min(flat.size, (k + 1) * last_of_chunk) - 1
    flat[at] = value
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("value", PLANTS)
@pytest.mark.parametrize("weight", [0.0, 0.7])
def test_add_box_matches_twin(rng, dtype, shape, value, weight):
    plane = rng.random((shape[0] + 2, shape[1] + 1, shape[2] + 3)).astype(np.float32)
    member = rng.random(shape).astype(dtype)
    # the last voxel of a chunk (a z slice) is the last of its rows
    member = _plant(rng, member, value, last_of_chunk=max(1, shape[1] * shape[2]))
    origin = (1, 0, 2)
    want, want_bits = ref.add_box(plane, origin, member, weight)
    for threads in (1, 3):
        got = plane.copy()
        maxbits = np.zeros(threads, np.uint64)
        run_chunked(_add_box, shape[0], threads, got, *origin, _bits(np.ascontiguousarray(member)),
                    np.float32(weight), maxbits)
        np.testing.assert_array_equal(got, want)
        assert int(maxbits.max()) == want_bits
        assert (int(maxbits.max()) > range_limit_bits(member.itemsize)) == (value is not None and member.size > 0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [0, 1, 7, 64, 1001])
@pytest.mark.parametrize("value", PLANTS)
def test_max_bits_matches_twin(rng, dtype, size, value):
    a = _plant(rng, rng.random(size).astype(dtype), value, last_of_chunk=16)
    for threads in (1, 2, 5):
        out = np.zeros(threads, np.uint64)
        run_chunked(_max_bits, -(-size // 16), threads, 16, _bits(a), out)
        assert int(out.max()) == ref.max_bits(a)
    assert channel_max_bits(a) == ref.max_bits(a)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size", [0, 1, 9, 333])
@pytest.mark.parametrize("n_classes", [1, 2, 5])
@pytest.mark.parametrize("value", PLANTS)
def test_argmax_bits_matches_twin(rng, dtype, size, n_classes, value):
    chunk = 8
    channels = [rng.random(size).astype(dtype) for _ in range(n_classes)]
    if size:
        channels[0][0] = channels[-1][0]  # a tie: the lowest class wins
    channels[-1] = _plant(rng, channels[-1], value, last_of_chunk=chunk)
    best = np.empty(size, np.float32)
    labels = np.zeros(size, np.uint8)
    tops = []
    for c, ch in enumerate(channels):
        maxbits = np.zeros(3, np.uint64)
        run_chunked(_argmax_bits, -(-size // chunk), 3, chunk, _bits(ch), c, best, labels, maxbits)
        tops.append(int(maxbits.max()))
    assert tops == [ref.max_bits(ch) for ch in channels]
    if value is None or (isinstance(value, float) and np.isfinite(value)):
        np.testing.assert_array_equal(labels, ref.channel_argmax(channels))


@pytest.mark.parametrize("n_voxels", [0, 1, 100, 16384, 16385, 10**6 + 7])
def test_sample_positions_are_fixed_size_sorted_and_inside(n_voxels):
    pos = sample_positions(n_voxels)
    assert pos.size == min(n_voxels, 16384)
    assert np.all(np.diff(pos) > 0)
    assert pos.size == 0 or (pos[0] >= 0 and pos[-1] < n_voxels)
    if n_voxels > 16384:  # spread over the whole channel, not its top rows
        assert pos[-1] > n_voxels * 0.9


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 5, 7), (40, 30, 20)])
@pytest.mark.parametrize("scale", [1.0, 1.0 + 3 * SUM_TOLERANCE, 0.5])
def test_channel_checks_sums_match_twin(rng, dtype, shape, scale):
    n_classes = 4
    p = rng.random((n_classes, *shape)) + 0.1
    p = (p / p.sum(axis=0) * scale).astype(dtype)
    positions = sample_positions(int(np.prod(shape)))
    want = ref.sampled_sum_failures(p, positions, SUM_TOLERANCE)
    checks = ChannelChecks(n_classes, "`m`")
    if want == 0:
        for c in range(n_classes):
            checks.feed(c, p[c])
        assert checks.done
    else:
        with pytest.raises(ValidationError, match=f"do not on {want} of {positions.size} sampled voxels"):
            for c in range(n_classes):
                checks.feed(c, p[c])
    assert (want == 0) == (scale == 1.0)


def test_channel_checks_refuse_a_shape_change_and_a_class_twice(rng):
    checks = ChannelChecks(3, "`m`")
    checks.feed(0, np.full((2, 3), 0.5, np.float32))
    with pytest.raises(ValidationError, match="covers the same voxels"):
        checks.feed(1, np.full((3, 2), 0.5, np.float32))
    with pytest.raises(ValidationError, match="given twice"):
        checks.feed(0, np.full((2, 3), 0.5, np.float32))


def test_channel_checks_let_negative_zero_and_tiny_rounding_pass():
    checks = ChannelChecks(2, "`m`")
    a = np.array([[-0.0, 1.0005], [1.0, -1e-4]], np.float32)
    checks.feed(0, a)
    checks.feed(1, (1.0 - a).astype(np.float32))
    assert checks.done
