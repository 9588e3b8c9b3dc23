"""The folder workflow from Python: model folders -> fused folder -> scores -> submission.

Writes three simulated models' PaddleSeg-style (v1) prediction folders for two synthetic cases into a
temporary folder, then does what a team does with its real folders, and removes the folder at the end.

    python examples/folder_workflow.py
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

import medfuse
from medfuse import io, synthetic

root = Path(tempfile.mkdtemp(prefix="medfuse-example-"))
models = {"2d": 0.85, "3d_fullres": 0.92, "cascade_fullres": 0.9}
for i in range(2):
    ph = synthetic.phantom((32, 96, 96), seed=i, direction=(1, 0, 0, 0, -1, 0, 0, 0, 1))
    io.write_nifti(root / "labelsTr" / f"case_{i}.nii.gz", ph.labels, ph.geometry)
    io.write_nifti(root / "imagesTs" / f"case_{i}_0000.nii.gz", ph.image.astype(np.int16), ph.geometry)
    box = (slice(None), *(slice(a, b) for a, b in ph.crop_bbox))
    for m, (name, quality) in enumerate(models.items()):
        probs = synthetic.simulate_probabilities(ph, quality=quality, seed=10 * i + m)
        io.write_v1_case(root / name, f"case_{i}", probabilities=probs[box], geometry=ph.geometry,
                         crop_bbox=ph.crop_bbox)

# --- what a team runs on its own folders -------------------------------------------------------------
members = [root / name for name in models]
medfuse.fuse_folders(members, root / "fused", weights=[1, 2, 2], progress=False)
for folder in [*members, root / "fused"]:
    ev = medfuse.evaluate_folder(root / "labelsTr", folder, progress=False)
    print(f"{folder.name:16s} foreground mean Dice {ev.foreground_mean_dice:.4f}")
report = medfuse.make_submission(root / "fused", root / "submission.zip", images=root / "imagesTs")
print(f"submission: {report.path} ({len(report.cases)} cases, checked against the test images)")
shutil.rmtree(root)  # everything above was written under root
