"""The `cyclestream` commands stream: live cameras and network streams."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Any

from cyclestream.cli.flags import add_options, from_args
from cyclestream.cli.options import add_model_argument

log = logging.getLogger("cyclestream")


def _add_stream(sub: Any) -> None:
    from cyclestream.engine.jobs.options import StreamOptions

    p = sub.add_parser("stream", help="translate a live camera, network stream or test source with bounded latency")
    add_model_argument(p)
    p.add_argument("--source", required=True, action="append",
                   help="/dev/video0 | udp://@:5000 | rtsp://... | rtmp://...[?listen] | "
                   "lavfi:testsrc2=size=640x360:rate=30 | FILE; repeat it to run several streams through one model")
    p.add_argument("--sink", action="append",
                   help="null (default) | FILE.ts/.mkv/.mp4 (recorded under its name, playable even if the job is "
                   "killed) | udp://127.0.0.1:5001 | rtmp://...; with several --source, one --sink each, in order")
    p.add_argument("--stats-json", type=Path, help="also write the summary JSON here")
    add_options(p, StreamOptions)
    p.set_defaults(func=_cmd_stream)


def _cmd_stream(args: argparse.Namespace) -> int:

    from cyclestream.engine.errors import CycleStreamError
    from cyclestream.engine.jobs.options import StreamOptions
    from cyclestream.engine.jobs.stream import StreamInterrupted, print_summary, run_streams
    from cyclestream.engine.paths import check_writable

    if args.stats_json is not None:
        check_writable(args.stats_json, "--stats-json")
    sinks = args.sink or ["null"] * len(args.source)
    if len(sinks) != len(args.source):
        raise CycleStreamError(f"{len(args.source)} --source but {len(sinks)} --sink: give one --sink per --source "
                               "(null for none), in the same order")
    if len(args.source) > 1 and args.preview:
        raise CycleStreamError("--preview shows one stream: use it with a single --source")
    quiet = {"stats_interval": 0.0} if args.quiet else {}
    options = from_args(StreamOptions, args, source=args.source[0], sink=sinks[0], model=args.model, **quiet)
    jobs = [dataclasses.replace(options, source=source, sink=sink) for source, sink in zip(args.source, sinks,
                                                                                             strict=True)]
    try:
        reports = run_streams(jobs)
        for report in reports:
            if report.sink_lost:
                log.error("%s; the summary counts what was written", report.end_reason)
            elif report.end_reason:
                log.warning("source %s ended: %s; finalized %s with %d frames", report.source, report.end_reason,
                            report.sink, report.stats.frames)
        print_summary(reports[0] if len(reports) == 1 else reports, args.stats_json)
        if any(report.sink_lost for report in reports):
            return 2
    except StreamInterrupted as e:  # Ctrl-C or SIGTERM before any frame: exit 130 or 143, not an error
        print(f"cyclestream: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt as e:  # a second Ctrl-C: recordings are kept, never deleted
        recorded = [s for s in sinks if s != "null" and "://" not in s and Path(s).exists()]
        if recorded and not getattr(e, "__notes__", None):
            e.add_note(f"kept {', '.join(recorded)}")
        raise
    return 0


def register(sub: Any) -> None:
    _add_stream(sub)
