"""``cyclestream generate``: a video of a smooth walk through a generator's latent space.

The walk passes through the latent of each seed in turn, eased (a half-cosine) so it slows into each
one and never jumps: a StyleGAN2's seeds are mapped to w, truncated towards the mean w and
interpolated linearly there, with the generator's fixed noise (nothing shimmers); a DCGAN's z are
interpolated on the sphere (slerp).  The seeds' latents, mapping and truncation are computed once in
PyTorch; each frame's latent then goes through ``--backend`` (engine/backends/latent.py: a StyleGAN2's
synthesis of w, a DCGAN's generator of z, eager or exported).  Frames are encoded by the sink
``translate`` uses, into a temporary file renamed into place when the video is complete.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.latent import open_latent_runner
from cyclestream.engine.backends.tensors import from_model_output
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import BackendError, CheckpointError
from cyclestream.engine.jobs.generate_options import GenerateOptions
from cyclestream.engine.media.animation_video import SRGB
from cyclestream.engine.media.frame import TranslatedFrame, VideoFrame
from cyclestream.engine.media.probe import VideoInfo
from cyclestream.engine.media.sinks import VideoFileSink, check_video_codec
from cyclestream.engine.options import resolve_device

Render = Callable[[torch.Tensor], torch.Tensor]  # walk positions (N,) → images (N, 3, H, W) on the model's range
Walk = Callable[[torch.Tensor], torch.Tensor]  # walk positions (N,) → each frame's latent (N, D)


@dataclass
class GenerateReport:
    output: Path
    frames: int
    fps: Fraction
    size: tuple[int, int]  # (width, height)


def seed_latent(seed: int, size: int) -> torch.Tensor:
    """The latent z (size,) of a seed: N(0, 1) values from a CPU generator seeded with it."""
    return torch.randn(size, generator=torch.Generator().manual_seed(seed))


def walk_positions(frames: int, keys: int) -> torch.Tensor:
    """Positions 0 … keys-1 of each frame (the first on key 0, the last on the last key), each segment
    eased by a half cosine: the walk slows into every key and moves fastest between them."""
    u = torch.linspace(0, keys - 1, frames, dtype=torch.float64)
    segment = u.floor().clamp(max=keys - 2)
    eased = (1 - torch.cos(math.pi * (u - segment))) / 2
    return segment + eased


def lerp(keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(K, D) keys at positions (N,) → (N, D), linearly."""
    i = positions.floor().long().clamp(max=keys.shape[0] - 2)
    t = (positions - i).to(keys.dtype)[:, None]
    return keys[i] * (1 - t) + keys[i + 1] * t


def slerp(keys: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(K, D) keys at positions (N,) → (N, D), along great circles (lengths interpolated linearly)."""
    i = positions.floor().long().clamp(max=keys.shape[0] - 2)
    t = (positions - i).to(keys.dtype)[:, None]
    a, b = keys[i], keys[i + 1]
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    cos = ((a / na) * (b / nb)).sum(1, keepdim=True).clamp(-1, 1)
    omega = torch.acos(cos)
    sin = torch.sin(omega)
    near = sin.abs() < 1e-6  # (almost) the same direction: a straight line
    wa = torch.where(near, 1 - t, torch.sin((1 - t) * omega) / sin.where(~near, torch.ones_like(sin)))
    wb = torch.where(near, t, torch.sin(t * omega) / sin.where(~near, torch.ones_like(sin)))
    direction = wa * (a / na) + wb * (b / nb)
    return direction / direction.norm(dim=1, keepdim=True) * (na * (1 - t) + nb * t)


class Synthesis(nn.Module):
    """A StyleGAN2's per-frame part: w (N, style_dim) → image, with the generator's fixed noise."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.generator.synthesis(w)


class FromNoise(nn.Module):
    """A DCGAN's per-frame part: z (N, nz) → image, the generator on (N, nz, 1, 1)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.generator(z[:, :, None, None])


def frame_latents(model: LoadedModel, options: GenerateOptions, device: torch.device) -> tuple[Walk, nn.Module, str]:
    """The walk (positions → each frame's latent), the module that turns those latents into images, and its
    name.  A StyleGAN2's seeds are mapped to w and truncated here, once per seed; the walk lerps in w."""
    generator = model.generator
    latent = model.family.conditioning[0]
    z = torch.stack([seed_latent(s, latent.size(model.spec)) for s in options.seeds]).to(device)
    if hasattr(generator, "mapping") and hasattr(generator, "synthesis"):  # StyleGAN2: lerp in w
        w = generator.mapping(z)
        if options.truncation < 1:
            mean = generator.average_latent()
            w = mean + options.truncation * (w - mean)
        return lambda positions: lerp(w, positions.to(device)), Synthesis(generator), "synthesis"
    return lambda positions: slerp(z, positions.to(device)), FromNoise(generator), "generator"  # DCGAN: slerp in z


def renderer(model: LoadedModel, options: GenerateOptions, device: torch.device) -> Render:
    """How a walk position becomes an image for this model's family, on ``options.backend``."""
    walk, module, graph = frame_latents(model, options, device)
    size = walk(torch.zeros(1, dtype=torch.float64)).shape[1]
    run = open_latent_runner(options.backend, model, module, graph=graph, size=size, batch=options.batch_size,
                             device=device)  # fmt: skip
    return lambda positions: run(walk(positions))


def _generatable(model: LoadedModel) -> None:
    if model.family.image_input or not any(c.kind == "latent" for c in model.family.conditioning):
        raise CheckpointError(
            f"{model.path} is a {model.family.name} model ({model.spec.official_name}): it translates images; "
            "generate needs a generator of images from a latent z (stylegan2, dcgan)"
        )


def _frames(render: Render, positions: torch.Tensor, batch: int, model: LoadedModel) -> Iterator[np.ndarray]:
    for start in range(0, positions.shape[0], batch):
        images = render(positions[start : start + batch])
        out = from_model_output(images, images.shape[2], images.shape[3], model.family.value_range)
        yield from out.cpu().numpy()


def generate(
    model_path: str | os.PathLike[str], output_path: str | os.PathLike[str], options: GenerateOptions
) -> GenerateReport:
    """Write a ``options.walk`` second latent walk of the generator in ``model_path`` to ``output_path``."""
    output = Path(output_path)
    check_video_codec(options.encode.codec)
    model = load_model(model_path)
    _generatable(model)
    device = torch.device(resolve_device(options.device))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BackendError("--device cuda was asked for, but PyTorch sees no CUDA device here")
    model.generator.to(device)
    rate = Fraction(options.fps).limit_denominator(1001)
    time_base = 1 / rate
    positions = walk_positions(options.frames, len(options.seeds))
    with torch.inference_mode():
        render = renderer(model, options, device)
        first = next(_frames(render, positions[:1], 1, model))
        height, width = first.shape[:2]
        info = VideoInfo(width, height, "", time_base, rate, options.frames, float(options.frames / rate), 0,
                         colour=SRGB)  # fmt: skip
        with (
            atomic_output(output) as tmp,
            tqdm(total=options.frames, unit="frame", desc=output.name, disable=not options.progress) as bar,
        ):
            sink = VideoFileSink(tmp, info, options=options.encode, label=str(output))
            try:
                for i, image in enumerate(_frames(render, positions, options.batch_size, model)):
                    sink.write(TranslatedFrame(image, VideoFrame(image, i, time_base, i)))
                    bar.update(1)
            except BaseException:
                sink.abort()
                raise
            sink.close()
    return GenerateReport(output, options.frames, rate, (width, height))
