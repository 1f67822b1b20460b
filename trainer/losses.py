"""GAN losses and the image pool (the official ``GANLoss`` and ``ImagePool``)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class GANLoss:
    """LSGAN (mean squared error to 1/0) or vanilla GAN (BCE on logits), against a target of the
    prediction's shape: ``loss(prediction, target_is_real)``."""

    def __init__(self, mode: str) -> None:
        if mode not in ("lsgan", "vanilla"):
            raise ValueError(f"unknown GAN loss {mode!r} (expected lsgan or vanilla)")
        self.mode = mode

    def __call__(self, prediction: torch.Tensor, target_is_real: bool) -> torch.Tensor:
        prediction = prediction.float()
        target = torch.full_like(prediction, 1.0 if target_is_real else 0.0)
        if self.mode == "lsgan":
            return F.mse_loss(prediction, target)
        return F.binary_cross_entropy_with_logits(prediction, target)


class ImagePool:
    """A buffer of up to ``size`` generated images (Shrivastava et al.), as the official one:
    while filling, each image goes in and is returned; once full, each query returns, with
    probability 1/2, a stored image (replaced by the new one), else the new image.

    It draws from its own generator so its choices are saved and restored with the training state
    (``state_dict``/``load_state_dict``: tensors and ints only).  Its draws are the official pool's,
    made from that generator: ``random.uniform(0, 1)`` is one ``torch.rand(())`` and
    ``random.randint(0, size - 1)`` one ``torch.randint(0, size, ())``, in the same order (the check
    against the official step, tests/trainer/test_train_objective.py, replays them so)."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        out = []
        for image in images.detach():
            image = image.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(image)
                out.append(image)
            elif torch.rand((), generator=self.generator).item() > 0.5:
                i = int(torch.randint(0, self.size, (), generator=self.generator).item())
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image)
        return torch.cat(out, 0)

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "images": [t.cpu() for t in self.images], "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.size = int(state["size"])
        self.images = [t.to(device) for t in state["images"]]
        self.generator.set_state(state["rng"])
