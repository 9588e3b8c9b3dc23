"""One label-map type rule for the package (``medfuse._core.labels``)."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse._core.labels import MAX_LABEL_CLASSES, label_dtype
from medfuse.errors import ValidationError


@pytest.mark.parametrize(("largest", "dtype"), [(0, np.uint8), (255, np.uint8), (256, np.uint16), (65535, np.uint16)])
def test_label_dtype_is_the_smallest_unsigned_type_that_holds_the_label(largest, dtype):
    assert label_dtype(largest) == np.dtype(dtype)


def test_label_dtype_refuses_labels_no_label_map_holds():
    assert MAX_LABEL_CLASSES == 65536
    with pytest.raises(ValidationError, match=r"at most 65535.*got 65536"):
        label_dtype(MAX_LABEL_CLASSES)
