"""Fast neural style: a TransformerNet trained with the perceptual loss of pytorch/examples ``fast_neural_style``.

Per batch of content crops x (pixel values 0..255): y = T(x); with VGG features φ (trainer/vgg.py, the
file of ``--vgg``),

- content: ``content_weight`` · MSE(φ_relu2_2(y), φ_relu2_2(x));
- style: ``style_weight`` · Σ_l MSE(G(φ_l(y)), G(φ_l(s))) over relu1_2, relu2_2, relu3_3, relu4_3, G the
  Gram matrix divided by C·H·W, s the style image at its own size;
- total variation (optional, 0 by default as in the reference): ``tv_weight`` · (mean |∂x y| + mean |∂y y|).

Where this departs from the reference: crops are the project's (resize to ``--load-size``, random crop,
flip) rather than a resize and centre crop.  Adam runs at the reference's rate and β (1e-3, 0.9, 0.999:
trainer/style_options.py).  The generator is the engine's ``fast_style``
family (engine/models/fast_style.py): ``style.safetensors`` loads with ``load_model`` and runs in every job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.images import load_rgb
from cyclestream.engine.models.fast_style import FastStyleSpec, TransformerNet
from cyclestream.trainer.data import SingleDataset, scan_images
from cyclestream.trainer.options import TrainingError, TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task
from cyclestream.trainer.vgg import WHERE, gram, load_vgg

LOSSES = ("content", "style", "tv")
CONTENT_LAYER = "relu2_2"
STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")


def style_pixels(path: Path) -> torch.Tensor:
    """The style image as (1, 3, H, W) pixel values; a one-line TrainingError when it cannot be read."""
    try:
        image = load_rgb(path)
    except MediaError as e:
        raise TrainingError(f"--style: {e}") from None
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].float()


def total_variation(y: torch.Tensor) -> torch.Tensor:
    return (y[:, :, 1:] - y[:, :, :-1]).abs().mean() + (y[:, :, :, 1:] - y[:, :, :, :-1]).abs().mean()


class StyleTask(Task):
    name = "style"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m = options.data, options.model
        assert d.data is not None
        if m.style is None or m.vgg is None:  # checked here, not in validate: a resolved recipe may lack them
            missing = "--style IMAGE, the style image" if m.style is None else f"--vgg FILE; {WHERE}"
            raise TrainingError(f"style needs {missing}")
        size = int(d.crop_size or 256)
        self.dataset = SingleDataset(scan_images(Path(d.data)), int(d.load_size or size), size, d.flip)
        self.spec = FastStyleSpec(ngf=int(m.ngf or 32), n_blocks=int(m.n_blocks if m.n_blocks is not None else 5))
        self.add_net("G", TransformerNet(self.spec))
        self.add_optimizer("G", ["G"])
        self.vgg = load_vgg(Path(m.vgg), (*STYLE_LAYERS, CONTENT_LAYER)).to(self.device)
        with torch.no_grad():
            features = self.vgg(style_pixels(Path(m.style)).to(self.device), STYLE_LAYERS)
            self.style_grams = {name: gram(features[name]) for name in STYLE_LAYERS}

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = (self.to_device(batch)["image"] + 1.0) * 127.5
        m = self.options.model
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            y = self.wrapped["G"](x)
            fy = self.vgg(y, (*STYLE_LAYERS, CONTENT_LAYER))
            with torch.no_grad():
                fx = self.vgg(x, (CONTENT_LAYER,))
            content = m.content_weight * F.mse_loss(fy[CONTENT_LAYER], fx[CONTENT_LAYER])
            style = sum(F.mse_loss(gram(fy[n]), self.style_grams[n].expand(len(x), -1, -1)) for n in STYLE_LAYERS)
            style = m.style_weight * style
            tv = m.tv_weight * total_variation(y)
        self.backward("G", content + style + tv)  # type: ignore[operator]
        self.update("G")
        return {"content": content.detach(), "style": style.detach(), "tv": tv.detach()}  # type: ignore[union-attr]

    def sample_grid(self, count: int) -> np.ndarray:
        """Rows of content crop | stylised, the same fixed crops every epoch."""
        rows = []
        with self.sampling():
            for i in range(count):
                x = self.dataset.fixed(i)["image"][None].to(self.device)  # type: ignore[attr-defined]
                y = self.nets["G"]((x + 1.0) * 127.5).clamp(0, 255) / 127.5 - 1.0
                rows.append([x[0], y[0]])
        return grid(rows)

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        return [save_model(run_dir / "style.safetensors", self.nets["G"], self.spec, {"network": "G", **info})]
