"""``cyclestream distill``: its flags, the TrainOptions they make, and the run (train, then evaluate).

The flags not listed here behave as ``cyclestream train``'s do; the student's defaults differ from a
CycleGAN's (a mobile ResNet, ngf 16, 4 blocks; batch 4; 10 + 10 epochs).  This module imports no
torch (``cyclestream --help`` stays fast).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEMO_CLIP
from cyclestream.trainer.options import (
    DataOptions,
    DistillOptions,
    ModelOptions,
    OptimOptions,
    TrainOptions,
    TrainRunOptions,
    _non_negative,
    _positive,
    add_device_arguments,
    add_process_arguments,
)

log = logging.getLogger("cyclestream")


def add_distill_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("teacher", type=Path, metavar="TEACHER",
                   help="the generator to distil (an official .pth or a cyclestream model)")
    p.add_argument("--data", type=Path, required=True,
                   help="folder of source-domain images (and videos: every 4th frame is used)")
    p.add_argument("--out", type=Path, required=True, help="run folder: student.safetensors, state.pt, samples, logs")
    g = p.add_argument_group("student")
    g.add_argument("--arch", choices=["resnet", "mobile"], default="mobile",
                   help="mobile (depthwise-separable residual blocks, default) or resnet")
    g.add_argument("--ngf", type=_positive, default=16, help="student width (default 16)")
    g.add_argument("--n-blocks", type=_non_negative, default=4, help="student residual blocks (default 4)")
    g.add_argument("--init", type=Path, help="start from this student's weights (same --arch/--ngf/--n-blocks), "
                   "e.g. to fine-tune a finished run with other losses")
    g = p.add_argument_group("losses")
    g.add_argument("--lambda-recon", type=float, default=10.0, help="L1 to the teacher's output (default 10)")
    g.add_argument("--lambda-feat", type=float, default=1.0, help="feature distillation (default 1)")
    g.add_argument("--lambda-gan", type=float, default=1.0, help="adversarial term (default 1)")
    g.add_argument("--feat-layers", type=_non_negative, default=4, help="residual-block outputs distilled (default 4)")
    g.add_argument("--ndf", type=_positive, default=64, help="discriminator width (default 64)")
    g.add_argument("--n-layers-d", type=_positive, default=3, help="PatchGAN layers (default 3)")
    g = p.add_argument_group("data and optimisation")
    g.add_argument("--crop-size", type=_positive, help="random crops of this size (default 256)")
    g.add_argument("--load-size", type=_positive, help="after resizing to this square (default crop × 286/256)")
    g.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    g.add_argument("--workers", type=_non_negative, default=0, help="data loader processes (default 0)")
    g.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    g.add_argument("--epochs", type=_non_negative, help="epochs at the initial rate (default 10)")
    g.add_argument("--epochs-decay", type=_non_negative, help="then epochs of linear decay to 0 (default 10)")
    g.add_argument("--batch-size", type=_positive, help="images per step (default 4; see --ddp-recipe)")
    g = p.add_argument_group("run")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its state.pt")
    g.add_argument("--max-iters", type=_non_negative, default=0, help="stop after N iterations (checkpointed)")
    g.add_argument("--save-every-iters", type=_non_negative, default=0,
                   help="also checkpoint every N iterations (default: only at the end of each epoch)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--threads", type=_positive, help="torch threads per process (default: torch's choice)")
    add_device_arguments(g)
    add_process_arguments(g)
    g.add_argument("--samples", type=_non_negative, default=4, help="images per epoch sample grid (default 4)")
    g = p.add_argument_group("evaluation (written to RUN/evaluation.json)")
    g.add_argument("--holdout", type=Path, default=DEMO_CLIP,
                   help="held-out video or image folder for PSNR/SSIM to the teacher (default: the demo clip)")
    g.add_argument("--eval-backends", default="eager,onnxruntime,openvino",
                   help="comma list of backends to time the student on (default eager,onnxruntime,openvino)")
    g.add_argument("--eval-seconds", type=float, default=1.0, help="timing per backend, seconds (default 1)")
    g.add_argument("--no-eval", action="store_true", help="skip the evaluation")


def distill_options(args: argparse.Namespace, progress: bool = True) -> TrainOptions:
    return TrainOptions(
        data=DataOptions(data=args.data, load_size=args.load_size, crop_size=args.crop_size, flip=args.flip,
                         workers=args.workers),
        model=ModelOptions(model="distill", ngf=args.ngf, n_blocks=args.n_blocks, ndf=args.ndf,
                           n_layers_d=args.n_layers_d),
        optim=OptimOptions(lr=args.lr, epochs=args.epochs, epochs_decay=args.epochs_decay, batch_size=args.batch_size),
        run=TrainRunOptions(out=args.out, resume=args.resume, save_every_iters=args.save_every_iters,
                            max_iters=args.max_iters, seed=args.seed, threads=args.threads, device=args.device,
                            deterministic=args.deterministic, nproc=args.nproc, ddp_recipe=args.ddp_recipe,
                            progress=progress, samples=args.samples),
        distill=DistillOptions(teacher=args.teacher, arch=args.arch, lambda_recon=args.lambda_recon,
                               lambda_feat=args.lambda_feat, lambda_gan=args.lambda_gan,
                               feat_layers=args.feat_layers, init=args.init),
    )


def run_distill(args: argparse.Namespace, progress: bool = True) -> dict[str, Any]:
    """Distil (a Ctrl-C stops after the iteration with a checkpoint and the student written), then evaluate
    the student.  Returns what the command reports: the training result and the evaluation (or None)."""
    from cyclestream.trainer.distill import STUDENT_FILE
    from cyclestream.trainer.loop import train

    options = distill_options(args, progress)
    result = train(options, finish_on_interrupt=True)
    student = result.run_dir / STUDENT_FILE
    evaluation = None
    if not args.no_eval and student.exists():
        from cyclestream.trainer.distill_eval import evaluate_student, write_evaluation

        backends = [b for b in args.eval_backends.split(",") if b]
        log.info("evaluating %s against the teacher on %s", student, args.holdout)
        evaluation = evaluate_student(student, args.teacher, args.holdout, args.data, backends,
                                      min_time=args.eval_seconds)
        write_evaluation(result.run_dir, evaluation)
    return {"result": result, "student": student, "evaluation": evaluation}
