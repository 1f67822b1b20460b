"""The `cyclestream serve` command: a web page that translates the browser's camera over WebRTC."""

from __future__ import annotations

import argparse
from typing import Any

from cyclestream.bundled import SERVE_PAGE
from cyclestream.cli.flags import add_options, from_args
from cyclestream.cli.options import add_model_argument


def _add_serve(sub: Any) -> None:
    from cyclestream.engine.serve.options import ServeOptions

    p = sub.add_parser(
        "serve",
        help="a web page: your browser's camera goes up over WebRTC and comes back translated",
        description="Serve a page where the browser's camera is sent over WebRTC, translated frame by frame "
        "with bounded latency (newest frame first), and sent back. Several browsers share one model.",
    )
    add_model_argument(p)
    add_options(p, ServeOptions)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.serve import run_serve
    from cyclestream.engine.serve.options import ServeOptions

    run_serve(from_args(ServeOptions, args, model=args.model, page=SERVE_PAGE))
    return 0


def register(sub: Any) -> None:
    _add_serve(sub)
