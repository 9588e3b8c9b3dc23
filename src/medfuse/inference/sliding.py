"""Sliding-window prediction with a Gaussian importance map and mirror test-time augmentation.

nnU-Net's scheme: pad the volume to at least the patch size (constant 0), tile it with a step of
``step * patch`` (the tiles spread evenly so that the last one ends at the border), predict each tile
under every flip of the mirror axes, un-flip and average the flips, weight the tile by a Gaussian centred
on it (sigma = patch / 8, normalised to max 1, zeros replaced by the smallest nonzero value), and divide
the weighted sum by the summed weights. Several models (folds) are averaged by running them into the same
accumulator, so memory does not grow with the number of folds.

The network is any callable taking a float32 ``(N, C_in, *patch)`` batch and returning ``(N, C, *patch)``.
2D networks run through the same code with a patch of depth 1 (see :func:`predict_sliding_window`).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from ..errors import FormatError, ValidationError

__all__ = [
    "BatchPredictor",
    "Stopwatch",
    "gaussian_importance_map",
    "mirror_combinations",
    "pad_widths",
    "predict_sliding_window",
    "tile_starts",
]

#: A network: float32 ``(N, C_in, *patch)`` -> ``(N, C, *patch)``.
BatchPredictor = Callable[[NDArray[np.float32]], NDArray[Any]]


@dataclass
class Stopwatch:
    """Seconds spent per phase (``predictor``, ``tiling``, ``preprocess``, ...), summed over calls."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds


def gaussian_importance_map(
    patch_size: Sequence[int], *, sigma_scale: float = 1.0 / 8, truncate: float = 4.0,
) -> NDArray[np.float32]:
    """nnU-Net's tile weight: a Gaussian centred on the patch, max 1, no zeros.

    It equals ``scipy.ndimage.gaussian_filter`` of a unit impulse at ``patch // 2`` with
    ``sigma = patch * sigma_scale`` (``truncate`` standard deviations), normalised to max 1, with zeros
    replaced by the smallest nonzero value; it is computed as an outer product of 1D Gaussians.

    Parameters
    ----------
    patch_size : sequence of int
    sigma_scale : float
        Standard deviation as a fraction of the patch size along each axis.
    truncate : float
        The Gaussian is zero beyond ``int(truncate * sigma + 0.5)`` voxels from the centre (as scipy).

    Returns
    -------
    ndarray of shape patch_size, float32
    """
    patch = tuple(int(p) for p in patch_size)
    if not patch or any(p < 1 for p in patch):
        raise ValidationError(f"`patch_size` must be positive integers; got {list(patch_size)}.")
    out = np.ones((), dtype=np.float64)
    for p in patch:
        sigma = p * sigma_scale
        d = np.arange(p, dtype=np.float64) - p // 2
        if sigma > 0:
            w = np.exp(-0.5 * (d / sigma) ** 2)
            w[np.abs(d) > int(truncate * sigma + 0.5)] = 0.0
        else:
            w = (d == 0).astype(np.float64)
        out = np.multiply.outer(out, w)
    g: NDArray[np.float32] = (out / out.max()).astype(np.float32)
    g[g == 0] = g[g > 0].min()
    return g


def tile_starts(size: int, patch: int, step: float) -> list[int]:
    """Start of each tile along one axis: evenly spread, ``<= step * patch`` apart, last one at the border.

    ``size`` must be >= ``patch`` (pad first). A patch of 1 moves one voxel at a time.
    """
    if size < patch:
        raise ValidationError(f"the axis ({size}) must be at least the patch size ({patch}); pad it first.")
    if size == patch:
        return [0]
    target = max(patch * step, 1.0)
    n = int(np.ceil((size - patch) / target)) + 1
    actual = (size - patch) / (n - 1)
    return [int(np.round(actual * i)) for i in range(n)]


def pad_widths(shape: Sequence[int], patch_size: Sequence[int]) -> tuple[tuple[int, int], ...]:
    """(before, after) padding per axis that brings ``shape`` up to at least ``patch_size`` (centred)."""
    out = []
    for s, p in zip(shape, patch_size, strict=True):
        diff = max(int(p) - int(s), 0)
        out.append((diff // 2, diff - diff // 2))
    return tuple(out)


def mirror_combinations(axes: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Every subset of the mirror ``axes``, the identity first: 8 flips for 3 axes, 4 for 2."""
    ax = tuple(sorted({int(a) for a in axes}))
    return tuple(c for r in range(len(ax) + 1) for c in itertools.combinations(ax, r))


def _softmax_inplace(x: NDArray[np.float32], axis: int) -> None:
    x -= x.max(axis=axis, keepdims=True)
    np.exp(x, out=x)
    x /= x.sum(axis=axis, keepdims=True)


def _looks_like_probabilities(out: NDArray[Any], axis: int) -> bool:
    if out.size == 0:
        return True
    if float(out.min()) < -1e-4 or float(out.max()) > 1 + 1e-4:
        return False
    s = out.sum(axis=axis, dtype=np.float64)
    return bool(np.abs(s - 1).max() < 1e-3)


def predict_sliding_window(
    image: NDArray[np.float32],
    models: Iterable[BatchPredictor],
    *,
    patch_size: Sequence[int],
    num_classes: int,
    step: float = 0.5,
    mirror_axes: Sequence[int] = (),
    batch_size: int = 1,
    output: Literal["auto", "probabilities", "logits"] = "auto",
    importance: NDArray[np.float32] | None = None,
    stopwatch: Stopwatch | None = None,
) -> NDArray[np.float32]:
    """Class probabilities of a whole volume from tile predictions, averaged over models and flips.

    Parameters
    ----------
    image : ndarray of shape (C_in, Z, Y, X), float32
        Network input (preprocessed modalities, plus cascade channels).
    models : iterable of callables
        Each maps a float32 ``(N, C_in, *patch_size)`` batch to ``(N, num_classes, *patch_size)``. They are
        used one after another (a generator may load each model when it is reached and drop it after),
        and their results are averaged.
    patch_size : sequence of 3 int
        Tile size. A 2D network runs with ``(1, py, px)``: each slice is tiled on its own (the callable
        then receives ``(N, C_in, 1, py, px)``).
    num_classes : int
        Output channels ``C`` (background included).
    step : float
        Tile step as a fraction of the patch, in (0, 1].
    mirror_axes : sequence of int
        Spatial axes (0, 1, 2) to flip for test-time augmentation; every combination is predicted.
        Empty: no augmentation.
    batch_size : int
        Tiles (tile x flip) per network call.
    output : {"auto", "probabilities", "logits"}
        What the network returns; logits get a softmax per tile (as nnU-Net). ``"auto"`` decides on the
        first batch (non-negative values summing to 1 over classes are probabilities).
    importance : ndarray of shape patch_size, float32, optional
        Tile weight (default :func:`gaussian_importance_map`).
    stopwatch : Stopwatch, optional
        Receives the seconds spent in the network (``predictor``) and around it (``tiling``).

    Returns
    -------
    ndarray of shape (C, Z, Y, X), float32
        Weighted mean probabilities (a view into a padded buffer when padding was needed).
    """
    patch, mirrors, g = _check_window_args(image, patch_size, step=step, batch_size=batch_size,
                                           num_classes=num_classes, output=output, mirror_axes=mirror_axes,
                                           importance=importance)
    clock = stopwatch if stopwatch is not None else Stopwatch()
    t_start = time.perf_counter()
    t_net = 0.0

    image = np.asarray(image, dtype=np.float32)
    spatial = image.shape[1:]
    pads = pad_widths(spatial, patch)
    padded = np.pad(image, ((0, 0), *pads)) if any(a or b for a, b in pads) else image
    pshape = padded.shape[1:]
    tiles = [
        (slice(None), *(slice(s, s + p) for s, p in zip(starts, patch, strict=True)))
        for starts in itertools.product(*(tile_starts(n, p, step) for n, p in zip(pshape, patch, strict=True)))
    ]
    n_mirror = len(mirrors)
    weighted = (g / np.float32(n_mirror)).astype(np.float32)
    agg = np.zeros((num_classes, *pshape), dtype=np.float32)
    norm = np.zeros(pshape, dtype=np.float32)
    for sl in tiles:
        norm[sl[1:]] += g
    items = [(t, m) for t in range(len(tiles)) for m in range(n_mirror)]
    c_in = image.shape[0]
    buf = np.empty((min(batch_size, len(items)), c_in, *patch), dtype=np.float32)
    acc = np.empty((num_classes, *patch), dtype=np.float32)
    in_axes = [tuple(a + 1 for a in m) for m in mirrors]   # spatial axis -> axis of a (C, ...) tile
    kind: str | None = None if output == "auto" else output
    n_models = 0
    for model in models:
        n_models += 1
        for b0 in range(0, len(items), buf.shape[0]):
            batch = items[b0:b0 + buf.shape[0]]
            for i, (t, m) in enumerate(batch):
                src = padded[tiles[t]]
                np.copyto(buf[i], np.flip(src, in_axes[m]) if in_axes[m] else src)
            t0 = time.perf_counter()
            out, kind = _run_batch(model, buf[: len(batch)], (len(batch), num_classes, *patch), kind)
            t_net += time.perf_counter() - t0
            for i, (t, m) in enumerate(batch):
                view = np.flip(out[i], in_axes[m]) if in_axes[m] else out[i]
                if m == 0:
                    np.copyto(acc, view)
                else:
                    acc += view
                if m == n_mirror - 1:
                    acc *= weighted
                    agg[tiles[t]] += acc
    if n_models == 0:
        raise ValidationError("`models` is empty; give at least one model (fold).")
    if n_models > 1:
        norm *= np.float32(n_models)
    agg /= norm
    inner = tuple(slice(a, n - b) for (a, b), n in zip(pads, pshape, strict=True))
    index = (slice(None), *inner)
    result = agg[index]
    clock.add("predictor", t_net)
    clock.add("tiling", time.perf_counter() - t_start - t_net)
    return result


def _check_window_args(
    image: NDArray[np.float32], patch_size: Sequence[int], *, step: float, batch_size: int, num_classes: int,
    output: str, mirror_axes: Sequence[int], importance: NDArray[np.float32] | None,
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...], NDArray[np.float32]]:
    """``(patch, mirror combinations, importance map)`` of :func:`predict_sliding_window`'s checked arguments."""
    if image.ndim != 4:
        raise ValidationError(f"`image` must have shape (C_in, Z, Y, X); got {image.shape}.")
    patch = tuple(int(p) for p in patch_size)
    if len(patch) != 3 or any(p < 1 for p in patch):
        raise ValidationError(f"`patch_size` must be 3 positive integers; got {list(patch_size)}.")
    if not 0 < step <= 1:
        raise ValidationError(f"`step` must be in (0, 1]; got {step}.")
    if batch_size < 1:
        raise ValidationError(f"`batch_size` must be >= 1; got {batch_size}.")
    if num_classes < 1:
        raise ValidationError(f"`num_classes` must be >= 1; got {num_classes}.")
    if output not in ("auto", "probabilities", "logits"):
        raise ValidationError(f"`output` must be 'auto', 'probabilities' or 'logits'; got {output!r}.")
    mirrors = mirror_combinations(mirror_axes)
    if any(a not in (0, 1, 2) for a in mirrors[-1]):
        raise ValidationError(f"`mirror_axes` must be spatial axes among 0, 1, 2; got {list(mirror_axes)}.")
    g = gaussian_importance_map(patch) if importance is None else np.asarray(importance, dtype=np.float32)
    if g.shape != patch:
        raise ValidationError(f"`importance` must have the patch's shape {patch}; got {g.shape}.")
    return patch, mirrors, g


def _run_batch(model: BatchPredictor, batch: NDArray[np.float32], expected: tuple[int, ...], kind: str | None
               ) -> tuple[NDArray[np.float32], str]:
    """The network's probabilities for ``batch`` (a softmax applied to logits) and the output kind, decided on
    the first batch when ``kind`` is None."""
    out = model(batch)
    _check_output(out, expected)
    if out.dtype != np.float32:
        out = out.astype(np.float32)
    if kind is None:
        kind = "probabilities" if _looks_like_probabilities(out, 1) else "logits"
    if kind == "logits":
        if not out.flags.writeable:
            out = out.copy()
        _softmax_inplace(out, 1)
    return out, kind


def _check_output(out: Any, expected: tuple[int, ...]) -> None:
    if not isinstance(out, np.ndarray):
        raise FormatError(f"the model must return a numpy array; got {type(out).__name__}.")
    if out.dtype.kind not in "f":
        raise FormatError(
            f"the model returns {out.dtype} values of shape {out.shape}, not class probabilities or logits; "
            "it was probably exported with an argmax at the end (PaddleSeg's default `--output_op argmax`). "
            "Re-export it with `--output_op softmax` (or `none`)."
        )
    if tuple(out.shape) != expected:
        if out.ndim == len(expected) and out.shape[0] == expected[0] and out.shape[2:] == expected[2:]:
            raise ValidationError(
                f"the model outputs {out.shape[1]} channels but the plans have {expected[1]} classes "
                f"(background + {expected[1] - 1} labels); are the plans and the model from the same training?"
            )
        raise ValidationError(
            f"the model returned an array of shape {tuple(out.shape)} for a batch that needs {expected} "
            "(N, classes, *patch); is the patch size right for this model?"
        )
