"""``medfuse infer``: run exported Paddle models (folds averaged) on a folder of images."""

from __future__ import annotations

import argparse
import sys

NAME = "infer"
HELP = "run exported PaddleSeg MedicalSeg / nnU-Net models (2D, 3D, cascade) on a folder of images"
#: API spellings in messages -> this command's arguments
FLAG_NAMES = {"overwrite=True": "--overwrite", "`overwrite`": "`--overwrite`", "`output`": "`-o/--output`",
              "`images`": "`--images`", "`lowres`": "`--lowres`", "`plans`": "`--plans`", "`stage`": "`--stage`",
              "`device`": "`--device`", "`step`": "`--step`", "`batch_size`": "`--batch-size`",
              "`threads`": "`--threads`", "`gpu_id`": "`--gpu-id`", "`onednn`": "`--onednn`",
              "`folds_resident`": "`--folds-resident`", "`cases`": "`--cases`", "`models`": "`--model`",
              "`model`": "`--model`"}
EPILOG = """examples:
  # 3D full-res, five folds averaged, probabilities kept for fusion
  medfuse infer --model 3d_fullres/fold_0 ... --model 3d_fullres/fold_4 \\
      --plans nnUNetPlansv2.1_plans_3D.pkl --stage 1 --images imagesTs -o pred_3d --save-probabilities
  # a folder whose subfolders are the folds
  medfuse infer --model 2d --plans nnUNetPlansv2.1_plans_2D.pkl --stage 0 --images imagesTs -o pred_2d
  # cascade: low-res first, then full-res fed with the low-res segmentation
  medfuse infer --model lowres --plans plans_3D.pkl --stage 0 --images imagesTs -o pred_lowres
  medfuse infer --model cascade --plans plans_3D.pkl --stage 1 --images imagesTs -o pred_cascade \\
      --lowres pred_lowres --save-probabilities

Images use nnU-Net names: <case>_0000.nii.gz (one file per modality: _0001, ...); outputs are
<case>.nii.gz (+ <case>.npz and <case>.pkl with --save-probabilities): PaddleSeg's v1 layout, which
'medfuse fuse' and PaddleSeg's ensembling read. Device 'auto' uses a GPU when Paddle has CUDA and sees one.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", "-m", action="append", required=True, metavar="DIR",
                        help="exported model folder (model.pdmodel or model.json + model.pdiparams, or a PaddleSeg "
                             "export with deploy.yaml); repeat for each fold, or give a folder of fold subfolders")
    parser.add_argument("--plans", required=True, metavar="PLANS.pkl",
                        help="the nnUNetPlansv2.1_plans_{2D,3D}.pkl the models were trained with")
    parser.add_argument("--stage", type=int, required=True, metavar="N",
                        help="plans stage of the models: in a two-stage 3D plan 0 = cascade low-res and 1 = full-res "
                             "or cascade full-res; 2D and one-stage 3D plans: 0")
    parser.add_argument("--images", required=True, metavar="DIR", help="folder of <case>_0000.nii.gz images")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--lowres", metavar="DIR",
                        help="cascade full-res: folder of the low-res stage's <case>.nii.gz predictions")
    parser.add_argument("--save-probabilities", action="store_true",
                        help="also write <case>.npz (softmax, float16, crop box) and <case>.pkl for fusion")
    parser.add_argument("--no-tta", dest="tta", action="store_false",
                        help="no mirror test-time augmentation (8x faster in 3D, 4x in 2D; slightly worse)")
    parser.add_argument("--step", type=float, default=0.5, help="sliding-window step, fraction of the patch "
                                                                "(default 0.5)")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--overwrite", action="store_true", help="recompute cases finished by an earlier run")
    dev = parser.add_argument_group("device")
    dev.add_argument("--device", choices=("auto", "gpu", "cpu"), default="auto",
                     help="auto (default): the GPU when Paddle is built with CUDA and sees one, else the CPU")
    dev.add_argument("--gpu-id", type=int, default=0, metavar="N", help="GPU to use (default 0)")
    dev.add_argument("--fp16", action="store_true", help="half-precision inference on the GPU")
    dev.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: every core)")
    dev.add_argument("--onednn", choices=("auto", "on", "off"), default="auto",
                     help="oneDNN CPU kernels (auto: on unless the model cannot run with them)")
    dev.add_argument("--batch-size", type=int, metavar="N", help="tiles per network call (default: automatic)")
    dev.add_argument("--folds-resident", choices=("auto", "all", "one"), default="auto",
                     help="keep every fold loaded (all) or load one at a time (one: less memory); auto: all on "
                          "CPU, one on GPU")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from ..inference import Predictor
    from ._common import check_output_folder

    check_output_folder(args.output, flag="-o/--output")  # refuse before loading the models, not after
    cases = [c for c in args.cases.split(",") if c] if args.cases else None
    predictor = Predictor(
        args.model, plans=args.plans, stage=args.stage, device=args.device, fp16=args.fp16, threads=args.threads,
        onednn=args.onednn, tta=args.tta, step=args.step, batch_size=args.batch_size,
        folds_resident=args.folds_resident, gpu_id=args.gpu_id,
    )
    with predictor:
        plan = predictor.config[0]
        where = (f"GPU {plan.gpu_id}{' fp16' if plan.fp16 else ''}" if plan.device == "gpu"
                 else f"CPU, {plan.threads} threads, oneDNN {'on' if plan.onednn else 'off'}")
        kind = "cascade full-res" if predictor.is_cascade else f"{predictor.spatial_dims}D"
        print(f"medfuse infer: {len(predictor.models)} fold(s), {kind}, patch {list(predictor.patch_size)}, "
              f"{where}, TTA {'on' if args.tta else 'off'}", file=sys.stderr)
        for p in predictor.config:
            for note in p.notes:
                print(f"medfuse infer: {note}", file=sys.stderr)
        report = predictor.predict_folder(
            args.images, args.output, lowres=args.lowres, save_probabilities=args.save_probabilities,
            overwrite=args.overwrite, cases=cases, progress=args.progress,
        )
    t = report.timings
    print(f"predicted {len(report.written)} cases into {report.output} ({len(report.skipped)} already done); "
          f"network {t.predictor:.1f} s, around it {t.preprocess + t.tiling + t.resample:.1f} s, "
          f"files {t.read + t.write:.1f} s")
    return 0
