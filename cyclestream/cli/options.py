"""What several commands share: argument types, option groups, and turning them into option dataclasses."""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("cyclestream")


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' → (640, 360)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise argparse.ArgumentTypeError(f"unsupported size {w}x{h}")
    return w, h


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer from ``lo`` to ``hi`` (no upper bound when ``hi`` is None)."""

    def integer(text: str) -> int:
        value = int(text)  # a ValueError: argparse says "invalid integer value: 'TEXT'"
        if value < lo or (hi is not None and value > hi):
            bound = f"at least {lo}" if hi is None else f"between {lo} and {hi}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return integer


def float_above(lo: float) -> Callable[[str], float]:
    """An argparse type: a finite number greater than ``lo``."""

    def number(text: str) -> float:
        value = float(text)  # a ValueError: argparse says "invalid number value: 'TEXT'"
        if not (math.isfinite(value) and value > lo):
            raise argparse.ArgumentTypeError(f"must be a number greater than {lo:g}, got {text}")
        return value

    return number


positive_int = int_in(1)
positive_float = float_above(0)
CRF = int_in(0, 63)  # the widest encoder range (vpx, AV1); x264/x265 (0-51) are checked when the encoder opens


# ----------------------------------------------------------------------------- shared option groups


def add_run_options(p: argparse.ArgumentParser, size_help: str | None = None) -> None:
    """How to run the model (translate, demo, stream, bench, serve); ``size_help`` where --size has a default."""
    g = p.add_argument_group("model execution")
    from cyclestream.engine.backends import BACKEND_NAMES, backends_help  # no backend library is imported

    g.add_argument("--backend", default="auto", choices=BACKEND_NAMES, metavar="BACKEND", help=backends_help())
    g.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    g.add_argument("--batch-size", type=positive_int, default=1, help="frames per model call (default 1)")
    g.add_argument("--size", type=parse_size, help=size_help or "scale frames to WxH first (default: keep their size)")
    g.add_argument("--kernels", default="auto", choices=["auto", "triton", "reference", "off"],
                   help="fused instance-norm kernels for --backend eager (auto: Triton on CUDA, off on CPU)")


def run_options(args: argparse.Namespace) -> Any:
    from cyclestream.engine.backends.options import RunOptions

    return RunOptions(args.backend, args.device, args.precision, args.batch_size, args.size, args.kernels)


def add_encode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video output")
    g.add_argument("--codec", default="libx264", help="video encoder (default libx264; libx265, libvpx-vp9, ...)")
    g.add_argument("--crf", type=CRF, default=18,
                   help="constant quality 0-51 (x264, x265) or 0-63 (vpx, AV1), lower is better (default 18)")
    g.add_argument("--preset", default="medium", help="x264/x265 speed preset (default medium)")
    g.add_argument("--pix-fmt", default="yuv420p", help="output pixel format (default yuv420p)")
    g.add_argument("--preview", type=Path, help="side-by-side PNG path (default: OUTPUT.preview.png)")
    g.add_argument("--no-preview", action="store_true", help="do not write a preview PNG")


def add_temporal_option(p: argparse.ArgumentParser) -> None:
    from cyclestream.engine.temporal import METHODS  # numpy only: --help stays fast

    p.add_argument("--temporal", default="on", choices=METHODS,
                   help="steady video: on (default; = blend: a motion-aware running average where the input "
                   "is still, reset at scene cuts), flow (the same along optical flow; needs OpenCV), off "
                   "(every frame translated on its own)")


def translate_options(args: argparse.Namespace, output: Path) -> Any:
    from cyclestream.engine.jobs.translate import TranslateOptions, default_preview_path
    from cyclestream.engine.media.sinks import EncodeOptions

    preview = None if args.no_preview else (args.preview or default_preview_path(output))
    return TranslateOptions(
        run=run_options(args),
        encode=EncodeOptions(args.codec, args.crf, args.preset, args.pix_fmt),
        preview=preview,
        progress=not args.quiet,
        temporal=args.temporal,
    )


def check_preview(args: argparse.Namespace, source: Path) -> None:
    """Fail before the work if ``--preview PATH`` is the input or could not be written (it is written
    last; the default path lies beside the output, whose folder the output's own writing checks)."""
    from cyclestream.engine.paths import check_not_input, check_writable

    if args.preview is not None and not args.no_preview:
        check_not_input(source, args.preview)
        check_writable(args.preview, "--preview")


def print_report(report: Any) -> None:
    for warning in report.warnings:
        log.warning("%s", warning)
    print(f"wrote {report.output} ({report.frames} frames, {report.fps:.2f} frames/s, {report.backend})")
    if report.preview:
        print(f"preview {report.preview}")
