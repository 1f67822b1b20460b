"""What ``evaluate`` is asked for: how to run the model, which way to translate, how many pairs, the grid.
One frozen dataclass, every field declared once with its default and help; imports no torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.jobs.options import RUN_HELP
from cyclestream.engine.options import Options, option, progress_option

Direction = Literal["AtoB", "BtoA"]


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions(Options):
    run: RunOptions = option(default_factory=RunOptions, help=RUN_HELP)
    direction: Direction = option("AtoB", help="AtoB: translate testA, compare with testB; BtoA the reverse")
    limit: int | None = option(None, min=1, default_text="all", help="score only the first N pairs (by name)")
    grid: Path | None = option(None, flag="", help="where to write the comparison grid (None: no grid)")
    grid_examples: int = option(8, min=1, flag="--examples", metavar="N", help="pairs shown in the grid")
    progress: bool = progress_option()
