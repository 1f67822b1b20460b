"""``python -m cyclestream.trainer`` and ``torchrun --nproc_per_node=N -m cyclestream.trainer``:
the flags of ``cyclestream train``; under torchrun each process is one DDP rank."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cyclestream.engine.errors import CycleStreamError
from cyclestream.trainer.options import add_train_arguments, options_from_args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cyclestream.trainer", description=__doc__)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="cyclestream: %(message)s")
    from cyclestream.trainer.loop import train

    try:
        result = train(options_from_args(args, progress=not args.quiet))
    except CycleStreamError as e:
        print(f"cyclestream: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cyclestream: interrupted; resume with --resume", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    state = "finished" if result.finished else "stopped"
    print(f"{state} at iteration {result.position.iteration}: {', '.join(map(str, result.files))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
