"""medfuse.metrics against SimpleITK's LabelOverlapMeasuresImageFilter, and on the real competition files."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.metrics import confusion_matrix, dice, overlap

sitk = pytest.importorskip("SimpleITK")


@pytest.fixture(autouse=True)
def _quiet_itk():
    # ITK warns "Label N not found" for labels absent from both images; we never compare those
    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    yield
    sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def sitk_dice(reference: np.ndarray, prediction: np.ndarray, labels: list[int]) -> dict[int, float]:
    f = sitk.LabelOverlapMeasuresImageFilter()
    # SimpleITK: first image = "source" (the segmentation), second = "target" (the reference); Dice is symmetric
    f.Execute(sitk.GetImageFromArray(prediction), sitk.GetImageFromArray(reference))
    return {lab: f.GetDiceCoefficient(lab) for lab in labels}


def present_foreground(reference: np.ndarray, prediction: np.ndarray) -> list[int]:
    return sorted({int(v) for v in np.union1d(np.unique(reference), np.unique(prediction))} - {0})


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int32, np.int64])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 11, 13), (20, 64, 70)])
def test_dice_equals_simpleitk(rng, dtype, shape):
    k = 9
    reference = rng.integers(0, k, size=shape).astype(dtype)
    smooth = np.repeat(rng.integers(0, k, size=(*shape[:-1], shape[-1] // 5 + 1)), 5, axis=-1)[..., : shape[-1]]
    prediction = np.where(rng.random(shape) < 0.5, reference, smooth).astype(dtype)
    labels = present_foreground(reference, prediction)
    ours = dice(reference, prediction)
    assert list(ours) == labels
    theirs = sitk_dice(reference, prediction, labels)
    for lab in labels:
        assert abs(ours[lab] - theirs[lab]) <= 1e-12, (lab, ours[lab], theirs[lab])


def test_dice_equals_simpleitk_when_one_side_is_empty(rng):
    reference = rng.integers(0, 4, size=(6, 7, 8)).astype(np.uint8)
    prediction = reference.copy()
    prediction[prediction == 3] = 0  # label 3: reference only
    prediction[0, 0, :4] = 5  # label 5: prediction only
    ours = dice(reference, prediction)
    theirs = sitk_dice(reference, prediction, [1, 2, 3, 5])
    assert ours[3] == theirs[3] == 0.0 and ours[5] == theirs[5] == 0.0
    assert abs(ours[1] - theirs[1]) <= 1e-12 and abs(ours[2] - theirs[2]) <= 1e-12


def _read(path):
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


@pytest.mark.real_data
def test_real_empty_prediction_scores_zero_for_every_label(real_data):
    reference, ref_image = _read(real_data / "case_labels.nii.gz")
    prediction, _ = _read(real_data / "case_empty_prediction.nii.gz")
    assert reference.shape == prediction.shape and not prediction.any()
    labels = present_foreground(reference, prediction)
    assert len(labels) >= 5  # an abdominal CT label map with organs
    spacing = ref_image.GetSpacing()[::-1]
    result = overlap(reference, prediction, spacing_mm=spacing)
    assert list(result.labels) == labels
    counts = np.bincount(reference.ravel())
    voxel_mm3 = float(np.prod(spacing))
    for lab in labels:
        entry = result[lab]
        assert entry.dice == 0.0 and entry.iou == 0.0 and entry.recall == 0.0 and entry.precision == 0.0
        assert (entry.tp, entry.fp, entry.fn) == (0, 0, counts[lab])
        assert entry.reference_volume_mm3 == pytest.approx(counts[lab] * voxel_mm3)
    assert dice(reference, prediction, empty="one") == dict.fromkeys(labels, 0.0)  # the reference has them
    assert result.foreground_mean() == 0.0
    theirs = sitk_dice(reference, prediction, labels)
    assert all(v == 0.0 for v in theirs.values())


@pytest.mark.real_data
def test_real_label_map_against_simpleitk_and_bincount(real_data):
    reference, _ = _read(real_data / "case_labels.nii.gz")
    prediction = np.roll(reference, shift=(1, -3, 2), axis=(0, 1, 2))  # a plausible, slightly shifted prediction
    k = int(reference.max()) + 1
    expected = np.bincount(reference.astype(np.int64).ravel() * k + prediction.ravel(), minlength=k * k)
    np.testing.assert_array_equal(confusion_matrix(reference, prediction), expected.reshape(k, k))
    labels = present_foreground(reference, prediction)
    ours = dice(reference, prediction)
    theirs = sitk_dice(reference, prediction, labels)
    for lab in labels:
        assert abs(ours[lab] - theirs[lab]) <= 1e-12
        assert 0.0 < ours[lab] < 1.0
    assert dice(reference, reference) == dict.fromkeys(labels, 1.0)
