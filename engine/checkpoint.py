"""Load and save generators.

Two formats, told apart by their bytes, not their names:

* the official project's ``*_net_G.pth`` (a pickled state dict): loaded with ``weights_only=True``,
  patched as the official ``__patch_instance_norm_state_dict`` does (old files carry InstanceNorm
  running stats and ``num_batches_tracked``), ``module.`` prefixes stripped, and the architecture
  inferred from the keys and shapes alone;
* the project's own model file: safetensors weights with JSON metadata in the safetensors header
  (``{"cyclestream": {"generator": GeneratorSpec, "domains": ..., "training": ...}}``).
"""

from __future__ import annotations

import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.errors import CheckpointError, first_line
from cyclestream.engine.models import GeneratorSpec, build_generator

FORMAT_VERSION = 1
METADATA_KEY = "cyclestream"
_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class LoadedModel:
    """A generator ready for inference (eval mode, CPU, fp32) and what is known about it."""

    generator: nn.Module
    spec: GeneratorSpec
    path: Path
    format: str  # "official" or "cyclestream"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.generator.parameters())


# ----------------------------------------------------------------------------- reading files


def _sniff(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise CheckpointError(f"cannot read model {path}: {e.strerror or e}") from None
    if len(head) >= 9:
        header_len = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and 0 < header_len < 100_000_000:
            return "safetensors"
    if head[:2] == b"PK" or head[:1] == b"\x80":
        return "torch"
    raise CheckpointError(f"{path} is not a model file (neither a PyTorch .pth nor a safetensors file)")


def _torch_load(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # the weights-only unpickler met a class or function
            raise CheckpointError(
                f"{path} holds pickled Python objects, not just weights; refusing to load it "
                "(checkpoints are read with weights_only=True)"
            ) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (damaged pickle)") from None
    except Exception as e:  # torch raises RuntimeError/EOFError/... for damaged archives
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first_line(e)})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path} does not hold a state dict (found {type(obj).__name__})")
    nested = [k for k, v in obj.items() if isinstance(v, dict) and k != "_metadata"]
    if nested:
        raise CheckpointError(
            f"{path} looks like a training state with several models ({', '.join(map(str, nested[:4]))}), "
            "not a generator; pass the generator's own model file"
        )
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def clean_official_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip ``module.`` (DataParallel) prefixes and ``_metadata``; keep everything else."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "_metadata":
            continue
        while key.startswith("module."):
            key = key[len("module.") :]
        out[key] = value
    return out


# ----------------------------------------------------------------------------- inferring the architecture


def _conv_indices(state: dict[str, torch.Tensor], prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.weight$")
    found = [int(m.group(1)) for k, v in state.items() if (m := pattern.match(k)) and v.ndim == 4]
    return sorted(found)


def _infer_resnet(state: dict[str, torch.Tensor]) -> GeneratorSpec:
    first = state["model.1.weight"]
    if first.ndim != 4 or first.shape[2:] != (7, 7):
        raise CheckpointError("first layer is not the 7x7 convolution of a ResnetGenerator")
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))})
    if not blocks or blocks != list(range(blocks[0], blocks[0] + len(blocks))):
        raise CheckpointError("no contiguous residual blocks found (model.N.conv_block.*)")
    convs = _conv_indices(state, f"model.{blocks[0]}.conv_block.")
    layouts = {(1, 5): ("reflect", False), (1, 6): ("reflect", True), (0, 3): ("zero", False), (0, 4): ("zero", True)}
    if tuple(convs) not in layouts:
        raise CheckpointError(f"unrecognised residual block layout (convolutions at {convs})")
    padding, dropout = layouts[tuple(convs)]
    last = _conv_indices(state, "model.")[-1]
    output_nc = int(state[f"model.{last}.weight"].shape[0])
    norm = "batch" if "model.2.weight" in state else "instance"
    return GeneratorSpec("resnet", input_nc, output_nc, ngf, len(blocks), norm, dropout, padding)


def _infer_unet(state: dict[str, torch.Tensor]) -> GeneratorSpec:
    first = state["model.model.0.weight"]
    ngf, input_nc = int(first.shape[0]), int(first.shape[1])
    output_nc = int(state["model.model.3.weight"].shape[1])  # ConvTranspose2d weight: (in, out, k, k)
    levels, prefix = 1, "model.model.1.model."
    while f"{prefix}1.weight" in state:
        levels += 1
        prefix += "3.model."
    norm = "batch" if "model.model.1.model.2.weight" in state else "instance"
    # Dropout in a U-Net adds no keys; it only matters in training mode.
    return GeneratorSpec("unet", input_nc, output_nc, ngf, levels, norm, False, "reflect")


def infer_spec(state: dict[str, torch.Tensor]) -> GeneratorSpec:
    """The official architecture that has exactly these keys and shapes."""
    if "model.1.weight" in state and any(".conv_block." in k for k in state):
        return _infer_resnet(state)
    if "model.model.0.weight" in state:
        return _infer_unet(state)
    w0 = state.get("model.0.weight")
    if w0 is not None and w0.ndim == 4 and w0.shape[2:] == (4, 4):
        raise CheckpointError("this is a PatchGAN discriminator (net_D), not a generator; pass a *_net_G*.pth")
    sample = ", ".join(list(state)[:3])
    raise CheckpointError(f"not a CycleGAN/pix2pix generator state dict (keys start: {sample})")


def _load_into(spec: GeneratorSpec, state: dict[str, torch.Tensor], path: Path) -> nn.Module:
    generator = build_generator(spec)
    expected = generator.state_dict()
    # Old zoo files carry InstanceNorm running stats; nothing in this model wants them.
    state = {k: v for k, v in state.items() if k in expected or not k.endswith(_STAT_SUFFIXES)}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    unexpected = sorted(set(state) - set(expected))
    missing = sorted(k for k in set(expected) - set(state) if not k.endswith("num_batches_tracked"))
    wrong_shape = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if unexpected or missing or wrong_shape:
        detail = (unexpected and f"unexpected {unexpected[:3]}") or (missing and f"missing {missing[:3]}")
        detail = detail or f"shape mismatch at {wrong_shape[:3]}"
        raise CheckpointError(f"{path}: weights do not fit a {spec.official_name} generator ({detail})")
    generator.load_state_dict(state, strict=False)
    return generator.eval()


def load_official(path: Path) -> LoadedModel:
    state = clean_official_state_dict(_torch_load(path))
    spec = infer_spec(state)
    generator = _load_into(spec, {k: v.float() for k, v in state.items()}, path)
    return LoadedModel(generator, spec, path, "official", {"source": "pytorch-CycleGAN-and-pix2pix"})


def read_metadata(path: Path) -> dict[str, Any]:
    """The JSON metadata of a cyclestream model file."""
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable safetensors file ({e})") from None
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without cyclestream metadata (no generator spec)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: damaged cyclestream metadata ({e})") from None
    if "generator" not in meta:
        raise CheckpointError(f"{path}: metadata names no generator architecture")
    return meta


def load_cyclestream(path: Path) -> LoadedModel:
    meta = read_metadata(path)
    spec = GeneratorSpec.from_dict(meta["generator"])
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k).float() for k in f.keys()}
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read weights ({e})") from None
    return LoadedModel(_load_into(spec, state, path), spec, path, "cyclestream", meta)


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load any supported generator file; raises CheckpointError with a one-line reason otherwise."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    if path.is_dir():
        raise CheckpointError(f"model path is a folder, not a file: {path}")
    return load_cyclestream(path) if _sniff(path) == "safetensors" else load_official(path)


def save_model(
    path: str | os.PathLike[str],
    generator: nn.Module,
    spec: GeneratorSpec,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a cyclestream model file atomically (safetensors weights + JSON metadata)."""
    meta = {"format_version": FORMAT_VERSION, **(metadata or {}), "generator": spec.to_dict()}
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in generator.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    target = Path(path)
    with atomic_output(target) as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return target
