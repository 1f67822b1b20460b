"""The on-disk cache of built artifacts (ONNX graphs, TensorRT engines) and the keys that name them.

Everything here is pure and cheap except the file helpers at the bottom, so the key logic is tested
on any machine.  A TensorRT engine is only valid for the exact model weights, shape profile,
precision, GPU and TensorRT version it was built with; ``EngineKey`` holds all of them and its
``digest`` names the file.  Each engine is stored with a JSON sidecar holding its key, so an engine
built for a wider profile (``cyclestream compile --shape 1x3x256x256:8x3x1088x1920``) is found by a
later job that needs any shape inside that profile.

Layout: ``$CYCLESTREAM_CACHE_DIR`` or ``$XDG_CACHE_HOME/cyclestream`` or ``~/.cache/cyclestream``, with
``onnx/`` and ``engines/`` below it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.base import FrameShape
from cyclestream.engine.backends.tensors import padded_size
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import CycleStreamError

log = logging.getLogger("cyclestream")

CACHE_ENV = "CYCLESTREAM_CACHE_DIR"
CACHE_FORMAT = 1  # bump when the way artifacts are built changes, so old ones are not reused

Dims = tuple[int, int, int, int]  # N, C, H, W of the model input (after padding)


def default_cache_dir() -> Path:
    """``$CYCLESTREAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/cyclestream``, else ``~/.cache/cyclestream``."""
    if explicit := os.environ.get(CACHE_ENV):
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cyclestream"


def model_digest(model: LoadedModel) -> str:
    """SHA-256 of the generator's architecture and weights (names, dtypes, shapes and bytes)."""
    h = hashlib.sha256(json.dumps(model.spec.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.generator.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        # flattened first: a size-1 last dim (1x1 conv weights) may carry a stride other than 1
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------- shape profiles

_DIMS = re.compile(r"^\s*(\d+)x(\d+)x(\d+)x(\d+)\s*$")


def parse_dims(text: str) -> Dims:
    """'1x3x256x256' → (1, 3, 256, 256)."""
    m = _DIMS.match(text.lower())
    if not m:
        raise CycleStreamError(f"expected a shape NxCxHxW such as 1x3x256x256, got {text!r}")
    dims = tuple(int(v) for v in m.groups())
    if min(dims) < 1:
        raise CycleStreamError(f"shape {text!r} has a zero dimension")
    return dims  # type: ignore[return-value]


@dataclass(frozen=True)
class ShapeProfile:
    """min / opt / max input shapes (NCHW) an engine accepts; opt is what it is tuned for."""

    min: Dims
    opt: Dims
    max: Dims

    def __post_init__(self) -> None:
        for i, axis in enumerate("NCHW"):
            if not self.min[i] <= self.opt[i] <= self.max[i]:
                raise CycleStreamError(
                    f"shape profile needs min ≤ opt ≤ max on every axis; {axis} is "
                    f"{self.min[i]}, {self.opt[i]}, {self.max[i]}"
                )
        if not self.min[1] == self.opt[1] == self.max[1]:
            raise CycleStreamError("the channel count cannot vary within a shape profile")

    @classmethod
    def parse(cls, text: str) -> ShapeProfile:
        """``OPT``, ``OPT:MAX`` or ``MIN:OPT:MAX``, each ``NxCxHxW``.

        With OPT alone the engine takes exactly that frame size, batches 1..N (so the last, shorter
        batch of a video fits).  With OPT:MAX it takes batches 1..maxN and sides from OPT's up to MAX's.
        """
        parts = [parse_dims(p) for p in text.split(":")]
        if len(parts) == 1:
            opt = parts[0]
            return cls((1, *opt[1:]), opt, opt)  # type: ignore[arg-type]
        if len(parts) == 2:
            opt, mx = parts
            return cls((1, *opt[1:]), opt, mx)  # type: ignore[arg-type]
        if len(parts) == 3:
            return cls(*parts)
        raise CycleStreamError(f"expected OPT, OPT:MAX or MIN:OPT:MAX shapes, got {text!r}")

    @classmethod
    def for_frames(cls, shape: FrameShape, multiple: int, channels: int = 3) -> ShapeProfile:
        """The profile a job of ``shape`` frames needs: its padded size, batches 1..shape.batch."""
        h, w = padded_size(shape.height, shape.width, multiple)
        opt = (shape.batch, channels, h, w)
        return cls((1, channels, h, w), opt, opt)

    def padded(self, multiple: int) -> ShapeProfile:
        """The same profile with every height and width rounded up to the generator's multiple."""

        def pad(d: Dims) -> Dims:
            h, w = padded_size(d[2], d[3], multiple)
            return (d[0], d[1], h, w)

        return ShapeProfile(pad(self.min), pad(self.opt), pad(self.max))

    def covers(self, dims: Dims) -> bool:
        """Whether an input of shape ``dims`` fits this profile."""
        return all(lo <= d <= hi for lo, d, hi in zip(self.min, dims, self.max, strict=True))

    def contains(self, other: ShapeProfile) -> bool:
        """Whether every shape ``other`` accepts fits this profile too."""
        return self.covers(other.min) and self.covers(other.max)

    def to_text(self) -> str:
        return ":".join("x".join(str(v) for v in d) for d in (self.min, self.opt, self.max))


# ----------------------------------------------------------------------------- engine keys


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized TensorRT engine depends on."""

    model: str  # model_digest()
    profile: ShapeProfile
    precision: str
    gpu: str  # device name and compute capability, e.g. "NVIDIA L4 (sm_89)"
    tensorrt: str  # TensorRT version
    variant: str  # "plugins" (torch-tensorrt + Triton kernels) or "native" (ONNX parser)
    format: int = CACHE_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineKey:
        p = data["profile"]
        profile = ShapeProfile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))  # type: ignore[arg-type]
        return cls(**{**data, "profile": profile})

    def digest(self) -> str:
        """A stable name for the engine: SHA-256 of the key as canonical JSON (first 32 hex digits)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:32]

    def same_build(self, other: EngineKey) -> bool:
        """Same model, precision, GPU, TensorRT and variant; the profiles may differ."""
        return dataclasses.replace(self, profile=other.profile) == other


def engine_path(cache_dir: Path, key: EngineKey) -> Path:
    return cache_dir / "engines" / f"{key.digest()}.engine"


def _sidecars(cache_dir: Path) -> Iterator[tuple[Path, EngineKey]]:
    for meta in sorted((cache_dir / "engines").glob("*.json")):
        try:
            key = EngineKey.from_dict(json.loads(meta.read_text()))
        except (OSError, ValueError, KeyError, TypeError, CycleStreamError):
            continue  # a damaged or foreign sidecar: ignore it
        engine = meta.with_suffix(".engine")
        if engine.is_file():
            yield engine, key


def find_engine(cache_dir: Path, key: EngineKey) -> Path | None:
    """The cached engine for ``key``, else one built the same way whose profile contains key's."""
    exact = engine_path(cache_dir, key)
    if exact.is_file():
        return exact
    for engine, other in _sidecars(cache_dir):
        if key.same_build(other) and other.profile.contains(key.profile):
            return engine
    return None


def store_engine(cache_dir: Path, key: EngineKey, data: bytes) -> Path:
    """Write the engine and its JSON sidecar atomically; returns the engine's path."""
    path = engine_path(cache_dir, key)
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    with atomic_output(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(key.to_dict(), indent=1, sort_keys=True))
    return path


def onnx_cache_path(cache_dir: Path, model: str, precision: str, opset: int) -> Path:
    """Where the exported ONNX graph of a model lives (dynamic batch, height and width)."""
    tag = f"{model}|{precision}|opset{opset}|torch{torch.__version__}|format{CACHE_FORMAT}"
    return cache_dir / "onnx" / f"{hashlib.sha256(tag.encode()).hexdigest()[:32]}.onnx"
