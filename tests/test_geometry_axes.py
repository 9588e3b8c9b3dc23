"""The axis orders the Geometry docstring and docs/formats.md promise, checked against SimpleITK itself."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from medfuse import Geometry


def test_geometry_axis_orders_and_the_physical_point_formula(rng) -> None:
    array = np.zeros((4, 5, 6), np.uint8)  # (z, y, x)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.5, 0.7, 3.0))  # ITK (x, y, z)
    image.SetOrigin((10.0, -20.0, 30.0))
    image.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    g = Geometry.from_sitk(image)
    assert g.shape == array.shape == (4, 5, 6)
    assert g.spacing == (3.0, 0.7, 0.5)  # array order: slice thickness first
    assert g.itk_spacing == image.GetSpacing() and g.itk_size == image.GetSize()
    assert g.origin == image.GetOrigin() and g.direction == image.GetDirection()
    d = np.reshape(g.direction, (3, 3))
    for k, j, i in rng.integers(0, (4, 5, 6), (10, 3)):
        point = np.asarray(g.origin) + d @ (np.asarray(g.itk_spacing) * (i, j, k))
        np.testing.assert_allclose(point, image.TransformIndexToPhysicalPoint((int(i), int(j), int(k))))
