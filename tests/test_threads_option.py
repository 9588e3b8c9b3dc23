"""``threads=`` is accepted the same way wherever it is offered (search, inference): None or a positive int."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse._core.validation import as_threads
from medfuse.errors import ValidationError
from medfuse.inference import PaddleEnvironment, plan_config
from medfuse.search import OutOfFold, search_ensembles

BAD = [0, -2, 1.5, True, "4"]


@pytest.mark.parametrize("value", [None, 1, 3, np.int64(2)])
def test_good_values(value):
    assert as_threads(value) == (None if value is None else int(value))


@pytest.mark.parametrize("value", BAD)
def test_bad_values_name_the_argument_and_the_fix(value):
    with pytest.raises(ValidationError, match=r"`threads` must be a positive integer, or None .*threads=4"):
        as_threads(value)


@pytest.mark.parametrize("value", BAD)
def test_inference_and_search_refuse_the_same_values_with_the_same_message(value):
    env = PaddleEnvironment(version=(2, 6, 0), cuda=False, gpu_count=0)
    with pytest.raises(ValidationError, match=r"`threads` must be a positive integer, or None"):
        plan_config(environment=env, model_format="pdmodel", device="cpu", threads=value)
    ref = np.zeros((2, 3, 4), np.uint8)
    oof = OutOfFold.from_arrays({"c0": ref}, {"a": {"c0": ref}}, folds={"c0": 0})
    with pytest.raises(ValidationError, match=r"`threads` must be a positive integer, or None"):
        search_ensembles(oof, threads=value)
