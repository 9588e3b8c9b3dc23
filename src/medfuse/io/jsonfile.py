"""JSON files written atomically (temporary file, then rename), with numpy scalars, arrays and paths allowed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from .._core.atomic import atomic_write

__all__ = ["json_default", "write_json"]


def write_json(path: Path, data: Any) -> None:
    with atomic_write(path) as tmp:
        Path(tmp).write_text(json.dumps(data, indent=2, default=json_default) + "\n")


def json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
