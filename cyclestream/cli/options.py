"""What several commands share: the model argument, argument types for the flags a command declares
itself, the generated option groups (``flags.py``), and printing a file job's report."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEFAULT_MODEL
from cyclestream.cli.flags import add_options, from_args, value_parser

log = logging.getLogger("cyclestream")

MODEL_HELP = "generator: an official *_net_G.pth or a cyclestream .safetensors (default: the bundled model)"


def add_model_argument(p: Any, *, positional: bool = False) -> None:
    """``--model FILE`` (the bundled model by default), or a required ``MODEL`` argument."""
    if positional:
        p.add_argument("model", type=Path, help=MODEL_HELP.split(" (default")[0])
    else:
        p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=MODEL_HELP)


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' → (640, 360), as an argparse type."""
    from cyclestream.engine.options import OptionError
    from cyclestream.engine.options import parse_size as parse

    try:
        return parse(text)
    except OptionError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``lo`` to ``hi`` (no upper bound when ``hi`` is None)."""
    from cyclestream.engine.options import Spec

    return value_parser(int, Spec(help="", min=lo, max=hi))


def float_above(lo: float) -> Callable[[str], float]:
    """An argparse type: a finite number greater than ``lo``."""
    from cyclestream.engine.options import Spec

    return value_parser(float, Spec(help="", above=lo))


positive_int = int_in(1)
positive_float = float_above(0)


# ----------------------------------------------------------------------------- generated option groups


def add_run_options(p: argparse.ArgumentParser) -> None:
    """How to run the model (``RunOptions``): backend, device, precision, batch, size, kernels."""
    from cyclestream.engine.backends.options import RunOptions
    from cyclestream.engine.jobs.options import RUN_HELP

    add_options(p, RunOptions, title=RUN_HELP)


def run_options(args: argparse.Namespace) -> Any:
    from cyclestream.engine.backends.options import RunOptions

    return from_args(RunOptions, args)


def add_translate_options(p: argparse.ArgumentParser) -> None:
    from cyclestream.engine.jobs.options import TranslateOptions

    add_options(p, TranslateOptions)


def translate_options(args: argparse.Namespace) -> Any:
    from cyclestream.engine.jobs.options import TranslateOptions

    return from_args(TranslateOptions, args, progress=not args.quiet)


def check_preview(args: argparse.Namespace, source: Path) -> None:
    """Fail before the work if ``--preview PATH`` is the input or could not be written (it is written
    last; the default path lies beside the output, whose folder the output's own writing checks)."""
    from cyclestream.engine.paths import check_not_input, check_writable

    if isinstance(args.preview, Path):
        check_not_input(source, args.preview)
        check_writable(args.preview, "--preview")


def print_report(report: Any) -> None:
    for warning in report.warnings:
        log.warning("%s", warning)
    print(f"wrote {report.output} ({report.frames} frames, {report.fps:.2f} frames/s, {report.backend})")
    if report.preview:
        print(f"preview {report.preview}")
