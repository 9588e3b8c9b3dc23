"""fuse_probabilities / average_probabilities / softmax against the numpy twins, layouts and bad input."""

from __future__ import annotations

import itertools
import tracemalloc

import numba
import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse import ValidationError
from medfuse.fusion import (
    RANGE_TOLERANCE,
    average_probabilities,
    fuse_probabilities,
    softmax,
)
from medfuse.fusion import run as fusion


def probabilities(rng, c, shape, dtype=np.float32, concentration=1.0):
    """Random class probabilities of shape (c, *shape) summing to 1 (within the dtype's rounding)."""
    x = rng.gamma(concentration, size=(c, *shape)) + 1e-3
    return (x / x.sum(axis=0)).astype(dtype)


# ----------------------------------------------------------------------------- float16 conversion
def test_float16_conversion_is_exact_for_every_bit_pattern():
    from medfuse._kernels import jit
    from medfuse._kernels.f16 import _bits_to_float32

    @jit
    def convert(bits, out):
        for i in range(bits.size):
            out[i] = _bits_to_float32(bits[i])

    bits = np.arange(1 << 16, dtype=np.uint16)
    got = np.empty(bits.size, dtype=np.float32)
    convert(bits, got)
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert nan.sum() == 2 * 1023  # both signs, every non-zero mantissa
    np.testing.assert_array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))  # -0, subnormals, inf


def test_float32_bits_are_a_bitcast(rng):
    from medfuse._kernels import jit
    from medfuse._kernels.f16 import _bits_to_float32

    @jit
    def convert(bits, out):
        for i in range(bits.size):
            out[i] = _bits_to_float32(bits[i])

    bits = rng.integers(0, 1 << 32, size=10000, dtype=np.uint64).astype(np.uint32)
    got = np.empty(bits.size, dtype=np.float32)
    convert(bits, got)
    np.testing.assert_array_equal(got.view(np.uint32), bits)


# ----------------------------------------------------------------------------- against the twins
SHAPES = [(1, 1, 1), (2, 3, 5), (3, 7, 11), (0, 4, 4), (4, 0, 3), (1, 1, 37)]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("n_members", [1, 2, 3, 5])
def test_fuse_matches_twin(rng, dtype, shape, n_members):
    members = [probabilities(rng, 4, shape, dtype) for _ in range(n_members)]
    got = fuse_probabilities(members)
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, ref.fuse_probabilities(members))
    mean = average_probabilities(members)
    assert mean.dtype == np.float32 and mean.shape == (4, *shape)
    np.testing.assert_array_equal(mean, ref.weighted_mean(members))


@pytest.mark.parametrize("n_members", [1, 4, 5, 6, 9])
def test_mixed_float16_float32_and_hard_members(rng, n_members):
    shape = (3, 9, 13)
    kinds = ["f16", "f32", "u8", "f16", "f16", "bool", "u16", "i32", "f32"][:n_members]
    members = []
    for k in kinds:
        if k == "f16":
            members.append(probabilities(rng, 2, shape, np.float16))
        elif k == "f32":
            members.append(probabilities(rng, 2, shape))
        elif k == "bool":
            members.append(rng.random(shape) < 0.5)
        else:
            dt = {"u8": np.uint8, "u16": np.uint16, "i32": np.int32}[k]
            members.append(rng.integers(0, 2, shape).astype(dt))
    w = rng.random(n_members) + 0.1
    np.testing.assert_array_equal(average_probabilities(members, weights=w), ref.weighted_mean(members, w))
    np.testing.assert_array_equal(fuse_probabilities(members, weights=w), ref.fuse_probabilities(members, w))


def test_runs_of_four_members_of_one_kind_keep_member_order(rng):
    # 4 float16, then 4 float32, then a float16: groups of 4 and a remainder, all summed in member order
    shape = (5, 6, 7)
    members = [probabilities(rng, 3, shape, np.float16) for _ in range(4)]
    members += [probabilities(rng, 3, shape) for _ in range(4)] + [probabilities(rng, 3, shape, np.float16)]
    w = rng.random((9, 3)) + 0.05
    np.testing.assert_array_equal(average_probabilities(members, weights=w), ref.weighted_mean(members, w))


@pytest.mark.parametrize("kinds", ["5f32", "9f32", "10f32", "6f32", "f16+5f32", "5f32+f16", "5f32+u8", "5f16",
                                   "4f16+5f32", "5f16+5f32+u8", "9f16", "10f16"])
def test_runs_of_five_members_keep_member_order(rng, kinds):
    # five float members that end a run of their kind are summed in one loop (4 + 1 otherwise):
    # every grouping must give the twin's bits, labels included
    shape = (4, 5, 67)
    members = []
    for part in kinds.split("+"):
        count, kind = (int(part[:-3]), part[-3:]) if part[:-3] else (1, part)
        for _ in range(count):
            if kind == "u8":
                members.append(rng.integers(0, 3, shape).astype(np.uint8))
            else:
                members.append(probabilities(rng, 3, shape, np.float16 if kind == "f16" else np.float32))
    w = rng.random((len(members), 3)) + 0.05
    np.testing.assert_array_equal(average_probabilities(members, weights=w), ref.weighted_mean(members, w))
    np.testing.assert_array_equal(fuse_probabilities(members, weights=w), ref.fuse_probabilities(members, w))


@pytest.mark.parametrize("weights", ["member", "class"])
def test_weights(rng, weights):
    members = [probabilities(rng, 5, (4, 6, 8), np.float16) for _ in range(3)]
    w = rng.random(3) * 3 if weights == "member" else rng.random((3, 5)) * 3
    got = average_probabilities(members, weights=w)
    np.testing.assert_array_equal(got, ref.weighted_mean(members, w))
    np.testing.assert_array_equal(fuse_probabilities(members, weights=w), got.argmax(0))
    # normalised per class: the mean of probabilities still sums to ~1 for per-member weights
    if weights == "member":
        np.testing.assert_allclose(got.sum(0), 1.0, atol=5e-3)


def test_weights_are_scale_invariant_and_zero_weight_drops_a_member(rng):
    members = [probabilities(rng, 3, (4, 5, 6)) for _ in range(3)]
    a = fuse_probabilities(members, weights=[1.0, 2.0, 3.0])
    b = fuse_probabilities(members, weights=[10.0, 20.0, 30.0])
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fuse_probabilities(members, weights=[1, 0, 1]),
                                  fuse_probabilities([members[0], members[2]]))


def test_hard_members_only_need_or_infer_num_classes(rng):
    maps = [rng.integers(0, 3, (4, 5, 6)).astype(np.uint8) for _ in range(3)]
    got = fuse_probabilities(maps)
    np.testing.assert_array_equal(got, ref.fuse_probabilities(maps, num_classes=3))
    got5 = average_probabilities(maps, num_classes=5)
    assert got5.shape == (5, 4, 5, 6)
    np.testing.assert_array_equal(got5, ref.weighted_mean(maps, num_classes=5))


def test_ties_go_to_the_lowest_class():
    p = np.zeros((4, 2, 2, 2), dtype=np.float32)
    p[1] = p[3] = 0.5  # classes 1 and 3 tie everywhere
    q = np.zeros_like(p)
    q[2] = q[3] = 0.5
    got = fuse_probabilities([p, q])  # means: 0, .25, .25, .5 -> 3 wins
    assert (got == 3).all()
    got = fuse_probabilities([p, p, q, q], weights=[1, 1, 0, 0])
    assert (got == 1).all()
    assert (fuse_probabilities([np.full((3, 1, 1, 1), 1 / 3, np.float32)]) == 0).all()


def test_many_classes_give_uint16_labels(rng):
    c = 300
    p = probabilities(rng, c, (2, 3, 4), concentration=0.1)
    got = fuse_probabilities([p, p])
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, p.argmax(0))
    assert fuse_probabilities([probabilities(rng, 256, (2, 2, 2))]).dtype == np.uint8
    one = fuse_probabilities([np.ones((1, 3, 3), np.float16)])
    assert one.dtype == np.uint8 and (one == 0).all()


def _member_mix(rng, mix, c, shape):
    out = []
    for part in mix.split("+"):
        count, kind = int(part[:-3]), part[-3:]
        for _ in range(count):
            if kind == "u8a":
                out.append(rng.integers(0, c, shape).astype(np.uint8))
            else:
                out.append(probabilities(rng, c, shape, np.float16 if kind == "f16" else np.float32))
    return out


@pytest.mark.parametrize("mix", ["3f16+1u8a", "5f32", "4f16", "4f32+5f32", "5f16+1u8a"])
@pytest.mark.parametrize("chunk", ["default", 1000])
def test_many_chunks_on_several_threads_match_twin(rng, monkeypatch, mix, chunk):
    # several chunks per thread, an uneven last chunk; folded (4 or 5 probability members end the class)
    # and unfolded argmax steps, with the default chunk and with a small one that is no multiple of 16
    shape = (64, 67, 71)  # 304k voxels: more than 4 default chunks
    if chunk == "default":
        if numba.config.DISABLE_JIT:
            pytest.skip("plain-Python kernels (NUMBA_DISABLE_JIT=1): the small-chunk cases run the same lines")
        assert np.prod(shape) > 4 * fusion.FUSION_CHUNK
    else:
        monkeypatch.setattr(fusion, "FUSION_CHUNK", chunk)
        monkeypatch.setattr(fusion, "CHECK_SIZE", 300)
        shape = (9, 11, 61)
    members = _member_mix(rng, mix, 3, shape)
    w = rng.random((len(members), 3)) + 0.05
    want = ref.weighted_mean(members, w)
    old = numba.get_num_threads()
    try:
        for threads in sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)}):
            numba.set_num_threads(threads)
            np.testing.assert_array_equal(average_probabilities(members, weights=w), want)
            np.testing.assert_array_equal(fuse_probabilities(members, weights=w), want.argmax(0))
    finally:
        numba.set_num_threads(old)


def test_uint16_labels_over_many_chunks(rng, monkeypatch):
    monkeypatch.setattr(fusion, "FUSION_CHUNK", 100)
    p = [probabilities(rng, 300, (3, 5, 17), concentration=0.1) for _ in range(5)]
    got = fuse_probabilities(p)
    assert got.dtype == np.uint16
    np.testing.assert_array_equal(got, ref.fuse_probabilities(p))


# ----------------------------------------------------------------------------- layouts
def _layouts(a):
    yield "fortran", np.asfortranarray(a)
    big = np.empty_like(a, dtype=a.dtype.newbyteorder(">"))
    big[...] = a
    yield "big-endian", big
    ro = a.copy()
    ro.flags.writeable = False
    yield "read-only", ro
    padded = np.zeros((a.shape[0], *(s + 3 for s in a.shape[1:])), dtype=a.dtype)
    padded[(slice(None), *(slice(1, 1 + s) for s in a.shape[1:]))] = a
    yield "strided crop", padded[(slice(None), *(slice(1, 1 + s) for s in a.shape[1:]))]
    doubled = np.repeat(a, 2, axis=-1)
    yield "step 2", doubled[..., ::2]
    flipped = np.ascontiguousarray(a[:, ::-1])
    yield "negative stride", flipped[:, ::-1]


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_every_layout_gives_the_same_result(rng, dtype):
    members = [probabilities(rng, 3, (5, 6, 7), dtype) for _ in range(3)]
    want = fuse_probabilities(members)
    want_mean = average_probabilities(members)
    for name, variant in _layouts(members[1]):
        got = fuse_probabilities([members[0], variant, members[2]])
        np.testing.assert_array_equal(got, want, err_msg=name)
        np.testing.assert_array_equal(average_probabilities([members[0], variant, members[2]]), want_mean,
                                      err_msg=name)


def test_stacked_array_and_channel_strided_views(rng):
    stack = np.stack([probabilities(rng, 4, (3, 5, 6), np.float16) for _ in range(3)])
    want = ref.fuse_probabilities(list(stack))
    np.testing.assert_array_equal(fuse_probabilities(stack), want)
    np.testing.assert_array_equal(fuse_probabilities(list(stack)), want)
    # channels in reverse order: a negative channel stride, still no copy needed
    rev = [m[::-1] for m in stack]
    np.testing.assert_array_equal(fuse_probabilities(rev), ref.fuse_probabilities(rev))
    # channel-last storage viewed as (C, ...): every channel strided, so copied
    last = [np.moveaxis(np.ascontiguousarray(np.moveaxis(m, 0, -1)), -1, 0) for m in stack]
    np.testing.assert_array_equal(fuse_probabilities(last), want)


def test_hard_member_layouts(rng):
    p = probabilities(rng, 3, (4, 5, 6))
    lab = rng.integers(0, 3, (4, 5, 6)).astype(np.int16)
    want = fuse_probabilities([p, lab.astype(np.uint8)])
    for variant in (np.asfortranarray(lab), lab.astype(">i2"), lab.astype(np.int64), lab.astype(np.uint32),
                    np.repeat(lab, 2, axis=-1)[..., ::2]):
        np.testing.assert_array_equal(fuse_probabilities([p, variant]), want)
    mask = lab == 1
    np.testing.assert_array_equal(fuse_probabilities([p, mask]), fuse_probabilities([p, mask.astype(np.uint8)]))


def test_members_are_not_modified(rng):
    members = [probabilities(rng, 3, (4, 5, 6), np.float16) for _ in range(2)]
    before = [m.copy() for m in members]
    fuse_probabilities(members)
    average_probabilities(members)
    for m, b in zip(members, before, strict=True):
        np.testing.assert_array_equal(m, b)


def _traced_peak(fn, *args, **kwargs):
    tracemalloc.start()
    try:
        result = fn(*args, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def test_extra_memory_is_the_output_plus_small_buffers_whatever_the_member_count(rng):
    # tracemalloc sees numpy's allocations and numba's (its runtime allocates through Python's raw
    # allocator): two float32 rows of FUSION_CHUNK voxels per thread, about 0.5 MiB each thread.
    members = [probabilities(rng, 6, (16, 64, 64), np.float16) for _ in range(8)]
    fuse_probabilities(members)  # compile outside the trace
    out, peak8 = _traced_peak(fuse_probabilities, members)
    _, peak2 = _traced_peak(fuse_probabilities, members[:2])
    member_bytes = members[0].nbytes  # 393 kB: a copy of even one member would show
    assert peak8 < out.nbytes + numba.get_num_threads() * 1.5 * 2**20, peak8
    assert abs(peak8 - peak2) < member_bytes / 4, (peak8, peak2)


# ----------------------------------------------------------------------------- probability checks
def test_logits_are_refused_with_a_pointer_to_softmax(rng):
    logits = rng.normal(0, 3, (4, 5, 6, 7)).astype(np.float32)
    with pytest.raises(ValidationError, match=r"`members\[1\]`.*softmax"):
        fuse_probabilities([probabilities(rng, 4, (5, 6, 7)), logits])
    fused = fuse_probabilities([probabilities(rng, 4, (5, 6, 7)), softmax(logits)])
    assert fused.shape == (5, 6, 7)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_non_finite_values_are_refused(rng, bad, dtype):
    p = probabilities(rng, 3, (6, 7, 8), dtype)
    p[2, 5, 6, 7] = bad  # one voxel, far from the sampled chunk 0: the range check sees every value
    with pytest.raises(ValidationError, match=r"`members\[0\]`"):
        fuse_probabilities([p, probabilities(rng, 3, (6, 7, 8), dtype)])
    with pytest.raises(ValidationError, match=r"`members\[0\]`"):
        average_probabilities([p])


def test_out_of_range_values_are_refused(rng):
    p = probabilities(rng, 3, (4, 5, 6))
    p[1, 3, 4, 5] = 1.5
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        fuse_probabilities([p])
    p[1, 3, 4, 5] = -0.25
    with pytest.raises(ValidationError, match=r"-0\.25"):
        fuse_probabilities([p])


def test_small_rounding_outside_the_unit_interval_is_accepted(rng):
    p = probabilities(rng, 3, (4, 5, 6))
    t = RANGE_TOLERANCE / 2
    p[:, 0, 0, 0] = [-0.0, 0.4, 0.6]
    p[:, 0, 0, 1] = [-t, 0.5, 0.5 + t]
    p[:, 0, 0, 2] = [0.0, 1 + t, -t]
    assert fuse_probabilities([p])[0, 0, 2] == 1  # no error


def test_unnormalised_members_are_refused(rng):
    p = probabilities(rng, 3, (4, 5, 6)) * np.float32(0.5)  # in [0, 1], sums 0.5
    with pytest.raises(ValidationError, match="sum to 1"):
        fuse_probabilities([probabilities(rng, 3, (4, 5, 6)), p])


def test_sum_check_samples_move_through_each_chunk(rng, monkeypatch):
    # sums are right on the first CHECK_SIZE voxels of every chunk and wrong everywhere else: a sample
    # taken at the same place in every chunk would miss it
    monkeypatch.setattr(fusion, "FUSION_CHUNK", 1000)
    monkeypatch.setattr(fusion, "CHECK_SIZE", 100)
    monkeypatch.setattr(fusion, "CHECK_EVERY", 2)
    good = probabilities(rng, 3, (10, 10, 50))
    bad = good.copy()
    flat = bad.reshape(3, -1)
    keep = (np.arange(flat.shape[1]) % 1000) < 100
    flat[:, ~keep] *= np.float32(0.5)
    with pytest.raises(ValidationError, match="sum to 1"):
        fuse_probabilities([good, bad])
    fuse_probabilities([good, good])


def test_check_false_skips_probability_checks(rng):
    p = rng.random((3, 4, 5, 6)).astype(np.float32) * 2
    got = fuse_probabilities([p], check=False)
    np.testing.assert_array_equal(got, p.argmax(0))


# ----------------------------------------------------------------------------- bad input
def test_bad_members(rng):
    p = probabilities(rng, 3, (4, 5, 6))
    cases = [
        ([], "at least one member"),
        ((), "at least one member"),
        ([p, probabilities(rng, 3, (4, 5, 7))], r"^`members\[1\]`.*same voxels"),
        ([p, probabilities(rng, 4, (4, 5, 6))], r"^`members\[1\]`.*same number of classes"),
        ([p, np.zeros((3, 4, 5), np.uint8)], r"^`members\[1\]` \(label map\).*same voxels"),
        ([np.float32(0.5)], r"`members\[0\]`.*\(C, Z, Y, X\)"),
        ([np.ones(5, np.float32)], r"`members\[0\]`.*\(C, Z, Y, X\)"),
        ([p, p.astype(np.complex64)], r"`members\[1\]`.*real"),
        ([p, np.array(["a"] * 120).reshape(4, 5, 6)], r"`members\[1\]`"),
        ([p, [[object()]]], r"`members\[1\]`"),
        ("abc", "sequence of arrays"),
        (3, "sequence of arrays"),
        (np.ones(3, np.float32), r"\(M, C, \.\.\.\)"),
    ]
    for members, match in cases:
        with pytest.raises(ValidationError, match=match):
            fuse_probabilities(members)


def test_bad_labels_in_hard_members(rng):
    p = probabilities(rng, 3, (4, 5, 6))
    lab = rng.integers(0, 3, (4, 5, 6)).astype(np.uint8)
    lab[3, 4, 5] = 3
    with pytest.raises(ValidationError, match=r"`members\[1\]` holds label 3.*\[0, 3\)"):
        fuse_probabilities([p, lab])
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        neg = lab.astype(dtype)
        neg[3, 4, 5] = -1
        with pytest.raises(ValidationError, match=r"`members\[1\]`.*negative|`members\[1\]`.*\[-1"):
            fuse_probabilities([p, neg])
    big = lab.astype(np.int32)
    big[0, 0, 0] = 70000
    with pytest.raises(ValidationError, match=r"`members\[1\]`"):
        fuse_probabilities([p, big])
    with pytest.raises(ValidationError, match="num_classes"):
        fuse_probabilities([p], num_classes=4)
    with pytest.raises(ValidationError, match="num_classes"):
        fuse_probabilities([lab], num_classes=0)
    with pytest.raises(ValidationError, match="num_classes"):
        fuse_probabilities([lab], num_classes=2.5)


def test_bad_weights(rng):
    members = [probabilities(rng, 3, (2, 3, 4)) for _ in range(2)]
    cases = [
        ([1.0], r"`weights`.*\(2,\).*got shape \(1,\)"),
        ([1.0, 2.0, 3.0], r"`weights`.*one entry per member"),
        (np.ones((2, 4)), r"`weights`.*\(2, 3\)"),
        (np.ones((2, 3, 1)), r"`weights`"),
        ([1.0, -1.0], r"`weights` must be non-negative"),
        ([0.0, 0.0], r"`weights` must not be all zero"),
        ([1.0, np.nan], r"`weights` must be finite"),
        ([[1, 0, 1], [1, 0, 1]], r"`weights` gives class\(es\) \[1\] zero weight"),
        (["a", "b"], r"`weights`"),
    ]
    for w, match in cases:
        with pytest.raises(ValidationError, match=match):
            fuse_probabilities(members, weights=w)
    assert issubclass(ValidationError, ValueError)


# ----------------------------------------------------------------------------- softmax
def test_softmax(rng):
    x = rng.normal(0, 5, (4, 3, 5, 6)).astype(np.float16)
    p = softmax(x)
    assert p.dtype == np.float32 and p.shape == x.shape
    want = np.exp(x.astype(np.float64) - x.max(0))
    want /= want.sum(0)
    np.testing.assert_allclose(p, want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-6)
    np.testing.assert_allclose(softmax(np.moveaxis(x, 0, -1), axis=-1), np.moveaxis(p, 0, -1), rtol=1e-6)
    assert softmax(np.array([[1000.0], [0.0]]))[0, 0] == 1.0  # no overflow
    assert softmax(np.zeros((3, 0))).shape == (3, 0)
    for bad, match in [(np.array([np.nan, 1.0]), "finite"), (np.array(["a"]), "real-valued")]:
        with pytest.raises(ValidationError, match=match):
            softmax(bad)
    with pytest.raises(ValidationError, match="`axis`"):
        softmax(x, axis=4)


# ----------------------------------------------------------------------------- thread scheduling
def test_split_covers_every_chunk_once():
    from medfuse._kernels.threads import split

    assert split(0, 4) == []
    assert split(5, 1) == [(0, 5)]
    for n_chunks in (1, 2, 7, 16, 100):
        for threads in (2, 3, 8):
            ranges = split(n_chunks, threads)
            assert ranges[0][0] == 0 and ranges[-1][1] == n_chunks
            assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
            assert all(k1 > k0 for k0, k1 in ranges) and len(ranges) <= threads * 8


def test_run_ranges_runs_each_range_once_and_reraises():
    from medfuse._kernels.threads import run_ranges, split

    seen = np.zeros(50, dtype=np.int64)

    def kernel(k0, k1, t, out):
        out[k0:k1] += 1

    run_ranges(kernel, split(50, 3), 3, seen)
    np.testing.assert_array_equal(seen, 1)

    def failing(k0, k1, t):
        if t == 5:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_ranges(failing, split(50, 3), 3)


def _fuse_in_child(members):
    return fuse_probabilities(members)


def test_works_in_a_forked_child_after_use_in_the_parent(rng):
    import multiprocessing
    import warnings

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    members = [probabilities(rng, 3, (20, 64, 64), np.float16) for _ in range(2)]  # many chunks: uses the pool
    want = fuse_probabilities(members)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "process is multi-threaded, fork() may deadlock"
        with multiprocessing.get_context("fork").Pool(1) as pool:
            got = pool.apply_async(_fuse_in_child, (members,)).get(timeout=120)
    np.testing.assert_array_equal(got, want)
