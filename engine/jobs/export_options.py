"""What ``export`` is asked for: the layout to write a model file in.  Imports nothing heavy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from cyclestream.engine.options import Options, option

ExportLayout = Literal["official"]


@dataclass(frozen=True, kw_only=True)
class ExportOptions(Options):
    """``export``: a generator written in another project's file layout."""

    to: ExportLayout = option(
        "official",
        help="official: a pytorch-CycleGAN-and-pix2pix *_net_G.pth state dict "
        "(its test.py loads it with --netG and --norm as `info` names them)",
    )
