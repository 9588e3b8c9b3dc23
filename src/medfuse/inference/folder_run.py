"""The case loop of :meth:`Predictor.predict_folder`: one locked, journaled run over an output folder.

Like :func:`medfuse.fuse_folders`, a prediction folder resumes from its journal
(:mod:`medfuse.io.journal`), never from a directory listing: a case is skipped only when its record
carries the same settings (resolved images, low-res and model files, plans, stage, TTA, step, device
options, ``save_probabilities``, medfuse/numpy/Paddle versions) and its files still match their checksums.
The folder is locked for the whole run (:mod:`medfuse.io.lock`).
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._core.progress import progress_bar
from .._version import __version__
from .results import InferenceReport, Timings

__all__ = ["predict_folder_settings", "run_folder"]

# ``predictor`` below is a :class:`medfuse.inference.Predictor`; it is typed ``Any`` because runner.py imports
# this module (an annotation import back would be an import cycle).


def predict_folder_settings(predictor: Any, images: Path, lowres: Path | None, *, plans: Path | None,
                            save_probabilities: bool) -> dict[str, Any]:
    """What decides the bytes of a prediction folder: its fingerprint marks every journal record."""
    from ._paddle import paddle_version

    return {
        "job": "predict_folder", "images": str(images.resolve()),
        "lowres": None if lowres is None else str(lowres.resolve()),
        "models": [[str(m.model_file.resolve()), str(m.params_file.resolve())] for m in predictor.models],
        "plans": None if plans is None else str(plans.resolve()), "stage": predictor.stage.index,
        "mirror_axes": list(predictor.mirror_axes), "step": predictor.step,
        "model_output": predictor.model_output,
        "config": [[c.device, c.fp16, c.onednn] for c in predictor.config],
        "save_probabilities": bool(save_probabilities),
        "versions": {"medfuse": __version__, "numpy": np.__version__,
                     "paddle": ".".join(map(str, paddle_version()))},
    }


def run_folder(predictor: Any, found: Mapping[str, Sequence[Path]], low_files: Mapping[str, Path],
               out_dir: Path, *, settings: Mapping[str, Any], plans: Path | None, save_probabilities: bool,
               overwrite: bool, progress: bool) -> InferenceReport:
    """Predict the ``found`` cases not finished by an identical earlier run into ``out_dir`` (locked)."""
    from .. import io
    from ..io.journal import digest_files, journaled_run, v1_case_files

    extra = () if plans is None else (plans.name,)
    command = f"predict_folder (python {' '.join(sys.argv)})"[:300]
    written: list[str] = []
    total = Timings()
    with journaled_run(out_dir, settings, list(found), overwrite=overwrite, command=command,
                       extra_files=extra) as (journal, plan):
        if plans is not None:  # a copy, like PaddleSeg's predictor leaves one; rewritten every run
            with io.atomic_write(out_dir / plans.name) as tmp:
                shutil.copyfile(plans, tmp)
        journal.begin(plan.todo)
        for case in progress_bar(list(plan.todo), enabled=progress, total=len(plan.todo), desc="infer"):
            pred = predictor.predict_files(found[case], lowres=low_files.get(case), probability_dtype=np.float16,
                                           keep_probabilities=save_probabilities)
            t0 = time.perf_counter()
            props = pred.properties()
            props["list_of_data_files"] = [str(f) for f in found[case]]
            io.write_v1_case(out_dir, case, probabilities=pred.probabilities if save_probabilities else None,
                             labels=pred.labels, geometry=pred.geometry, crop_bbox=pred.crop_bbox,
                             extra_properties=props)
            journal.finish(case, digest_files(out_dir, v1_case_files(case)))
            total = total + pred.timings + Timings(write=time.perf_counter() - t0)
            written.append(case)
    return InferenceReport(output=out_dir, written=tuple(written), skipped=plan.done, timings=total,
                           config=predictor.config, models=predictor.models)
