"""Gatys et al.'s neural style for one still: the image's pixels optimised against VGG features.

The settings are those of the PyTorch neural style tutorial: the image starts as the content image (on
the 0..1 scale, clamped to it before every evaluation and at the end); content loss MSE at conv2_2
(``conv_4``), style loss the MSE of Gram matrices (divided by C·H·W) at conv1_1, conv1_2, conv2_1,
conv2_2, conv3_1 (``conv_1..conv_5``); weights 1 and 1e6; L-BFGS, ``steps`` counting loss evaluations
(in rounds of up to 20, so the last round may run a few past it; Adam: iterations).  The style image is
used at its own size.  The result is written atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.images import load_rgb, save_rgb
from cyclestream.engine.options import resolve_device
from cyclestream.engine.paths import check_not_input
from cyclestream.trainer.gatys_options import StylizeOptions
from cyclestream.trainer.options import TrainingError
from cyclestream.trainer.vgg import gram, load_vgg

log = logging.getLogger("cyclestream")

CONTENT_LAYERS = ("conv2_2",)
STYLE_LAYERS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1")
DEFAULT_LR = {"lbfgs": 1.0, "adam": 0.02}


@dataclass(frozen=True)
class StylizeResult:
    """What ``stylize`` wrote and the losses of its last evaluation (weighted)."""

    path: Path
    steps: int
    content_loss: float
    style_loss: float


def _image(path: Path, what: str) -> torch.Tensor:
    try:
        image = load_rgb(path)
    except MediaError as e:
        raise TrainingError(f"{what}: {e}") from None
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float() / 255.0


def stylize(content: Path, out: Path, options: StylizeOptions) -> StylizeResult:
    """Optimise ``content`` towards ``options.style``'s style; write the result to ``out``."""
    content, out = Path(content), Path(out)
    check_not_input(content, out)
    device = torch.device(resolve_device(options.device))
    vgg = load_vgg(options.vgg, STYLE_LAYERS + CONTENT_LAYERS).to(device)
    target = _image(content, "content image").to(device)
    style = _image(options.style, "--style").to(device)
    with torch.no_grad():
        content_targets = vgg(target * 255.0, CONTENT_LAYERS)
        style_targets = {n: gram(f) for n, f in vgg(style * 255.0, STYLE_LAYERS).items()}
    image = target.clone().requires_grad_(True)
    lr = options.lr if options.lr is not None else DEFAULT_LR[options.optimizer]
    optimizer: torch.optim.Optimizer
    if options.optimizer == "lbfgs":
        optimizer = torch.optim.LBFGS([image], lr=lr, max_iter=min(20, options.steps))
    else:
        optimizer = torch.optim.Adam([image], lr=lr)
    evaluations = 0
    last = (0.0, 0.0)
    bar = tqdm(total=options.steps, desc="stylize", unit="step", disable=not options.progress, leave=False)

    def closure() -> torch.Tensor:
        nonlocal evaluations, last
        with torch.no_grad():
            image.clamp_(0, 1)
        optimizer.zero_grad()
        features = vgg(image * 255.0, STYLE_LAYERS + CONTENT_LAYERS)
        c = options.content_weight * sum(F.mse_loss(features[n], content_targets[n]) for n in CONTENT_LAYERS)
        s = options.style_weight * sum(F.mse_loss(gram(features[n]), style_targets[n]) for n in STYLE_LAYERS)
        loss = c + s
        loss.backward()  # type: ignore[union-attr]
        evaluations += 1
        last = (float(c.detach()), float(s.detach()))  # type: ignore[union-attr]
        bar.update(1)
        bar.set_postfix_str(f"content={last[0]:.3g} style={last[1]:.3g}", refresh=False)
        return loss  # type: ignore[return-value]

    try:
        while evaluations < options.steps:
            if options.optimizer == "lbfgs":
                optimizer.step(closure)  # type: ignore[arg-type]
            else:
                closure()
                optimizer.step()
            if evaluations == 0:  # L-BFGS found nothing to do
                break
    finally:
        bar.close()
    with torch.no_grad():
        result = image.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).cpu().numpy()
    save_rgb(result, out)
    log.info("stylized %s in %d steps (content %.4g, style %.4g): %s", content, evaluations, *last, out)
    return StylizeResult(out, evaluations, *last)
