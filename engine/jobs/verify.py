"""Checking a backend against eager fp32: random-weight models, real-ish frames, relative L2 error.

Shared by the backend tests, ``benchmarks/bench_backends.py`` and ``benchmarks/gpu_check.py``.  Errors
are measured on the generator's float output (before the uint8 rounding, which would hide them):
every backend has ``infer(x)``, the generator on a padded float NCHW input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.backends.tensors import to_model_input
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.measure import relative_l2
from cyclestream.engine.media.sources import VideoFileSource
from cyclestream.engine.models import GeneratorSpec, build_generator

__all__ = ["TOLERANCE", "backend_output", "eager_output", "model_input", "random_model", "relative_l2", "sample_frames"]

# Relative L2 error allowed against eager fp32, by precision, for the small generators of the tests
# (ngf 4-8, 1-2 blocks), where ONNX Runtime and OpenVINO fp32 measure ≤ 1e-5 and bf16 ≈ 1.4e-2.  Random
# N(0, 0.02) weights (the official init) amplify rounding with depth: the official 9-block generator
# at 256² measures ~1e-4 (ONNX Runtime), ~4e-4 (OpenVINO fp32), ~2.6e-2 (bf16, eager or OpenVINO),
# 1e-5 (torch.compile); see benchmarks/bench_backends.py.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 3e-2}


def init_normal(generator: nn.Module, std: float = 0.02, seed: int = 0) -> nn.Module:
    """The official init: conv weights ~ N(0, std), biases 0 (BatchNorm weights ~ N(1, std))."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in generator.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
                m.weight.normal_(0.0, std, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, std, generator=gen)
                m.bias.zero_()
    return generator


def random_model(spec: GeneratorSpec | None = None, seed: int = 0) -> LoadedModel:
    """A generator with the official random init, as a LoadedModel (the official 9-block by default)."""
    spec = spec or GeneratorSpec()
    generator = init_normal(build_generator(spec), seed=seed).eval()
    return LoadedModel(generator, spec, Path(f"<random {spec.official_name} seed {seed}>"), "cyclestream")


def sample_frames(n: int, height: int, width: int, *, clip: Path | None = None) -> torch.Tensor:
    """uint8 (n, height, width, 3) real-ish frames: frames of ``clip`` (the command line passes the bundled
    demo clip), else a synthetic pattern."""
    frames: list[np.ndarray] = []
    try:
        if clip is None:
            raise FileNotFoundError("no clip given")
        source = VideoFileSource(clip, size=(width, height), audio=False)
        try:
            for frame in source.frames():
                if frame.index % 7 == 3:
                    frames.append(frame.image)
                if len(frames) == n:
                    break
        finally:
            source.close()
    except Exception:
        frames = []
    if len(frames) < n:
        from cyclestream.engine.media.synthetic import synthetic_frame

        frames += [synthetic_frame(i, width, height) for i in range(len(frames), n)]
    return torch.from_numpy(np.stack(frames[:n]))


def model_input(model: LoadedModel, frames: torch.Tensor) -> torch.Tensor:
    """The padded float NCHW input the generator sees for these uint8 frames (contiguous)."""
    return to_model_input(frames, model.spec.size_multiple, value_range=model.family.value_range,
                          channels=model.spec.image_channels).contiguous()


@torch.inference_mode()
def eager_output(model: LoadedModel, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """The generator in eager mode on the CPU: fp32 (the reference) or under bf16 autocast."""
    generator = model.generator.to("cpu").float().eval()
    if precision == "fp32":
        return generator(x.float().cpu())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return generator(x.float().cpu()).float()


def backend_output(backend: Backend, model: LoadedModel, x: torch.Tensor) -> torch.Tensor:
    """A prepared backend's float output for the padded input ``x``."""
    return backend.infer(x).float().cpu()
