"""The `cyclestream tune` command: measure every backend x precision for a model and frame size on this
machine ahead of time, print the table, and cache the pick that ``--backend auto`` then uses."""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Any

from cyclestream.bundled import DEMO_CLIP
from cyclestream.cli.flags import add_options, from_args
from cyclestream.cli.options import add_model_argument


def register(sub: Any) -> None:
    from cyclestream.engine.backends.options import TuneOptions

    p = sub.add_parser("tune", help="measure every backend x precision for a model and frame size here and cache "
                       "the fastest that matches eager fp32 (what --backend auto uses)")
    add_model_argument(p, positional=True)
    add_options(p, TuneOptions, required=("size",))
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    p.set_defaults(func=_cmd_tune)


def _cmd_tune(args: argparse.Namespace) -> int:
    from cyclestream.engine.backends.options import TuneOptions
    from cyclestream.engine.backends.tune import markdown_lines, table_lines, tune_model
    from cyclestream.engine.checkpoint import load_model

    options = from_args(TuneOptions, args, progress=not args.quiet)
    if options.run.calibration is None:  # no job video to calibrate int8 on: the bundled clip stands in
        options = dataclasses.replace(options, run=dataclasses.replace(options.run, calibration=DEMO_CLIP))
    model = load_model(args.model)
    tuning = tune_model(model, options)
    if args.json:
        print(json.dumps(tuning.to_dict(), indent=2, sort_keys=True))
        return 0
    run = options.run
    width, height = run.size
    print(f"{model.path.name} ({model.spec.official_name}) at {width}x{height}, batch {run.batch_size}, "
          f"on {tuning.key['device']}: measured in {tuning.seconds:.0f} s of a {tuning.budget:.0f} s budget")
    print(f"machine: {tuning.machine}; load average {' '.join(f'{v:.2f}' for v in tuning.load)}")
    for line in markdown_lines(tuning) if args.markdown else table_lines(tuning):
        print(line)
    kept = tuning.kept()
    if kept:
        best = kept[0]
        print(f"--backend auto will use {best.backend} {best.precision} for this model, size and batch here")
    else:
        print("no setting holds quality for this precision here: --backend auto refuses this job")
    return 0
