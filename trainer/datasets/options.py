"""What ``data emoji`` and ``data demo-clip`` are asked for: one frozen dataclass each, every field declared
once with its default and help (the command line's flags are generated from them).  Imports no torch, no
PyAV, no Pillow: ``cyclestream --help`` reads these declarations."""

from __future__ import annotations

from dataclasses import dataclass

from cyclestream.engine.options import Options, comma_list, option, parse_size, progress_option
from cyclestream.trainer.datasets import DatasetError

STYLE_NAMES = ("twemoji", "noto", "openmoji")  # the emoji styles (trainer/datasets/emoji.py draws them)
STYLES_HELP = ", ".join(STYLE_NAMES)
# grinning face, cat face, rocket, red apple, star, octopus: in every style, whole figures (no cut-off
# neck like the unicorn's), and easy to tell apart
DEMO_EMOJI = ("1f600", "1f431", "1f680", "1f34e", "2b50", "1f419")


def check_style(name: str) -> None:
    if name not in STYLE_NAMES:
        raise DatasetError(f"unknown emoji style {name!r}; choose one of: {', '.join(STYLE_NAMES)}")


@dataclass(frozen=True, kw_only=True)
class EmojiSplitOptions(Options):
    """What every emoji dataset takes besides its styles: image size, held-out share, seed, limit."""

    size: int = option(128, help="square image side in pixels, 8 to 1024")
    test_fraction: float = option(0.1, help="share of emoji held out as pairs (drawn in every style), at least 0 "
                                  "and below 1")
    seed: int = option(0, help="seed of the split and shuffles")
    limit: int | None = option(None, default_text="all", help="use at most N emoji, at least 2 (small datasets "
                               "for tests)")
    overwrite: bool = option(False, help="replace --out if it exists")
    progress: bool = progress_option()

    def check(self) -> None:  # DatasetErrors naming the flag: what `data emoji` has always said
        if not 8 <= self.size <= 1024:
            raise DatasetError(f"--size {self.size} is outside 8..1024")
        if not 0 <= self.test_fraction < 1:
            raise DatasetError(f"--test-fraction {self.test_fraction} must be at least 0 and below 1")
        if self.limit is not None and self.limit < 2:
            raise DatasetError("--limit must be at least 2")


@dataclass(frozen=True, kw_only=True)
class EmojiDatasetOptions(EmojiSplitOptions):
    """An unpaired two-style emoji dataset: its styles, image size, held-out share and seed."""

    source: str = option("openmoji", flag="--from", metavar="STYLE",
                         help=f"domain A style: {STYLES_HELP} (openmoji: the bundled model's input)")
    target: str = option("twemoji", flag="--to", metavar="STYLE", help=f"domain B style: {STYLES_HELP}")

    def check(self) -> None:
        check_style(self.source)
        check_style(self.target)
        if self.source == self.target:
            raise DatasetError(f"--from and --to are both {self.source!r}; choose two different styles")
        super().check()


@dataclass(frozen=True, kw_only=True)
class EmojiDomainsOptions(EmojiSplitOptions):
    """A dataset of one folder per emoji style (StarGAN's domains): the styles, size, held-out share, seed."""

    size: int = option(64, help="square image side in pixels, 8 to 1024")
    styles: tuple[str, ...] = option(("openmoji", "twemoji", "noto"), parse=comma_list(), metavar="STYLE,...",
                                     help=f"the domains, two or more of: {STYLES_HELP}")

    def check(self) -> None:
        for style in self.styles:
            check_style(style)
        if len(self.styles) < 2 or len(set(self.styles)) != len(self.styles):
            raise DatasetError(f"--styles {','.join(self.styles)}: name two or more different styles")
        super().check()


@dataclass(frozen=True, kw_only=True)
class DemoClipOptions(Options):
    """The demo clip: its emoji style, length, frame size and rate, quality and sound."""

    style: str = option("openmoji", choices=STYLE_NAMES, help="emoji style (openmoji: what the bundled model "
                        "translates from)")
    seconds: float = option(6.0, above=0, max=60, help="length in seconds")
    size: tuple[int, int] = option((256, 256), parse=parse_size, metavar="WxH", help="frame size, both sides even "
                                   "and at least 32 (4:2:0)")
    fps: int = option(12, min=1, max=60, help="frames per second")
    crf: int = option(23, min=0, max=51, help="x264 constant quality, lower is better")
    sample_rate: int = option(48_000, min=8000, flag="", help="audio sample rate")
    emoji: tuple[str, ...] = option(DEMO_EMOJI, flag="", help="the emoji drawn, by code point names")

    def check(self) -> None:
        w, h = self.size
        if w % 2 or h % 2 or min(w, h) < 32:
            raise DatasetError(f"--size {w}x{h}: both sides must be even and at least 32 (256x256, 320x240)")
        if not self.emoji:
            raise DatasetError("no emoji to draw")

    @property
    def frame_count(self) -> int:
        return max(1, round(self.seconds * self.fps))
