"""VGG features for perceptual losses, read from a torchvision-format state dict the user names.

The file holds ``features.N.weight`` / ``features.N.bias`` (``classifier.*`` is ignored), as
``torchvision.models.vgg16(weights="IMAGENET1K_V1").state_dict()`` (or vgg19) saves them.  The layer list
is rebuilt from the indices: a 3×3 convolution at N and its ReLU at N + 1; a gap of three indices means a
2×2 max pool after that ReLU, which starts the next block.  Layers are named as in the papers: the
``n``-th convolution of block ``b`` is ``conv{b}_{n}``, its ReLU ``relu{b}_{n}``.  Images go in on the
0..255 scale and are normalised with ImageNet's mean and standard deviation, as torchvision's weights
expect.  Nothing is downloaded.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import nn

from cyclestream.engine.errors import CheckpointError, first_line
from cyclestream.engine.model_files import open_model_file
from cyclestream.trainer.options import TrainingError

WHERE = (
    "--vgg takes torchvision's ImageNet VGG16 or VGG19 state dict, e.g. "
    "https://download.pytorch.org/models/vgg16-397923af.pth (or "
    "torch.save(torchvision.models.vgg16(weights='IMAGENET1K_V1').state_dict(), 'vgg16.pth'))"
)
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class VGGFeatures(nn.Module):
    """VGG's ``features`` up to the last layer asked for; ``forward`` returns the named activations."""

    def __init__(self, layers: nn.Sequential, names: dict[int, str]) -> None:
        super().__init__()
        self.features = layers
        self.names = names  # index in features → layer name
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255.0, persistent=False)
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    @property
    def layer_names(self) -> list[str]:
        return [self.names[i] for i in sorted(self.names)]

    def forward(self, pixels: torch.Tensor, wanted: tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The activations named in ``wanted`` for images on the 0..255 scale."""
        x = (pixels - self.mean) / self.std
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            name = self.names.get(i)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out


def _fail(path: Path, why: str) -> TrainingError:
    return TrainingError(f"{path}: {why}; {WHERE}")


def vgg_layers(state: dict[str, torch.Tensor], path: Path) -> tuple[nn.Sequential, dict[int, str]]:
    """The ``features`` Sequential and its layer names from a state dict's ``features.N`` tensors."""
    pattern = re.compile(r"(?:module\.)?features\.(\d+)\.(weight|bias)$")
    convs: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if m := pattern.match(key):
            convs.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not convs:
        raise _fail(path, "no VGG features.N.weight tensors in it")
    order = sorted(convs)
    layers: list[nn.Module] = []
    names: dict[int, str] = {}
    block, n, channels = 1, 0, 3
    for k, index in enumerate(order):
        weight, bias = convs[index].get("weight"), convs[index].get("bias")
        if weight is None or bias is None or weight.ndim != 4 or tuple(weight.shape[2:]) != (3, 3):
            raise _fail(path, f"features.{index} is not a 3x3 convolution with a bias (a batch-norm VGG?)")
        if int(weight.shape[1]) != channels:
            raise _fail(path, f"features.{index} takes {int(weight.shape[1])} channels, not {channels}")
        if index != len(layers):
            raise _fail(path, f"unexpected layer gap before features.{index}")
        conv = nn.Conv2d(channels, int(weight.shape[0]), 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(weight.float())
            conv.bias.copy_(bias.float())
        n += 1
        names[len(layers)], names[len(layers) + 1] = f"conv{block}_{n}", f"relu{block}_{n}"
        layers += [conv, nn.ReLU()]
        channels = int(weight.shape[0])
        gap = (order[k + 1] - index) if k + 1 < len(order) else 2
        if gap == 3:
            layers.append(nn.MaxPool2d(2, 2))
            block, n = block + 1, 0
        elif gap != 2:
            raise _fail(path, f"unexpected layer gap after features.{index}")
    return nn.Sequential(*layers), names


def load_vgg(path: Path, wanted: tuple[str, ...]) -> VGGFeatures:
    """The VGG of ``path`` cut after the last of ``wanted``; a one-line TrainingError saying where to get one."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        with open_model_file(path) as model_file:
            obj = torch.load(model_file.file, map_location="cpu", weights_only=True)
    except CheckpointError as e:
        raise TrainingError(f"{e}; {WHERE}") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as e:
        raise _fail(path, f"not a readable PyTorch state dict ({first_line(e)})") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise _fail(path, f"holds a {type(obj).__name__}, not a state dict")
    layers, names = vgg_layers({str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}, path)
    missing = [w for w in wanted if w not in names.values()]
    if missing:
        raise _fail(path, f"this VGG has no {', '.join(missing)} (layers {names[0]}..{names[max(names)]})")
    last = max(i for i, name in names.items() if name in wanted)
    return VGGFeatures(nn.Sequential(*list(layers)[: last + 1]), {i: s for i, s in names.items() if i <= last})


def gram(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (N, C, C) Gram matrices divided by C·H·W (fast neural style's normalisation)."""
    n, c, h, w = features.shape
    f = features.reshape(n, c, h * w)
    return f.bmm(f.transpose(1, 2)) / (c * h * w)
