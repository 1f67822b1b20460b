"""The `cyclestream generate` command: a latent-walk video from a StyleGAN2 or DCGAN generator."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cyclestream.cli.flags import add_options, from_args


def _cmd_generate(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.generate import generate
    from cyclestream.engine.jobs.generate_options import GenerateOptions

    options = from_args(GenerateOptions, args, progress=not args.quiet)
    report = generate(args.model, args.out, options)
    width, height = report.size
    print(f"wrote {report.output} ({report.frames} frames, {width}x{height}, {float(report.fps):g} frames/s)")
    return 0


def register(sub: Any) -> None:
    from cyclestream.engine.jobs.generate_options import GenerateOptions

    p = sub.add_parser("generate", help="a latent-walk video from a generator of images (StyleGAN2, DCGAN)")
    p.add_argument("model", type=Path, help="rosinality/stylegan2-pytorch checkpoint (.pt), DCGAN netG_epoch_N.pth "
                   "or a cyclestream .safetensors of either")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="the video file (format by suffix: .mp4, .mkv, ...)")
    add_options(p, GenerateOptions)
    p.set_defaults(func=_cmd_generate)
