"""Load and save generators.

Two formats, told apart by their bytes, not their names:

* the official project's ``*_net_G.pth`` (a pickled state dict): loaded with ``weights_only=True``,
  patched as the official ``__patch_instance_norm_state_dict`` does (old files carry InstanceNorm
  running stats and ``num_batches_tracked``), ``module.`` prefixes stripped, and the architecture
  inferred from the keys and shapes alone;
* the project's own model file: safetensors weights with JSON metadata in the safetensors header
  (``{"cyclestream": {"generator": GeneratorSpec, "domains": ..., "training": ...}}``).

Nothing is read before ``engine/model_files.py`` has checked the file (a regular file whose declared
sizes fit in it), and no generator is built for real before its weights were compared, name by name
and shape by shape, with one built on the meta device: a file cannot make the loader allocate much
more than its own size.
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
from cyclestream.engine.model_files import ModelFile, check_tensor_bytes, open_model_file, pickled_objects
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


def _torch_load(model_file: ModelFile) -> dict[str, torch.Tensor]:
    path = model_file.path
    try:
        obj = torch.load(model_file.file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # the weights-only unpickler met a class or function
            raise pickled_objects(path) from None
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
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    check_tensor_bytes(model_file, len(state), sum(v.numel() * v.element_size() for v in state.values()))
    return state


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


def _expected_shapes(spec: GeneratorSpec, path: Path) -> dict[str, tuple[int, ...]]:
    """The state dict shapes of ``spec``'s generator, built on the meta device (nothing allocated)."""
    try:
        with torch.device("meta"):
            generator = build_generator(spec)
    except Exception as e:  # sizes no tensor can have
        raise CheckpointError(f"{path}: no {spec.official_name} generator can be built ({first_line(e)})") from None
    return {k: tuple(v.shape) for k, v in generator.state_dict().items()}


def _fitting_keys(spec: GeneratorSpec, shapes: dict[str, tuple[int, ...]], path: Path) -> list[str]:
    """The keys of ``shapes`` to load into a ``spec`` generator, checked before any weight is read or any
    generator is built for real: every weight it has, at its shape."""
    expected = _expected_shapes(spec, path)
    # Old zoo files carry InstanceNorm running stats; nothing in this model wants them.
    keys = [k for k in shapes if k in expected or not k.endswith(_STAT_SUFFIXES)]
    keys = [k for k in keys if not k.endswith("num_batches_tracked")]
    unexpected = sorted(set(keys) - set(expected))
    missing = sorted(k for k in set(expected) - set(keys) if not k.endswith("num_batches_tracked"))
    wrong_shape = [k for k in keys if k in expected and tuple(shapes[k]) != expected[k]]
    if unexpected or missing or wrong_shape:
        detail = (unexpected and f"unexpected {unexpected[:3]}") or (missing and f"missing {missing[:3]}")
        detail = detail or f"shape mismatch at {wrong_shape[:3]}"
        raise CheckpointError(f"{path}: weights do not fit a {spec.official_name} generator ({detail})")
    return keys


def _built(spec: GeneratorSpec, state: dict[str, torch.Tensor]) -> nn.Module:
    generator = build_generator(spec)
    generator.load_state_dict(state, strict=False)
    return generator.eval()


def _load_official(model_file: ModelFile) -> LoadedModel:
    state = clean_official_state_dict(_torch_load(model_file))
    spec = infer_spec(state)
    keys = _fitting_keys(spec, {k: tuple(v.shape) for k, v in state.items()}, model_file.path)
    generator = _built(spec, {k: state[k].float() for k in keys})
    return LoadedModel(generator, spec, model_file.path, "official", {"source": "pytorch-CycleGAN-and-pix2pix"})


def _metadata(model_file: ModelFile) -> dict[str, Any]:
    path = model_file.path
    if model_file.kind != "safetensors":
        raise CheckpointError(f"{path} is not a safetensors file")
    raw = model_file.metadata.get(METADATA_KEY)
    if raw is None:
        raise CheckpointError(f"{path} is a safetensors file without cyclestream metadata (no generator spec)")
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: damaged cyclestream metadata ({first_line(e)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("generator"), dict):
        raise CheckpointError(f"{path}: metadata names no generator architecture")
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a cyclestream model file."""
    with open_model_file(path) as model_file:
        return _metadata(model_file)


def _load_cyclestream(model_file: ModelFile) -> LoadedModel:
    path = model_file.path
    meta = _metadata(model_file)
    try:
        spec = GeneratorSpec.from_dict(meta["generator"])
    except TypeError as e:
        raise CheckpointError(f"{path}: damaged generator metadata ({first_line(e)})") from None
    if spec.n_blocks > len(model_file.tensors):  # every block has weights: its modules are not even built
        raise CheckpointError(f"{path}: metadata declares {spec.n_blocks} blocks for {len(model_file.tensors)} tensors")
    keys = _fitting_keys(spec, model_file.tensors, path)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k).float() for k in keys}
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read weights ({first_line(e)})") from None
    return LoadedModel(_built(spec, state), spec, path, "cyclestream", meta)


def load_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load any supported generator file; raises CheckpointError with a one-line reason otherwise.

    Only a regular file is opened, and only after the sizes it declares fit in it (engine/model_files.py)."""
    with open_model_file(path) as model_file:
        if model_file.kind == "safetensors":
            return _load_cyclestream(model_file)
        return _load_official(model_file)


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
