"""What ``cyclestream bench train`` is asked for (torch-free: ``--help`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cyclestream.engine.options import DEVICE_HELP, Options, comma_list, option, progress_option, valid_device
from cyclestream.trainer.speed import MODE_NAMES


def parse_mode(text: str) -> str:
    """``compile+cl bf16`` or ``compile+cl-bf16`` (a dash for the space, for shells) → the mode's name."""
    name = " ".join(text.strip().rsplit("-", 1)) if " " not in text.strip() else text.strip()
    if name not in MODE_NAMES:
        raise ValueError(f"unknown mode {text!r}; expected one of {', '.join(n.replace(' ', '-') for n in MODE_NAMES)}")
    return name


@dataclass(frozen=True, kw_only=True)
class TrainBenchOptions(Options):
    """Seconds per iteration and peak memory of each way to run one training step, side by side: the exact
    eager fp32 step (the official code's speed) and each fast mode, each in its own process."""

    model: str = option("cyclegan", help="the model system whose step is timed (a task of `cyclestream train`)")
    dataroot: Path | None = option(None, default_text="generated noise images",
                                   help="cyclegan: folder with trainA/ and trainB/ (the step's cost does not "
                                   "depend on the pictures)")
    data: Path | None = option(None, help="pix2pix: aligned A|B images; dcgan: a folder of images")
    crop_size: int = option(256, min=16, help="training crop side")
    batch_size: int = option(1, min=1, help="images per step")
    ngf: int | None = option(None, min=1, default_text="the recipe's", help="generator width")
    n_blocks: int | None = option(None, min=0, default_text="the recipe's", help="ResNet blocks or U-Net levels")
    ndf: int = option(64, min=1, help="discriminator width")
    modes: tuple[str, ...] = option((), parse=comma_list(parse_mode), metavar="MODE,...",
                                    default_text="every mode this machine has",
                                    help="modes to time, e.g. eager-fp32,compile+cl-bf16 (eager fp32 is always "
                                    "timed: the ratios are to it)")
    warmup: int = option(2, min=1, help="iterations run before timing (the first holds the compile)")
    iterations: int = option(5, min=1, help="timed iterations of each mode (the median is reported)")
    rounds: int = option(1, min=1, help="time every mode this many times, in turns (medians of the rounds)")
    threads: int | None = option(None, min=1, default_text="torch's choice", help="torch threads")
    device: str = option("auto", help=DEVICE_HELP)
    record: bool = option(True, help="written record of the measured speeds, for `train --precision/"
                          "--compile/--channels-last auto` to pick the fastest on this machine for this "
                          "configuration")
    progress: bool = progress_option()

    def check(self) -> None:
        if not valid_device(self.device):
            raise self.fail("device", f"expected {DEVICE_HELP}, got {self.device!r}")
