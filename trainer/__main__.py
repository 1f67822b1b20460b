"""``python -m cyclestream.trainer`` and ``torchrun --nproc_per_node=N -m cyclestream.trainer``:
the flags of ``cyclestream train``; under torchrun each process is one DDP rank."""

from __future__ import annotations

import logging
import os
import sys

from cyclestream.cli.train import train_options, trainer_parser
from cyclestream.engine.errors import CycleStreamError


def main(argv: list[str] | None = None) -> int:
    args = trainer_parser("python -m cyclestream.trainer", __doc__).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="cyclestream: %(message)s")
    from cyclestream.trainer.loop import train

    try:
        result = train(train_options(args))
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
