"""Sliding-window prediction against a naive nnU-Net-style reference, with numpy stand-in networks."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import ndimage

from medfuse.errors import FormatError, ValidationError
from medfuse.inference.sliding import (
    Stopwatch,
    gaussian_importance_map,
    mirror_combinations,
    pad_widths,
    predict_sliding_window,
    tile_starts,
)

# ------------------------------------------------------------------------------------------------------
# stand-in networks and the naive reference


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class PositionNet:
    """softmax(W x + b + field): the fixed per-position field makes it NOT flip-equivariant."""

    def __init__(self, rng, c_in, c_out, patch, *, logits=False):
        self.w = rng.standard_normal((c_out, c_in)).astype(np.float32)
        self.b = rng.standard_normal(c_out).astype(np.float32)
        self.field = rng.standard_normal((c_out, *patch)).astype(np.float32)
        self.logits = logits
        self.calls = 0

    def __call__(self, batch):
        self.calls += 1
        z = np.einsum("oc,nc...->no...", self.w, batch) + self.b.reshape(1, -1, 1, 1, 1) + self.field[None]
        return z.astype(np.float32) if self.logits else _softmax(z, 1).astype(np.float32)


class PointwiseNet:
    """softmax(W x + b) voxel by voxel: equivariant to every flip."""

    def __init__(self, rng, c_in, c_out):
        self.w = rng.standard_normal((c_out, c_in)).astype(np.float32)
        self.b = rng.standard_normal(c_out).astype(np.float32)

    def __call__(self, batch):
        z = np.einsum("oc,nc...->no...", self.w, batch) + self.b.reshape(1, -1, 1, 1, 1)
        return _softmax(z, 1).astype(np.float32)


def naive_gaussian(patch):
    tmp = np.zeros(patch)
    tmp[tuple(p // 2 for p in patch)] = 1
    g = ndimage.gaussian_filter(tmp, [p / 8 for p in patch], 0, mode="constant", cval=0)
    g = (g / g.max()).astype(np.float32)
    g[g == 0] = g[g != 0].min()
    return g


def naive_steps(size, patch, step):
    target = patch * step
    n = int(np.ceil((size - patch) / target)) + 1
    if n == 1:
        return [0]
    return [int(np.round((size - patch) / (n - 1) * i)) for i in range(n)]


def naive_sliding(image, nets, patch, num_classes, step, mirror_axes, *, logits=False):
    """nnU-Net v1's loop: one tile and one flip at a time, a C-channel count map, folds averaged last."""
    shape = image.shape[1:]
    new = [max(s, p) for s, p in zip(shape, patch, strict=True)]
    below = [(n - s) // 2 for n, s in zip(new, shape, strict=True)]
    padded = np.pad(image, [(0, 0)] + [(b, n - s - b) for b, n, s in zip(below, new, shape, strict=True)])
    g = naive_gaussian(patch)
    results = []
    for net in nets:
        agg = np.zeros((num_classes, *new), np.float64)
        cnt = np.zeros((num_classes, *new), np.float64)
        combos = [c for r in range(len(mirror_axes) + 1) for c in itertools.combinations(mirror_axes, r)]
        for z in naive_steps(new[0], patch[0], step) if patch[0] > 1 else range(new[0]):
            for y in naive_steps(new[1], patch[1], step):
                for x in naive_steps(new[2], patch[2], step):
                    sl = (slice(None), slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
                    tile = padded[sl]
                    pred = np.zeros((num_classes, *patch), np.float64)
                    for combo in combos:
                        ax = tuple(a + 1 for a in combo)
                        out = net(np.flip(tile, ax)[None].copy())[0].astype(np.float64)
                        if logits:
                            out = _softmax(out, 0)
                        pred += np.flip(out, ax) / len(combos)
                    agg[sl] += pred * g
                    cnt[sl] += g
        res = agg / cnt
        results.append(res[(slice(None), *(slice(b, b + s) for b, s in zip(below, shape, strict=True)))])
    return np.mean(results, axis=0)


# ------------------------------------------------------------------------------------------------------
# gaussian, steps, padding


@pytest.mark.parametrize("patch", [(80, 160, 160), (64, 160, 160), (5, 7, 9), (1, 12, 13), (2, 3, 4), (1, 1, 1)])
def test_gaussian_equals_scipy_filtered_impulse(patch):
    np.testing.assert_allclose(gaussian_importance_map(patch), naive_gaussian(patch), rtol=1e-6, atol=1e-12)


def test_gaussian_properties():
    g = gaussian_importance_map((9, 16, 17))
    assert g.dtype == np.float32 and g.shape == (9, 16, 17)
    assert g.max() == 1 and g[4, 8, 8] == 1 and g.min() > 0
    # symmetric about the centre voxel where the size is odd
    np.testing.assert_allclose(g[:, 1:, :], g[::-1, 1:, ::-1][:, ::-1, :], rtol=1e-6)
    # separable: a product of its axis profiles
    np.testing.assert_allclose(g, g[:, 8:9, 8:9] * g[4:5, :, 8:9] * g[4:5, 8:9, :], rtol=1e-6)


def test_gaussian_sigma_is_an_eighth_of_the_patch():
    g = gaussian_importance_map((1, 1, 160))[0, 0]
    d = np.arange(160) - 80
    np.testing.assert_allclose(g, np.exp(-0.5 * (d / 20.0) ** 2), rtol=1e-6)


def test_gaussian_rejects_bad_patch():
    with pytest.raises(ValidationError):
        gaussian_importance_map((4, 0, 4))


@pytest.mark.parametrize("size,patch,step", [(200, 160, 0.5), (160, 160, 0.5), (333, 64, 0.5), (97, 8, 0.25),
                                             (50, 13, 1.0), (17, 1, 0.5), (1000, 3, 0.5)])
def test_tile_starts_cover_evenly(size, patch, step):
    starts = tile_starts(size, patch, step)
    assert starts[0] == 0 and starts[-1] == size - patch
    gaps = np.diff(starts)
    assert np.all(gaps >= 1) and np.all(gaps < max(patch * step, 1) + 1)  # rounding adds < 1 voxel
    if patch > 1:
        assert starts == naive_steps(size, patch, step)


def test_tile_starts_rejects_small_axis():
    with pytest.raises(ValidationError, match="pad"):
        tile_starts(5, 8, 0.5)


def test_pad_widths_centre_the_image():
    assert pad_widths((5, 20, 3), (8, 16, 8)) == ((1, 2), (0, 0), (2, 3))


def test_mirror_combinations():
    assert mirror_combinations((0, 1, 2))[0] == () and len(mirror_combinations((0, 1, 2))) == 8
    assert set(mirror_combinations((2, 1))) == {(), (1,), (2,), (1, 2)}
    assert mirror_combinations(()) == ((),)


# ------------------------------------------------------------------------------------------------------
# sliding window == naive reference


@pytest.mark.parametrize("shape,patch,step,mirror,batch", [
    ((2, 13, 20, 17), (6, 8, 8), 0.5, (0, 1, 2), 5),     # several tiles, flips, batches split tiles
    ((1, 4, 7, 30), (6, 8, 8), 0.5, (1, 2), 3),          # padding on two axes
    ((2, 9, 9, 9), (9, 9, 9), 0.5, (), 1),               # a single tile, no TTA
    ((1, 11, 16, 16), (4, 8, 8), 0.25, (2,), 16),        # small step, one mirror axis, big batches
    ((1, 5, 12, 11), (1, 8, 8), 0.5, (1, 2), 4),         # 2D network: depth-1 patch, slice by slice
])
def test_sliding_window_matches_naive_reference(rng, shape, patch, step, mirror, batch):
    image = rng.standard_normal(shape).astype(np.float32)
    nets = [PositionNet(rng, shape[0], 3, patch), PositionNet(rng, shape[0], 3, patch)]
    got = predict_sliding_window(image, nets, patch_size=patch, num_classes=3, step=step, mirror_axes=mirror,
                                 batch_size=batch, output="probabilities")
    want = naive_sliding(image, nets, patch, 3, step, mirror)
    assert got.shape == (3, *shape[1:]) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
    np.testing.assert_allclose(got.sum(0), 1, atol=1e-5)


def test_batch_size_does_not_change_the_result(rng):
    image = rng.standard_normal((1, 10, 20, 20)).astype(np.float32)
    net = PositionNet(rng, 1, 4, (4, 8, 8))
    runs = [predict_sliding_window(image, [net], patch_size=(4, 8, 8), num_classes=4, mirror_axes=(0, 1, 2),
                                   batch_size=b) for b in (1, 3, 8, 1000)]
    for r in runs[1:]:
        np.testing.assert_allclose(r, runs[0], rtol=1e-6, atol=1e-7)


def test_batching_cuts_network_calls(rng):
    image = rng.standard_normal((1, 8, 16, 16)).astype(np.float32)
    net = PositionNet(rng, 1, 2, (4, 8, 8))
    predict_sliding_window(image, [net], patch_size=(4, 8, 8), num_classes=2, mirror_axes=(0, 1, 2), batch_size=8)
    n_tiles = 3 * 3 * 3
    assert net.calls == n_tiles  # one call per tile: its 8 flips in one batch


def test_tta_on_a_flip_equivariant_net_changes_nothing(rng):
    image = rng.standard_normal((2, 9, 14, 15)).astype(np.float32)
    net = PointwiseNet(rng, 2, 3)
    plain = predict_sliding_window(image, [net], patch_size=(4, 8, 8), num_classes=3, mirror_axes=())
    tta = predict_sliding_window(image, [net], patch_size=(4, 8, 8), num_classes=3, mirror_axes=(0, 1, 2))
    np.testing.assert_allclose(tta, plain, rtol=1e-5, atol=1e-6)
    # and both equal the network applied to the whole volume at once (weights cancel for a pointwise net)
    np.testing.assert_allclose(plain, net(image[None])[0], rtol=1e-5, atol=1e-6)


def test_tta_matters_for_a_position_dependent_net(rng):
    image = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    net = PositionNet(rng, 1, 3, (8, 8, 8))
    plain = predict_sliding_window(image, [net], patch_size=(8, 8, 8), num_classes=3, mirror_axes=())
    tta = predict_sliding_window(image, [net], patch_size=(8, 8, 8), num_classes=3, mirror_axes=(0, 1, 2))
    assert np.abs(tta - plain).max() > 1e-2


def test_folds_are_averaged(rng):
    image = rng.standard_normal((1, 10, 12, 12)).astype(np.float32)
    nets = [PositionNet(rng, 1, 3, (4, 8, 8)) for _ in range(3)]
    kw = dict(patch_size=(4, 8, 8), num_classes=3, mirror_axes=(0, 2))
    together = predict_sliding_window(image, nets, **kw)
    alone = [predict_sliding_window(image, [n], **kw) for n in nets]
    np.testing.assert_allclose(together, np.mean(alone, axis=0), rtol=1e-5, atol=1e-6)


def test_models_are_consumed_lazily_one_at_a_time(rng):
    image = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    live = []

    def fold_generator():
        for seed in range(3):
            live.append(seed)
            yield PointwiseNet(np.random.default_rng(seed), 1, 2)
            live.remove(seed)

    predict_sliding_window(image, fold_generator(), patch_size=(8, 8, 8), num_classes=2)
    assert live == []


@pytest.mark.parametrize("output", ["logits", "auto"])
def test_logits_get_a_softmax_per_tile(rng, output):
    image = rng.standard_normal((1, 9, 10, 11)).astype(np.float32)
    net = PositionNet(rng, 1, 3, (4, 8, 8), logits=True)
    got = predict_sliding_window(image, [net], patch_size=(4, 8, 8), num_classes=3, mirror_axes=(1,), output=output)
    want = naive_sliding(image, [net], (4, 8, 8), 3, 0.5, (1,), logits=True)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


def test_stopwatch_splits_network_and_tiling_time(rng):
    image = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    watch = Stopwatch()
    predict_sliding_window(image, [PointwiseNet(rng, 1, 2)], patch_size=(4, 4, 4), num_classes=2, stopwatch=watch)
    assert set(watch.seconds) == {"predictor", "tiling"} and watch.seconds["predictor"] > 0


def test_label_output_is_refused(rng):
    def argmax_net(batch):
        return np.zeros((batch.shape[0], 1, *batch.shape[2:]), np.int64)

    with pytest.raises(FormatError, match="output_op"):
        predict_sliding_window(np.zeros((1, 4, 4, 4), np.float32), [argmax_net], patch_size=(4, 4, 4), num_classes=3)


def test_wrong_class_count_is_named(rng):
    with pytest.raises(ValidationError, match="outputs 2 channels but the plans have 3"):
        predict_sliding_window(np.zeros((1, 4, 4, 4), np.float32), [PointwiseNet(rng, 1, 2)], patch_size=(4, 4, 4),
                               num_classes=3)


@pytest.mark.parametrize("kwargs,match", [
    ({"step": 0.0}, "step"), ({"step": 1.5}, "step"), ({"batch_size": 0}, "batch_size"),
    ({"patch_size": (4, 4)}, "patch_size"), ({"mirror_axes": (3,)}, "mirror_axes"), ({"output": "labels"}, "output"),
])
def test_bad_arguments(rng, kwargs, match):
    args = dict(patch_size=(4, 4, 4), num_classes=2)
    args.update(kwargs)
    with pytest.raises(ValidationError, match=match):
        predict_sliding_window(np.zeros((1, 4, 4, 4), np.float32), [PointwiseNet(rng, 1, 2)], **args)


def test_no_model_is_an_error():
    with pytest.raises(ValidationError, match="empty"):
        predict_sliding_window(np.zeros((1, 4, 4, 4), np.float32), [], patch_size=(4, 4, 4), num_classes=2)
