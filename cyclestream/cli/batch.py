"""The `cyclestream batch` command: many videos and images (or long videos in segments), here or on Ray."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from cyclestream.cli.flags import add_options, from_args
from cyclestream.cli.options import add_model_argument

log = logging.getLogger("cyclestream")


def register(sub: Any) -> None:
    from cyclestream.engine.jobs.options import BatchOptions

    p = sub.add_parser(
        "batch",
        help="translate many videos and images (long videos in parallel segments), here or on a Ray cluster",
        description="Translate files, folders (searched recursively for videos and images) and manifests (.txt, "
        ".list: one path a line, relative to the manifest; an absolute path is written under its own name) into "
        "--out, keeping relative names; nothing is written outside --out, and only regular files are read.  A "
        "rerun skips outputs finished with the same model and settings.",
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="video or image file, folder, or manifest")
    p.add_argument("--out", type=Path, required=True, help="output folder (items keep their relative names)")
    add_model_argument(p)
    add_options(p, BatchOptions)
    p.set_defaults(func=_cmd_batch)


def _cmd_batch(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.batch import BatchFailed, BatchReport, run_batch
    from cyclestream.engine.jobs.options import BatchOptions

    options = from_args(BatchOptions, args, progress=not args.quiet)

    def show(report: BatchReport) -> None:
        for outcome in report.outcomes:
            for warning in outcome.warnings:
                log.warning("%s: %s", outcome.item.rel, warning)
        for outcome in report.of("failed"):
            log.warning("failed: %s: %s", outcome.item.rel, outcome.reason)
        for line in report.lines():
            print(line)

    try:
        report = run_batch(args.inputs, args.out, args.model, options)
    except BatchFailed as e:
        show(e.report)
        raise
    show(report)
    return 0
