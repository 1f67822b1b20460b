"""The `cyclestream stylize` command: Gatys et al.'s neural style for one still image (trainer/gatys.py)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cyclestream.cli.flags import add_options, from_args


def _cmd_stylize(args: argparse.Namespace) -> int:
    from cyclestream.trainer.gatys import stylize
    from cyclestream.trainer.gatys_options import StylizeOptions

    options = from_args(StylizeOptions, args, progress=not args.quiet)
    stylize(args.content, args.out, options)
    return 0


def register(sub: Any) -> None:
    from cyclestream.trainer.gatys_options import StylizeOptions

    p = sub.add_parser("stylize", help="Gatys neural style for one still image (needs a VGG file)")
    p.add_argument("content", type=Path, help="the content image")
    p.add_argument("--out", type=Path, required=True, help="the stylised image (format by suffix)")
    add_options(p, StylizeOptions, required=("style", "vgg"))
    p.set_defaults(func=_cmd_stylize)
