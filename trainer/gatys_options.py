"""``cyclestream stylize``'s options: Gatys et al.'s optimisation of one still image (imports no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cyclestream.engine.options import DEVICE_HELP, Options, option, progress_option


@dataclass(frozen=True, kw_only=True)
class StylizeOptions(Options):
    """The style image, the VGG, and the optimisation (the PyTorch neural style tutorial's settings: VGG
    conv1_1..conv3_1 for style, conv2_2 for content, weights 1e6 and 1, L-BFGS from the content image)."""

    style: Path = option(help="the style image")
    vgg: Path = option(
        help="torchvision VGG19/VGG16 ImageNet state dict (https://download.pytorch.org/models/vgg19-dcbb9e9d.pth)",
    )
    steps: int = option(300, min=1, help="loss evaluations (L-BFGS) or iterations (Adam)")
    optimizer: Literal["lbfgs", "adam"] = option("lbfgs", help="the optimiser of the image's pixels")
    lr: float | None = option(
        None, above=0, default_text="1 for lbfgs, 0.02 for adam", help="step size, on the 0..1 pixel scale"
    )
    content_weight: float = option(1.0, min=0, help="content loss weight (conv2_2)")
    style_weight: float = option(
        1e6, min=0, help="style loss weight (Gram matrices at conv1_1, conv1_2, conv2_1, conv2_2, conv3_1)"
    )
    device: str = option("auto", help=DEVICE_HELP)
    progress: bool = progress_option()
