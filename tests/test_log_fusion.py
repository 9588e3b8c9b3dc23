"""Log-space fusion (space="log"): the kernel against its numpy twin, the log against numpy's, the
softmax/logit identity, and the options' errors. Runs compiled and with NUMBA_DISABLE_JIT=1."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from _reference import twin_fusion as ref
from medfuse import ValidationError
from medfuse.fusion import average_probabilities, fuse_probabilities, run as fusion, softmax
from medfuse.fusion.inputs import prepare_members


def probabilities(rng, c, shape, dtype=np.float32, concentration=1.0):
    x = rng.gamma(concentration, size=(c, *shape)) + 1e-3
    return (x / x.sum(axis=0)).astype(dtype)


def _compiled_log(x):
    from medfuse._kernels import jit
    from medfuse._kernels.logf import _log_f32

    @jit
    def run(values, out):
        for i in range(values.size):
            out[i] = _log_f32(values[i])

    out = np.empty(x.size, dtype=np.float32)
    run(np.ascontiguousarray(x, dtype=np.float32), out)
    return out


def _log_inputs(rng, n):
    f16 = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    f16 = f16[np.isfinite(f16) & (f16 >= np.finfo(np.float32).tiny)]
    if numba.config.DISABLE_JIT:
        f16 = f16[:: 97]
        n = 2000
    wide = np.exp(rng.uniform(np.log(1e-30), 0.0, n)).astype(np.float32)
    return np.concatenate([f16, wide, rng.random(n, dtype=np.float32) + np.float32(1e-7),
                           np.float32([1e-6, 0.5, 1.0, np.sqrt(2), 1 / np.sqrt(2)])])


def test_log_matches_its_twin_bit_for_bit_and_numpy_within_one_ulp(rng):
    x = _log_inputs(rng, 10**6)
    got = _compiled_log(x)
    np.testing.assert_array_equal(got.view(np.uint32), ref.log_f32(x).view(np.uint32))
    exact = np.log(x.astype(np.float64))
    ulp = np.abs(got.astype(np.float64) - exact) / np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert ulp[exact != 0].max() <= 1.0
    assert got[x == 1.0][0] == 0.0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 5), (0, 4, 4), (1, 1, 37)])
@pytest.mark.parametrize("n_members", [1, 3, 5])
def test_log_fusion_matches_twin(rng, dtype, shape, n_members):
    members = [probabilities(rng, 4, shape, dtype, concentration=0.3) for _ in range(n_members)]
    want = ref.fuse_probabilities(members, space="log")
    got = fuse_probabilities(members, space="log")
    assert got.dtype == np.uint8 and got.shape == shape
    np.testing.assert_array_equal(got, want)
    mean = average_probabilities(members, space="log")
    assert mean.dtype == np.float32 and mean.shape == (4, *shape)
    np.testing.assert_allclose(mean, ref.normalised_geometric_mean(members), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("mix", ["5f16", "5f32", "4f16+f32", "f16+u8+5f32", "9f16", "3f32+u16"])
@pytest.mark.parametrize("eps", [1e-6, 1e-3])
def test_log_fusion_mixes_weights_and_chunks_match_twin(rng, monkeypatch, mix, eps):
    # every member group (1, 4, 5; folded and plain argmax), hard members, per-class weights, many chunks
    monkeypatch.setattr(fusion, "FUSION_CHUNK", 1000)
    monkeypatch.setattr(fusion, "CHECK_SIZE", 300)
    shape = (9, 11, 61)
    members = []
    for part in mix.split("+"):
        count, kind = (int(part[:-3]), part[-3:]) if part[:-3] else (1, part)
        for _ in range(count):
            if kind in ("u8", "u16"):
                members.append(rng.integers(0, 3, shape).astype(np.uint8 if kind == "u8" else np.uint16))
            else:
                dtype = np.float16 if kind == "f16" else np.float32
                members.append(probabilities(rng, 3, shape, dtype, concentration=0.2))
    w = rng.random((len(members), 3)) + 0.05
    want = ref.weighted_mean(members, w, space="log", eps=eps)
    assert (np.diff(np.sort(want, axis=0), axis=0)[-1] > 0).all()  # no exact ties in the test data
    np.testing.assert_array_equal(fuse_probabilities(members, weights=w, space="log", eps=eps), want.argmax(0))
    logs = fusion._run_fusion(prepare_members(members, num_classes=None), w, labels=False, mean=True,
                              check=True, space="log", eps=eps)[1]
    np.testing.assert_array_equal(logs, want)  # the kernel's sums, bit for bit


@pytest.mark.parametrize("weighted", [False, True])
def test_float16_log_is_numpys_log_and_argmax_equals_numpy(rng, weighted):
    # unequal weights: the sum of the table's logs (numpy's float32 log); equal weights: the product form
    members = [probabilities(rng, 5, (6, 7, 8), np.float16, concentration=0.2) for _ in range(5)]
    w = np.array([1.0, 2.0, 0.5, 1.5, 1.0]) if weighted else np.ones(5)
    numpy_logs = sum(wi * np.log(np.maximum(m.astype(np.float64), 1e-6)) for wi, m in zip(w, members, strict=True))
    got = fuse_probabilities(members, weights=w, space="log")
    np.testing.assert_array_equal(got, numpy_logs.argmax(0))
    f32 = [m.astype(np.float32) for m in members]
    np.testing.assert_array_equal(fuse_probabilities(f32, weights=w, space="log"), numpy_logs.argmax(0))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_softmax_members_in_log_space_give_the_argmax_of_the_averaged_logits(rng, dtype):
    # log softmax(z)[c] = z[c] - logsumexp(z): the second term is common to all classes, so
    # argmax sum_m w_m log softmax(z_m) == argmax sum_m w_m z_m while no probability falls below eps
    shape = (8, 9, 10)
    logits = [rng.normal(scale=2.0, size=(6, *shape)) for _ in range(5)]
    w = np.array([1.0, 2.0, 0.5, 1.5, 1.0])
    members = [softmax(z).astype(dtype) for z in logits]
    assert min(float(m.min()) for m in members) > 1e-6  # the eps clamp never acts here
    mixed = sum(wi * z for wi, z in zip(w, logits, strict=True))
    got = fuse_probabilities(members, weights=w, space="log")
    top2 = np.sort(mixed, axis=0)[-2:]
    clear = top2[1] - top2[0] > (1e-4 if dtype == np.float32 else 5e-3) * w.sum()  # beyond float rounding
    assert clear.mean() > 0.97
    np.testing.assert_array_equal(got[clear], mixed.argmax(0)[clear])
    linear = fuse_probabilities(members, weights=w)
    assert (linear != mixed.argmax(0)).any()  # the identity is log space's, not the plain mean's


def test_log_space_vetoes_a_class_one_member_rules_out():
    # member 0 is sure the voxel is not class 1; the mean still picks 1, the geometric mean does not
    a = np.array([0.5, 0.0, 0.5], dtype=np.float32).reshape(3, 1, 1, 1)
    b = np.array([0.2, 0.8, 0.0], dtype=np.float32).reshape(3, 1, 1, 1)
    c = np.array([0.3, 0.7, 0.0], dtype=np.float32).reshape(3, 1, 1, 1)
    assert fuse_probabilities([a, b, c])[0, 0, 0] == 1
    assert fuse_probabilities([a, b, c], space="log")[0, 0, 0] == 0
    mean = average_probabilities([a, b, c], space="log")
    assert abs(float(mean.sum()) - 1.0) < 1e-6 and mean.argmax() == 0


def test_log_space_keeps_the_input_checks(rng):
    p = probabilities(rng, 3, (4, 5, 6))
    with pytest.raises(ValidationError, match="softmax"):
        fuse_probabilities([p, p * 5 - 2], space="log")
    with pytest.raises(ValidationError):
        fuse_probabilities([p, p * 0.5], space="log")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"space": "geometric"}, "space"), ({"space": None}, "space"), ({"space": "log", "eps": 0}, "eps"),
    ({"space": "log", "eps": 1.0}, "eps"), ({"space": "log", "eps": float("nan")}, "eps"),
    ({"space": "log", "eps": "1e-6"}, "eps"), ({"space": "log", "eps": 1e-45}, "eps"),
])
def test_bad_space_and_eps(rng, kwargs, match):
    p = probabilities(rng, 3, (2, 2, 2))
    with pytest.raises(ValidationError, match=match):
        fuse_probabilities([p, p], **kwargs)
    with pytest.raises(ValidationError, match=match):
        average_probabilities([p, p], **kwargs)


# ------------------------------------------------------------------ the product form (equal weights)

def _mixed_members(rng, mix, shape, c=3):
    members = []
    for part in mix.split("+"):
        count, kind = (int(part[:-3]), part[-3:]) if part[:-3] else (1, part)
        for _ in range(count):
            if kind in ("u8", "u16"):
                members.append(rng.integers(0, c, shape).astype(np.uint8 if kind == "u8" else np.uint16))
            else:
                dtype = np.float16 if kind == "f16" else np.float32
                members.append(probabilities(rng, c, shape, dtype, concentration=0.2))
    return members


@pytest.mark.parametrize("mix", ["5f16", "4f16+f32", "f16+u8+5f32", "12f16", "2f32+u16", "f16"])
@pytest.mark.parametrize("eps", [1e-6, 1e-3, 1e-12])
@pytest.mark.parametrize("weights", ["none", "equal"])
def test_equal_weights_take_the_product_form_bit_for_bit(rng, monkeypatch, mix, eps, weights):
    """Equal weights: the kernel multiplies max(p, eps) * 2**s in member order (no log per value) and takes
    the argmax of the products; the log mean is w (log P - M s ln 2). Against the twin, bit for bit, over
    every member group of the kernel, hard members, several chunks, and the range of eps."""
    monkeypatch.setattr(fusion, "FUSION_CHUNK", 1000)
    monkeypatch.setattr(fusion, "CHECK_SIZE", 300)
    shape = (5, 11, 61)
    members = _mixed_members(rng, mix, shape)
    w = None if weights == "none" else np.full(len(members), 2.5)
    _, most = fusion.product_shift(eps)
    form = fusion.product_form(True, ref.normalised_weights(w, len(members), 3), np.float32(eps))
    assert (form is not None) == (len(members) <= most)
    want_labels = ref.fuse_probabilities(members, w, space="log", eps=eps)
    np.testing.assert_array_equal(fuse_probabilities(members, weights=w, space="log", eps=eps), want_labels)
    logs = fusion._run_fusion(prepare_members(members, num_classes=None), w, labels=False, mean=True,
                              check=True, space="log", eps=eps)[1]
    want = ref.weighted_mean(members, w, space="log", eps=eps)
    np.testing.assert_array_equal(logs, want)
    assert np.isfinite(logs).all()
    exact = sum(np.log(np.maximum(m.astype(np.float64), np.float32(eps))) if m.dtype.kind == "f" else
                np.log(np.where(np.arange(3)[:, None, None, None] == m, 1.0, np.float64(np.float32(eps))))
                for m in members) / len(members)
    np.testing.assert_allclose(logs, exact, rtol=2e-6, atol=2e-6 * abs(np.log(eps)))  # the log mean it stands for


def test_product_form_bounds_and_the_sum_of_logs_beyond_them(rng):
    """s centres the factors on 1 and K products stay normal floats; more members, or unequal weights, go
    back to the sum of logs (the twin does the same)."""
    for eps in (1e-6, 1e-3, 1e-12, 1e-30, float(np.finfo(np.float32).tiny)):
        s, most = fusion.product_shift(eps)
        low, high = np.float64(np.float32(eps)) * 2.0 ** s, 2.0 ** s
        assert low ** most >= np.finfo(np.float32).tiny and high ** most < np.finfo(np.float32).max
        assert most >= 1
    assert fusion.product_shift(1e-6) == (10, 12)
    members = [probabilities(rng, 3, (4, 5, 6), np.float16, concentration=0.2) for _ in range(13)]
    assert fusion.product_form(True, ref.normalised_weights(None, 13, 3), np.float32(1e-6)) is None
    np.testing.assert_array_equal(fuse_probabilities(members, space="log"),
                                  ref.weighted_mean(members, space="log").argmax(0))
    w = np.ones((13, 3))
    w[0, 1] = 2.0
    assert fusion.product_form(True, ref.normalised_weights(w, 13, 3), np.float32(1e-6)) is None
    assert fusion.product_form(False, ref.normalised_weights(None, 3, 3), np.float32(1e-6)) is None


def test_product_form_never_underflows_and_ties_keep_the_lowest_class():
    # 12 members (the most at eps=1e-6) all sure of class 2: classes 0 and 1 get eps**12, a product of
    # 2**-119 after the shift, still a normal float32; classes 0 and 1 tie exactly: no NaN, class 2 wins, and
    # where every class ties the lowest one does
    p = np.zeros((3, 1, 1, 2), dtype=np.float16)
    p[2, ..., 0] = 1.0
    p[:, ..., 1] = np.float16(1 / 3)
    members = [p] * 12
    assert fuse_probabilities(members, space="log").tolist() == [[[2, 0]]]
    logs = fusion._run_fusion(prepare_members(members, num_classes=None), None, labels=False, mean=True,
                              check=True, space="log")[1]
    assert np.isfinite(logs).all()
    np.testing.assert_allclose(logs[:2, ..., 0], np.log(np.float32(1e-6)), rtol=1e-6)
    np.testing.assert_allclose(logs[2, ..., 0], 0.0, atol=1e-6)


def test_product_form_labels_are_the_sum_of_logs_labels_beyond_rounding(rng):
    """The product form changes rounding only: where the float64 sum of logs has a clear top class, the
    labels are its argmax."""
    members = [probabilities(rng, 6, (10, 20, 30), np.float16, concentration=0.3) for _ in range(5)]
    exact = sum(np.log(np.maximum(m.astype(np.float64), 1e-6)) for m in members)
    top2 = np.sort(exact, axis=0)[-2:]
    clear = top2[1] - top2[0] > 1e-4
    assert clear.mean() > 0.99
    got = fuse_probabilities(members, space="log")
    np.testing.assert_array_equal(got[clear], exact.argmax(0)[clear])


def test_without_the_kernel_source_log_space_sums_logs(rng, monkeypatch):
    """Where the product kernel cannot be built (its source unreadable: a frozen application), equal weights
    take the sum of logs, like unequal ones, and the uncertainty kernel follows (same labels)."""
    from medfuse._kernels import spaces

    members = [probabilities(rng, 4, (5, 6, 7), np.float16, concentration=0.2) for _ in range(3)]
    monkeypatch.setattr(spaces, "product_variant", lambda fn: None)
    assert fusion.product_form(True, ref.normalised_weights(None, 3, 4), np.float32(1e-6)) is None
    monkeypatch.setattr(ref, "product_form", lambda weights, eps: None)
    want = ref.weighted_mean(members, space="log")
    got = fuse_probabilities(members, space="log")
    np.testing.assert_array_equal(got, want.argmax(0))
    logs = fusion._run_fusion(prepare_members(members, num_classes=None), None, labels=False, mean=True,
                              check=True, space="log")[1]
    np.testing.assert_array_equal(logs, want)
    labels, _ = fuse_probabilities(members, space="log", return_uncertainty=True)
    np.testing.assert_array_equal(labels, got)
