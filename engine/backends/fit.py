"""Will a frame fit?  Checked before a backend is prepared, so a job fails in one plain line up front
instead of in PyTorch's jargon or the allocator halfway through.  No frame fits a model whose family
takes no image (DCGAN generates from a latent z)."""

from __future__ import annotations

import os

import torch

from cyclestream.engine.backends.tensors import padded_size
from cyclestream.engine.errors import CheckpointError, MediaError
from cyclestream.engine.models import FamilySpec

# Peak memory of one inference ≈ this many copies of the largest activation (ngf channels at full
# resolution): a layer's padded input, its output, the norm's output and the allocator's slack.
_LIVE_COPIES = 4
_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}


def estimate_bytes(spec: FamilySpec, batch: int, height: int, width: int, *, precision: str = "fp32") -> int:
    """Rough peak memory (bytes) of running the generator on a batch of frames of this size."""
    h, w = padded_size(height, width, spec.size_multiple)
    return _LIVE_COPIES * batch * spec.ngf * h * w * _BYTES.get(precision, 4)


def available_bytes(device: str) -> int | None:
    """Memory the job can still take on ``device``; None when it cannot be told."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_frame_fits(spec: FamilySpec, batch: int, height: int, width: int, *, precision: str, device: str) -> None:
    """A MediaError for a frame too small for the generator, or too large for the device's memory; a
    CheckpointError for a model that takes no frames at all."""
    spec.family.require_image_input(spec, "this model")
    channels = (spec.image_channels, int(getattr(spec, "output_nc", 3)))
    if not set(channels) <= {1, 3}:
        raise CheckpointError(f"{spec.official_name} takes {channels[0]} and gives {channels[1]} image channels: "
                              "frames convert to and from 1 (grey) or 3 (RGB) only")  # fmt: skip
    if min(height, width) < spec.min_side:
        raise MediaError(
            f"frames of {width}x{height} are too small for {spec.official_name}: it needs at least "
            f"{spec.min_side} pixels a side (scale them up with --size)"
        )
    need = estimate_bytes(spec, batch, height, width, precision=precision)
    have = available_bytes(device)
    if have is not None and need > have:
        raise MediaError(
            f"a batch of {batch} {width}x{height} frames needs about {_gb(need)} for {spec.official_name} "
            f"(ngf {spec.ngf}) at {precision}, more than the {_gb(have)} free on {device}: "
            "scale it down with --size (e.g. --size 1920x1080) or lower --batch-size"
        )
