"""The `cyclestream` commands translate and demo: a video file, an image or a folder of images."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEFAULT_MODEL, DEMO_CLIP, STARGAN_MODEL, STUDENT_MODEL
from cyclestream.cli.options import (
    MODEL_HELP,
    add_model_argument,
    add_translate_options,
    check_preview,
    print_report,
    translate_options,
)

log = logging.getLogger("cyclestream")


def _add_translate(sub: Any) -> None:
    p = sub.add_parser("translate", help="translate a video file, an image or a folder of images")
    p.add_argument("input", type=Path, help="video file, image, or folder of images; - reads a video from "
                   "standard input")
    p.add_argument("output", type=Path, help="output video file, image, or folder; - writes the video to standard "
                   "output (MPEG-TS, or --format matroska)")
    add_model_argument(p)
    add_translate_options(p)
    p.set_defaults(func=_cmd_translate)


def _cmd_translate(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.translate import ImagesFailed, translate

    options = translate_options(args)
    check_preview(args, args.input)
    try:
        report = translate(args.input, args.output, args.model, options)
    except ImagesFailed as e:  # a folder job: the good images were written; say so, list the failures
        print_report(e.report)
        raise
    print_report(report)
    return 0


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="translate the bundled demo clip with the bundled model",
                       description="Translate the bundled demo clip with the bundled model; with --target "
                       "openmoji|twemoji|noto, with the bundled StarGAN (one generator, three emoji styles).")
    p.add_argument("--output", type=Path, default=Path("out/demo_translated.mp4"),
                   help="output video (default out/demo_translated.mp4)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, default=DEFAULT_MODEL, help=MODEL_HELP)
    which.add_argument("--student", action="store_true",
                       help="the bundled real-time student (distilled from the bundled model)")
    add_translate_options(p)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.translate import translate

    options = translate_options(args)
    if args.student:
        model = STUDENT_MODEL
    elif options.run.target is not None and args.model == DEFAULT_MODEL:
        model = STARGAN_MODEL  # a target: the bundled model that takes one
    else:
        model = args.model
    check_preview(args, DEMO_CLIP)
    print(f"translating the bundled clip {DEMO_CLIP.name} with {model.name}")
    print_report(translate(DEMO_CLIP, args.output, model, options))
    return 0


def register(sub: Any) -> None:
    _add_translate(sub)
    _add_demo(sub)
