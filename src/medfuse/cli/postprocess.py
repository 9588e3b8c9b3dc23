"""``medfuse postprocess``: apply ``postprocessing.json`` (v1) or ``postprocessing.pkl`` (v2) to a folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import ValidationError
from ._common import check_output_folder

NAME = "postprocess"
HELP = ("keep the largest connected component as a postprocessing.json (PaddleSeg / nnU-Net v1) or "
        "postprocessing.pkl (nnU-Net v2) says, for a folder of label maps")
#: API spellings in messages -> this command's arguments
FLAG_NAMES = {"`postprocessing`": "`--postprocessing`", "`connectivity`": "`--connectivity`",
              "`output`": "`--output`", "`spacing_mm`": "the images' spacing"}
EPILOG = """examples:
  medfuse postprocess fused/ -o fused_pp/ --postprocessing search_out/postprocessing.json
  medfuse postprocess ensemble/ -o ensemble_pp/ --postprocessing crossval_results/postprocessing.pkl

Reads every <case>.nii.gz (.nii, .nrrd, .mha) label map of INPUT and writes the postprocessed map under the
same name into OUTPUT (a new or empty folder, never INPUT), each file atomically and verified, with the
input's geometry. nnU-Net v2 pickles are read with a restricted unpickler: only nnU-Net v2's
remove_all_but_largest_component_from_segmentation steps are understood (and applied by medfuse); any other
callable is refused without being loaded.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="folder of <case>.nii.gz label maps (read only)")
    parser.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                        help="new or empty folder for the postprocessed label maps")
    parser.add_argument("--postprocessing", required=True, metavar="FILE",
                        help="postprocessing.json (nnU-Net v1 / PaddleSeg) or postprocessing.pkl (nnU-Net v2)")
    parser.add_argument("--connectivity", type=int, choices=(6, 18, 26),
                        help="connectivity of components (default: 6 for .json as nnU-Net v1, 26 for .pkl as v2)")


def _label_maps(folder: Path) -> list[Path]:
    from ..io.nifti import IMAGE_ENDINGS

    if not folder.is_dir():
        raise ValidationError(f"INPUT {str(folder)!r} is not a folder; give the folder of <case>.nii.gz label maps.")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_ENDINGS))
    if not files:
        raise ValidationError(f"INPUT {str(folder)!r} holds no label maps (<case>.nii.gz, .nii, .nrrd, .mha); "
                              "give the folder your predictions were written to.")
    return files


def _check_not_inside(src: Path, out: Path) -> None:
    a, b = src.resolve(), out.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise ValidationError(f"`output` {str(out)!r} must be a folder apart from INPUT {str(src)!r} (not the "
                              "same, not inside it, not around it): postprocessing never writes into its input.")


def run(args: argparse.Namespace) -> int:
    from .. import io
    from ..postprocess import keep_largest_component, read_any_postprocessing

    src, out = Path(args.input), Path(args.output)
    _check_not_inside(src, out)
    pp, default_conn = read_any_postprocessing(args.postprocessing)
    files = _label_maps(src)
    if out.exists() and out.is_dir() and any(out.iterdir()):
        raise ValidationError(f"`output` {str(out)!r} is not empty; give a new or empty folder.")
    check_output_folder(out, flag="-o/--output")
    connectivity = args.connectivity or default_conn
    changed = removed = 0
    for path in files:
        labels, geometry = io.read_nifti(path)
        result = keep_largest_component(
            labels, for_which_classes=pp.for_which_classes, connectivity=connectivity,
            min_valid_object_sizes=pp.min_valid_object_sizes, spacing_mm=geometry.spacing,
        ) if pp.for_which_classes else labels
        gone = int((result != labels).sum())
        changed += gone > 0
        removed += gone
        io.write_nifti(out / path.name, result, geometry)
    steps = ", ".join(str(list(e)) if isinstance(e, tuple) else str(e) for e in pp.for_which_classes) or "none"
    print(f"postprocessed {len(files)} label maps (largest component of: {steps}; {connectivity}-connectivity): "
          f"{removed} voxels set to background in {changed} of them; wrote {out}")
    return 0
