"""The lazy ``paddle`` import and its version: the only inference module that touches Paddle itself, so that
:mod:`.config` (which asks for the version) and :mod:`.models` (which loads models) need not import each other."""

from __future__ import annotations

import re
from types import ModuleType

from .._core.optional import import_optional

__all__ = ["import_paddle", "paddle_version"]


def import_paddle() -> ModuleType:
    """``paddle`` (lazy, with an install hint when missing)."""
    return import_optional("paddle", purpose="running exported Paddle models")


def paddle_version() -> tuple[int, int, int]:
    """Installed Paddle's ``(major, minor, patch)``; ``(0, 0, 0)`` for a development build."""
    paddle = import_paddle()
    text = str(getattr(paddle, "__version__", "0.0.0"))
    nums = [int(m) for m in re.findall(r"\d+", text)[:3]]
    while len(nums) < 3:
        nums.append(0)
    return (nums[0], nums[1], nums[2])
