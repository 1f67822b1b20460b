"""The `cyclestream` commands data, evaluate, train, distill: building data and models."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEMO_CLIP
from cyclestream.cli.options import add_run_options, int_in, parse_size, positive_int, run_options

log = logging.getLogger("cyclestream")

EMOJI_STYLES = ("twemoji", "noto", "openmoji")


def _add_data(sub: Any) -> None:
    p = sub.add_parser("data", help="build data: a two-style emoji dataset, the demo clip")
    kinds = p.add_subparsers(dest="data_command", required=True, metavar="KIND")
    e = kinds.add_parser("emoji", help="unpaired emoji dataset in two styles (trainA/B shuffled, testA/B paired)")
    e.add_argument("--from", dest="source", choices=EMOJI_STYLES, default="openmoji",
                   help="domain A style (default openmoji, the bundled model's input)")
    e.add_argument("--to", dest="target", choices=EMOJI_STYLES, default="twemoji",
                   help="domain B style (default twemoji)")
    e.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    e.add_argument("--size", type=positive_int, default=128, help="square image side in pixels (default 128)")
    e.add_argument("--test-fraction", type=float, default=0.1, help="share of emoji held out as pairs (default 0.1)")
    e.add_argument("--seed", type=int, default=0, help="seed of the split and shuffles (default 0)")
    e.add_argument("--limit", type=positive_int, help="use at most N emoji (small datasets for tests)")
    e.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    e.set_defaults(func=_cmd_data_emoji)
    c = kinds.add_parser("demo-clip", help="render the demo clip: moving emoji with a sound track")
    c.add_argument("--out", type=Path, default=DEMO_CLIP, help=f"output .mp4 (default {DEMO_CLIP})")
    c.add_argument("--style", choices=EMOJI_STYLES, default="openmoji",
                   help="emoji style (default openmoji, what the bundled model translates from)")
    c.add_argument("--seconds", type=float, default=6.0, help="length (default 6)")
    c.add_argument("--size", type=parse_size, default=(256, 256), help="WxH, even sides (default 256x256)")
    c.add_argument("--fps", type=positive_int, default=12, help="frames per second (default 12)")
    c.add_argument("--crf", type=int_in(0, 51), default=23, help="x264 constant quality 0-51 (default 23)")
    c.set_defaults(func=_cmd_data_demo_clip)


def _cmd_data_emoji(args: argparse.Namespace) -> int:
    from cyclestream.trainer.datasets.emoji import EmojiDatasetOptions, build_emoji_dataset

    options = EmojiDatasetOptions(args.source, args.target, args.size, args.test_fraction, args.seed,
                                  args.limit, args.overwrite, progress=not args.quiet)
    report = build_emoji_dataset(args.out, options)
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    print(f"wrote {report.out} ({args.source} → {args.target}, {args.size}x{args.size}: {counts}; "
          f"{report.skipped_skin_tones} skin-tone variants skipped; {report.seconds:.1f} s)")
    return 0


def _cmd_data_demo_clip(args: argparse.Namespace) -> int:
    from cyclestream.trainer.datasets.demo_clip import DemoClipOptions, make_demo_clip

    report = make_demo_clip(args.out, DemoClipOptions(args.style, args.seconds, args.size, args.fps, args.crf))
    print(f"wrote {report.path} ({report.size[0]}x{report.size[1]}, {report.frames} frames at {report.fps} fps, "
          f"{report.seconds:.1f} s, {report.bytes / 1024:.0f} KiB)")
    return 0


def _add_evaluate(sub: Any) -> None:
    p = sub.add_parser("evaluate", help="score a model on a dataset's held-out pairs (PSNR, SSIM vs identity)")
    p.add_argument("model", type=Path, help="generator: an official *_net_G.pth or a cyclestream .safetensors")
    p.add_argument("--data", type=Path, required=True, help="dataset folder with testA/ and testB/")
    p.add_argument("--out", type=Path, help="comparison grid PNG (default out/MODEL_eval.png)")
    p.add_argument("--no-grid", action="store_true", help="do not write the grid")
    p.add_argument("--examples", type=positive_int, default=8, help="pairs shown in the grid (default 8)")
    p.add_argument("--limit", type=positive_int, help="score only the first N pairs (by name)")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB",
                   help="AtoB: translate testA, compare with testB (default); BtoA the reverse")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_run_options(p)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cyclestream.trainer.evaluate import EvaluateOptions, evaluate, format_report

    grid = None if args.no_grid else (args.out or Path("out") / f"{args.model.stem}_eval.png")
    options = EvaluateOptions(run_options(args), args.direction, args.limit, grid, args.examples,
                              progress=not (args.quiet or args.json))
    report = evaluate(args.model, args.data, options)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


# ----------------------------------------------------------------------------- training


def _add_train(sub: Any) -> None:
    from cyclestream.trainer.options import add_train_arguments  # torch-free: --help stays fast

    p = sub.add_parser("train", help="train CycleGAN (unpaired A/B folders), pix2pix or DCGAN; --resume continues",
                       description="Train a model; the run folder (--out) gets G_A/G_B.safetensors (what translate "
                                   "--model loads), state.pt (for --resume), samples/, log.jsonl and losses.png. "
                                   "It trains on CUDA when torch sees a GPU (--device), and says so. "
                                   "Several processes: --nproc N, or torchrun --standalone --nproc_per_node=N "
                                   "-m cyclestream.trainer ... (see --ddp-recipe for how --batch-size is shared)")
    add_train_arguments(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from cyclestream.engine.signals import exit_code, interrupted
    from cyclestream.trainer.loop import train
    from cyclestream.trainer.options import options_from_args

    try:
        result = train(options_from_args(args, progress=not args.quiet))
    except KeyboardInterrupt as e:
        print(f"cyclestream: {interrupted(e)}; continue from the last checkpoint with --resume --out {args.out}",
              file=sys.stderr)
        return exit_code(e)
    state = "finished" if result.finished else f"stopped (continue with --resume --out {result.run_dir})"
    print(f"{state} at epoch {result.position.epoch}, iteration {result.position.iteration}: "
          f"{', '.join(str(f) for f in result.files) or result.run_dir}")
    return 0


def _add_distill(sub: Any) -> None:
    from cyclestream.trainer.distill_cli import add_distill_arguments

    p = sub.add_parser("distill", help="distil a generator into a small, fast student (GAN Compression); "
                       "--resume continues")
    add_distill_arguments(p)
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from cyclestream.trainer.distill_cli import run_distill
    from cyclestream.trainer.distill_eval import format_evaluation

    out = run_distill(args, progress=not args.quiet)
    result = out["result"]
    state = "finished" if result.finished else f"stopped (continue with --resume --out {result.run_dir})"
    print(f"{state} at epoch {result.position.epoch}, iteration {result.position.iteration}: {out['student']}")
    if out["evaluation"] is not None:
        print(format_evaluation(out["evaluation"]))
    return 0


# ----------------------------------------------------------------------------- entry point


def register(sub: Any) -> None:
    _add_data(sub)
    _add_evaluate(sub)
    _add_train(sub)
    _add_distill(sub)
