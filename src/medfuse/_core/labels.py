"""The integer type of label maps: uint8 while every label fits, else uint16 (what the models' writers use).

One rule for the whole package: fusion outputs, label maps read from files and label maps written to them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ValidationError

__all__ = ["MAX_LABEL_CLASSES", "label_dtype"]

#: labels ``0 .. 65535``: the most classes a uint16 label map holds (fusion's limit on ``num_classes``)
MAX_LABEL_CLASSES = int(np.iinfo(np.uint16).max) + 1


def label_dtype(largest_label: int) -> np.dtype[Any]:
    """uint8 for labels up to 255, uint16 up to 65535.

    Raises
    ------
    ValidationError
        ``largest_label`` above 65535: no label map type holds it.
    """
    if largest_label <= np.iinfo(np.uint8).max:
        return np.dtype(np.uint8)
    if largest_label < MAX_LABEL_CLASSES:
        return np.dtype(np.uint16)
    raise ValidationError(
        f"label values must be at most {MAX_LABEL_CLASSES - 1} to be stored as a (uint16) label map; "
        f"got {largest_label}. Relabel to consecutive class indices."
    )
