"""The `cyclestream` command: parse, build option dataclasses, call one library function, print.

Every CycleStreamError becomes one line on stderr and a non-zero exit; ``--verbose`` adds the
traceback.  Library modules are imported inside the commands, so ``cyclestream --help`` is instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("cyclestream")

ASSETS = Path(__file__).parent / "assets"
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
DEMO_CLIP = ASSETS / "demo.mp4"


def parse_size(text: str) -> tuple[int, int]:
    """'640x360' → (640, 360)."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x360, got {text!r}") from None
    if w < 1 or h < 1 or w > 16384 or h > 16384:
        raise argparse.ArgumentTypeError(f"unsupported size {w}x{h}")
    return w, h


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


# ----------------------------------------------------------------------------- shared option groups


def add_run_options(p: argparse.ArgumentParser) -> None:
    """How to run the model (translate, demo, stream, bench)."""
    g = p.add_argument_group("model execution")
    g.add_argument("--backend", default="auto", help="auto (default) or a backend name, e.g. eager")
    g.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    g.add_argument("--batch-size", type=_positive, default=1, help="frames per model call (default 1)")
    g.add_argument("--size", type=parse_size, help="scale frames to WxH first (default: keep their size)")


def run_options(args: argparse.Namespace) -> Any:
    from cyclestream.engine.translate import RunOptions

    return RunOptions(args.backend, args.device, args.precision, args.batch_size, args.size)


def add_encode_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("video output")
    g.add_argument("--codec", default="libx264", help="video encoder (default libx264; libx265, libvpx-vp9, ...)")
    g.add_argument("--crf", type=int, default=18, help="constant quality, lower is better (default 18)")
    g.add_argument("--preset", default="medium", help="x264/x265 speed preset (default medium)")
    g.add_argument("--pix-fmt", default="yuv420p", help="output pixel format (default yuv420p)")
    g.add_argument("--preview", type=Path, help="side-by-side PNG path (default: OUTPUT.preview.png)")
    g.add_argument("--no-preview", action="store_true", help="do not write a preview PNG")


def translate_options(args: argparse.Namespace, output: Path) -> Any:
    from cyclestream.engine.media.sinks import EncodeOptions
    from cyclestream.engine.translate import TranslateOptions, default_preview_path

    preview = None if args.no_preview else (args.preview or default_preview_path(output))
    return TranslateOptions(
        run=run_options(args),
        encode=EncodeOptions(args.codec, args.crf, args.preset, args.pix_fmt),
        preview=preview,
        progress=not args.quiet,
    )


def _print_report(report: Any) -> None:
    for warning in report.warnings:
        log.warning("%s", warning)
    print(f"wrote {report.output} ({report.frames} frames, {report.fps:.2f} frames/s, {report.backend})")
    if report.preview:
        print(f"preview {report.preview}")


# ----------------------------------------------------------------------------- commands


def _add_translate(sub: Any) -> None:
    p = sub.add_parser("translate", help="translate a video file, an image or a folder of images")
    p.add_argument("input", type=Path, help="video file, image, or folder of images")
    p.add_argument("output", type=Path, help="output video file, image, or folder")
    p.add_argument(
        "--model",
        type=Path,
        default=DEFAULT_MODEL,
        help="generator: an official *_net_G.pth or a cyclestream .safetensors (default: bundled)",
    )
    add_run_options(p)
    add_encode_options(p)
    p.set_defaults(func=_cmd_translate)


def _cmd_translate(args: argparse.Namespace) -> int:
    from cyclestream.engine.translate import translate

    _print_report(translate(args.input, args.output, args.model, translate_options(args, args.output)))
    return 0


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="translate the bundled demo clip with the bundled model")
    p.add_argument(
        "--output",
        type=Path,
        default=Path("out/demo_translated.mp4"),
        help="output video (default out/demo_translated.mp4)",
    )
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator (default: bundled)")
    add_run_options(p)
    add_encode_options(p)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from cyclestream.engine.translate import translate

    print(f"translating the bundled clip {DEMO_CLIP.name} with {args.model.name}")
    _print_report(translate(DEMO_CLIP, args.output, args.model, translate_options(args, args.output)))
    return 0


def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a model file (architecture, domains, provenance)")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from cyclestream.engine.checkpoint import load_model

    model = load_model(args.model)
    info = {
        "path": str(model.path),
        "format": model.format,
        "architecture": model.spec.official_name,
        "generator": model.spec.to_dict(),
        "parameters": model.parameter_count,
        "size_multiple": model.spec.size_multiple,
        "metadata": {k: v for k, v in model.metadata.items() if k != "generator"},
    }
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(
        f"{model.path}: {model.format} model, {model.spec.official_name}, "
        f"{model.parameter_count / 1e6:.2f} M parameters"
    )
    for key, value in model.spec.to_dict().items():
        print(f"  {key:13} {value}")
    print(f"  {'frame sides':13} padded to a multiple of {model.spec.size_multiple}")
    for key, value in info["metadata"].items():
        print(f"  {key:13} {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


# ----------------------------------------------------------------------------- entry point

COMMANDS: list[Callable[[Any], None]] = [_add_translate, _add_demo, _add_info]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyclestream",
        description="Real-time CycleGAN translation of video files, images and live streams.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="cyclestream: %(levelname)s: %(message)s" if args.verbose else "cyclestream: %(message)s",
    )
    from cyclestream.engine.errors import CycleStreamError

    try:
        return int(args.func(args) or 0)
    except CycleStreamError as e:
        if args.verbose:
            raise
        print(f"cyclestream: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cyclestream: interrupted; no output was left behind", file=sys.stderr)
        return 130
    except Exception as e:  # a bug or an unforeseen library error: still one line unless --verbose
        if args.verbose:
            raise
        print(
            f"cyclestream: error: unexpected {type(e).__name__}: {e} (run with --verbose for details)", file=sys.stderr
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
