"""The `cyclestream` command: parse, build option dataclasses, call one library function, print.

Each command group lives in its own module here with a ``register(sub)``; shared argument types and
option groups are in ``options.py``.  Every CycleStreamError becomes one line on stderr and a non-zero
exit; ``--verbose`` adds the traceback.  Library modules are imported inside the commands, so
``cyclestream --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys

from cyclestream.bundled import DEFAULT_MODEL, DEMO_CLIP, STUDENT_MODEL
from cyclestream.cli import batch, bench, generate, model, serve, stream, stylize, train, translate, tune

__all__ = ["DEFAULT_MODEL", "DEMO_CLIP", "STUDENT_MODEL", "build_parser", "main"]

log = logging.getLogger("cyclestream")

# the order of `cyclestream --help`
COMMANDS = [translate, batch, stream, serve, bench, tune, model, train, stylize, generate]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyclestream",
        description="Real-time CycleGAN translation of video files, images and live streams.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


NON_TTY_PROGRESS_SECONDS = "15"  # progress bars written to a log file or CI: a line every 15 s, not every update


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_MININTERVAL", NON_TTY_PROGRESS_SECONDS)  # tqdm reads TQDM_* defaults
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="cyclestream: %(levelname)s: %(message)s" if args.verbose else "cyclestream: %(message)s",
    )
    from cyclestream.engine.signals import exit_code, interrupted, terminate_as_interrupt

    # SIGTERM and SIGHUP unwind a job like Ctrl-C; stream instead finishes its output on them (engine/jobs/stream.py).
    signals = contextlib.nullcontext() if args.command == "stream" else terminate_as_interrupt()
    try:
        with signals:
            return int(args.func(args) or 0)
    except KeyboardInterrupt as e:  # exit 128 + the signal's number: 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP
        done = "; ".join(getattr(e, "__notes__", ())) or "no output was left behind"  # a job's note: what it wrote
        print(f"cyclestream: {interrupted(e)}; {done}", file=sys.stderr)
        return exit_code(e)
    except BrokenPipeError:  # `cyclestream info MODEL | head -1`: the reader left, as it may
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 141  # 128 + SIGPIPE, as a shell reports a command its pipe closed on
    except Exception as e:
        if args.verbose:
            raise
        if _users_to_fix(e):
            print(f"cyclestream: error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, OSError) and e.filename is not None:  # permission denied, disk full, ...: the user's to fix
            print(f"cyclestream: error: {e.filename}: {e.strerror or e}", file=sys.stderr)
            return 2
        # a bug or an unforeseen library error: still one line unless --verbose
        print(
            f"cyclestream: error: unexpected {type(e).__name__}: {e} (run with --verbose for details)", file=sys.stderr
        )
        return 1


def _users_to_fix(e: BaseException) -> bool:
    """A CycleStreamError, or a KernelError (the kernels' own, when they were imported at all)."""
    from cyclestream.engine.errors import CycleStreamError

    kernels = sys.modules.get("cyclestream.kernels.errors")
    return isinstance(e, CycleStreamError) or (kernels is not None and isinstance(e, kernels.KernelError))


if __name__ == "__main__":
    sys.exit(main())
