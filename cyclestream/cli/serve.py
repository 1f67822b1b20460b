"""The `cyclestream serve` command: a web page that translates the browser's camera over WebRTC."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEFAULT_MODEL
from cyclestream.cli.options import add_run_options, add_temporal_option, int_in, positive_float, run_options

DEFAULT_SIZE = "320x240"  # engine/serve/options.py: DEFAULT_SIZE (not imported here: --help stays instant)


def _add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="a web page: your browser's camera goes up over WebRTC and comes back translated",
        description="Serve a page where the browser's camera is sent over WebRTC, translated frame by frame "
        "with bounded latency (newest frame first), and sent back. Several browsers share one model.",
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)")
    p.add_argument("--port", type=int_in(0, 65535), default=8080, help="port (default 8080; 0: any free port)")
    p.add_argument("--max-clients", type=int_in(1, 64), default=4,
                   help="browsers served at once; more are politely refused (default 4)")
    p.add_argument("--client-timeout", type=positive_float, default=10.0,
                   help="free a client whose video stops for this many seconds (default 10)")
    p.add_argument("--certfile", type=Path,
                   help="serve https with this certificate (browsers open the camera only on https or localhost)")
    p.add_argument("--keyfile", type=Path, help="the certificate's private key (if not in --certfile)")
    add_run_options(
        p, size_help=f"translate at WxH: camera frames are scaled to cover it and cropped (default {DEFAULT_SIZE})"
    )
    add_temporal_option(p)
    p.set_defaults(func=_cmd_serve)


def _cmd_serve(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.serve import ServeOptions, run_serve

    options = ServeOptions(
        model=args.model, host=args.host, port=args.port, run=run_options(args), temporal=args.temporal,
        max_clients=args.max_clients, client_timeout=args.client_timeout, certfile=args.certfile,
        keyfile=args.keyfile,
    )
    run_serve(options)
    return 0


def register(sub: Any) -> None:
    _add_serve(sub)
