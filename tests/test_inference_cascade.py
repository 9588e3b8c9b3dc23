"""The cascade full-res input: the low-res segmentation is cropped to the image's crop box BEFORE it is
resized onto the network grid. PaddleSeg MedicalSeg / nnU-Net v1 resize the whole map: misaligned."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.errors import GeometryMismatchError, ValidationError
from medfuse.inference.cascade import cascade_channels
from medfuse.inference.plans import Plans
from medfuse.inference.preprocess import preprocess
from medfuse.inference.resample import resize_labels
from medfuse.synthetic import phantom
from paddle_models import make_plans


def upstream_cascade_channels(lowres_labels, grid_shape, num_classes, transpose_forward=(0, 1, 2)):
    """What PaddleSeg MedicalSeg's / nnU-Net v1's test-time code does: resize the FULL-size low-res map onto
    the CROPPED grid, then one-hot labels 1..K."""
    resized = resize_labels(lowres_labels.transpose(transpose_forward), grid_shape)
    return np.stack([(resized == k).astype(np.float32) for k in range(1, num_classes + 1)])


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def case():
    # a large, asymmetric crop box, as the real competition case has ([[18, 107], [228, 579], [114, 615]])
    ph = phantom((24, 64, 64), num_labels=3, spacing=(2.5, 0.8, 0.8), seed=7,
                 crop_margin=((5, 1), (14, 3), (2, 16)))
    plans = Plans.from_dict(make_plans(num_classes=3))
    pre = preprocess(ph.image[None], ph.spacing, plans=plans, stage=1, extra_channels=3)
    return ph, plans, pre


def test_crop_box_is_not_trivial(case):
    ph, _, pre = case
    assert pre.crop_bbox == ph.crop_bbox != ((0, 24), (0, 64), (0, 64))


def test_medfuse_channels_are_aligned_and_upstream_ones_are_not(case):
    ph, plans, pre = case
    grid = pre.data.shape[1:]
    ours = cascade_channels(ph.labels, crop_bbox=pre.crop_bbox, grid_shape=grid, num_classes=3,
                            transpose_forward=plans.transpose_forward)
    theirs = upstream_cascade_channels(ph.labels, grid, 3)
    assert ours.shape == theirs.shape == (3, *grid) and ours.dtype == np.float32
    assert set(np.unique(ours)) <= {0.0, 1.0}
    # the truth on the network grid: the labels of the cropped region, brought onto the grid
    crop = ph.labels[tuple(slice(lo, hi) for lo, hi in ph.crop_bbox)]
    truth = resize_labels(crop, grid)
    for k in range(3):
        d_ours = _dice(ours[k] > 0, truth == k + 1)
        d_theirs = _dice(theirs[k] > 0, truth == k + 1)
        assert d_ours > 0.99, (k, d_ours)
        assert d_theirs < 0.8, (k, d_theirs)  # shifted and stretched by the crop
    # where the image has organ-like (soft tissue) intensity the aligned channels mostly say "organ"
    image = pre.data[0]
    body_organs = ours.max(0) > 0
    assert image[body_organs].std() < image.std()


def test_trivial_crop_gives_the_same_channels_as_upstream():
    ph = phantom((16, 32, 32), num_labels=2, seed=1, crop_margin=0)
    grid = (12, 20, 20)
    box = ((0, 16), (0, 32), (0, 32))
    ours = cascade_channels(ph.labels, crop_bbox=box, grid_shape=grid, num_classes=2)
    np.testing.assert_array_equal(ours, upstream_cascade_channels(ph.labels, grid, 2))


def test_channels_follow_the_transpose():
    lab = np.zeros((6, 8, 10), np.uint8)
    lab[1:3, 2:5, 6:9] = 1
    got = cascade_channels(lab, crop_bbox=((0, 6), (0, 8), (0, 10)), grid_shape=(10, 6, 8), num_classes=1,
                           transpose_forward=(2, 0, 1))
    np.testing.assert_array_equal(got[0], (lab.transpose(2, 0, 1) == 1).astype(np.float32))


def test_written_into_the_network_input(case):
    ph, _, pre = case
    data = pre.data.copy()
    cascade_channels(ph.labels, crop_bbox=pre.crop_bbox, grid_shape=data.shape[1:], num_classes=3, out=data[1:])
    np.testing.assert_array_equal(data[0], pre.data[0])
    assert data[1:].max() == 1


def test_bad_lowres_labels(case):
    ph, _, pre = case
    kw = dict(crop_bbox=pre.crop_bbox, grid_shape=pre.data.shape[1:], num_classes=3)
    with pytest.raises(ValidationError, match=r"labels 0\.\.3"):
        cascade_channels(ph.labels + 3, **kw)
    with pytest.raises(ValidationError, match="integer"):
        cascade_channels(ph.labels.astype(np.float32), **kw)
    with pytest.raises(ValidationError, match="3 dimensions"):
        cascade_channels(ph.labels[0], **kw)
    with pytest.raises(ValidationError, match="crop_bbox"):
        cascade_channels(ph.labels[:5], **kw)
    with pytest.raises(GeometryMismatchError, match="out"):
        cascade_channels(ph.labels, out=np.zeros((2, 3, 3, 3), np.float32), **kw)
