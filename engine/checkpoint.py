"""Load and save generators.

Two formats, told apart by their bytes, not their names:

* a published ``.pth`` (a pickled state dict: the official project's ``*_net_G.pth``, the dcgan
  example's ``netG_epoch_N.pth``): loaded with ``weights_only=True``, patched as the official
  ``__patch_instance_norm_state_dict`` does (old files carry InstanceNorm running stats and
  ``num_batches_tracked``), ``module.`` prefixes stripped, and the architecture recognised from the keys
  and shapes alone by the model families' recognisers (engine/models/registry.py);
* the project's own model file: safetensors weights with JSON metadata in the safetensors header
  (``{"cyclestream": {"generator": spec, "domains": ..., "training": ...}}``, the spec's ``kind``
  naming its family; metadata that names no generator, as DCGAN runs wrote, leaves the architecture
  to the recognisers too).

Nothing is read before ``engine/model_files.py`` has checked the file (a regular file whose declared
sizes fit in it), and no generator is built for real before its weights were compared, name by name
and shape by shape, with one built on the meta device: a file cannot make the loader allocate much
more than its own size.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
from collections.abc import Mapping
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
from cyclestream.engine.models import Family, FamilySpec, GeneratorSpec, build_generator, families, family_named
from cyclestream.engine.models.family import Shapes

FORMAT_VERSION = 1
METADATA_KEY = "cyclestream"
_STAT_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")


@dataclass
class LoadedModel:
    """A generator ready for inference (eval mode, CPU, fp32) and what is known about it."""

    generator: nn.Module
    spec: FamilySpec  # a GeneratorSpec for the resnet, unet and mobile families
    path: Path
    format: str  # "official" or "cyclestream"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def family(self) -> Family:
        """The family's declaration: its value range, its inputs, its size rules."""
        return self.spec.family

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.generator.parameters())

    def require_image_input(self) -> None:
        """A CheckpointError naming the file when the model takes no image (DCGAN): nothing to translate."""
        self.family.require_image_input(self.spec, str(self.path))


# ----------------------------------------------------------------------------- reading files


# A training checkpoint of rosinality/stylegan2-pytorch: the models' state dicts beside the optimisers'
# and its argparse.Namespace (plain attributes, the one class allowed to the weights-only unpickler, and
# only for these loads); the generator used for sampling is "g_ema", else "g".
TRAINING_GENERATORS = ("g_ema", "g")
TRAINING_EXTRAS = ("latent_avg",)  # tensors kept beside the generator (the mean w of converted files)


def _training_generator(obj: dict[Any, Any]) -> tuple[dict[Any, Any], dict[str, torch.Tensor]]:
    """A training checkpoint's generator state dict and its extra tensors; other dicts unchanged."""
    for name in TRAINING_GENERATORS:
        state = obj.get(name)
        if isinstance(state, dict) and state:
            extras = {k: v for k in TRAINING_EXTRAS if isinstance(v := obj.get(k), torch.Tensor)}
            return state, extras
    return obj, {}


def _torch_load(model_file: ModelFile, extras: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The state dict a file holds; ``extras`` receives a training checkpoint's extra tensors."""
    path = model_file.path
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            obj = torch.load(model_file.file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" in str(e):  # the weights-only unpickler met a class or function
            raise pickled_objects(path) from None
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (damaged pickle)") from None
    except Exception as e:  # torch raises RuntimeError/EOFError/... for damaged archives
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({first_line(e)})") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict):
        obj, found = _training_generator(obj)
        if extras is not None:
            extras.update(found)
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


def infer_spec(state: Mapping[str, torch.Tensor] | Shapes) -> FamilySpec:
    """The architecture that has exactly these keys and shapes (tensors, or their shapes), asked of every
    family's recogniser in order."""
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()}
    for family in families():
        try:
            spec = family.recognise(shapes) if family.recognise is not None else None
        except (IndexError, KeyError, TypeError, ValueError) as e:  # a layout too broken for the recogniser
            raise CheckpointError(f"a damaged {family.name} generator state dict ({first_line(e)})") from None
        if spec is not None:
            return spec
    w0 = shapes.get("model.0.weight")
    if w0 is not None and len(w0) == 4 and w0[2:] == (4, 4):
        raise CheckpointError("this is a PatchGAN discriminator (net_D), not a generator; pass a *_net_G*.pth")
    sample = ", ".join(list(shapes)[:3])
    known = ", ".join(f.name for f in families() if f.recognise is not None)
    raise CheckpointError(
        f"not a CycleGAN/pix2pix generator state dict, nor one of another known family ({known}); keys start: {sample}"
    )


def _recognised(state: Mapping[str, torch.Tensor] | Shapes, path: Path) -> FamilySpec:
    try:
        return infer_spec(state)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _expected_shapes(spec: FamilySpec, path: Path) -> dict[str, tuple[int, ...]]:
    """The state dict shapes of ``spec``'s generator, built on the meta device (nothing allocated)."""
    try:
        with torch.device("meta"):
            generator = build_generator(spec)
    except Exception as e:  # sizes no tensor can have
        raise CheckpointError(f"{path}: no {spec.official_name} generator can be built ({first_line(e)})") from None
    return {k: tuple(v.shape) for k, v in generator.state_dict().items()}


def _fitting_keys(spec: FamilySpec, shapes: Shapes, path: Path) -> list[str]:
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


def _built(spec: FamilySpec, state: dict[str, torch.Tensor]) -> nn.Module:
    generator = build_generator(spec)
    generator.load_state_dict(state, strict=False)
    return generator.eval()


def _load_official(model_file: ModelFile) -> LoadedModel:
    extras: dict[str, torch.Tensor] = {}
    state = clean_official_state_dict(_torch_load(model_file, extras))
    spec = _recognised(state, model_file.path)
    keys = _fitting_keys(spec, {k: tuple(v.shape) for k, v in state.items()}, model_file.path)
    generator = _with_extras(_built(spec, {k: state[k].float() for k in keys}), spec, extras, model_file.path)
    return LoadedModel(generator, spec, model_file.path, "official", {"source": spec.family.published_by})


def _with_extras(generator: nn.Module, spec: FamilySpec, extras: Mapping[str, torch.Tensor], path: Path) -> nn.Module:
    """``generator`` given the tensors kept beside its weights: a StyleGAN2's mean w (``latent_avg``), which
    truncation pulls towards."""
    average = extras.get("latent_avg")
    if average is not None and hasattr(generator, "mean_latent"):
        size = spec.family.conditioning[0].size(spec)
        if average.numel() != size:
            raise CheckpointError(f"{path}: latent_avg has {average.numel()} values, not {size}")
        generator.mean_latent = average.float().reshape(1, size)
    return generator


def _extra_tensors(generator: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors of ``generator`` that are not in its state dict but are kept in its file (TRAINING_EXTRAS)."""
    average = getattr(generator, "mean_latent", None)
    return {} if average is None else {"latent_avg": average.reshape(-1)}


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
    if not isinstance(meta, dict) or not isinstance(meta.get("generator", {}), dict):
        raise CheckpointError(f"{path}: metadata names no generator architecture")
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON metadata of a cyclestream model file."""
    with open_model_file(path) as model_file:
        return _metadata(model_file)


def _declared_spec(data: dict[str, Any], path: Path) -> FamilySpec:
    """The spec a model file's ``"generator"`` metadata declares, of the family its ``kind`` names
    (GeneratorSpec's default kind when it names none)."""
    kind = data.get("kind", GeneratorSpec.kind)
    try:
        if not isinstance(kind, str):
            raise TypeError(f"kind {kind!r} is not a name")
        spec: FamilySpec = family_named(kind).spec_type.from_dict(data)
    except TypeError as e:
        raise CheckpointError(f"{path}: damaged generator metadata ({first_line(e)})") from None
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None
    return spec


def _load_cyclestream(model_file: ModelFile) -> LoadedModel:
    path = model_file.path
    meta = _metadata(model_file)
    spec = _declared_spec(meta["generator"], path) if "generator" in meta else _recognised(model_file.tensors, path)
    blocks = spec.family.min_tensors(spec)
    if blocks > len(model_file.tensors):  # every block has weights: its modules are not even built
        raise CheckpointError(f"{path}: metadata declares {blocks} blocks for {len(model_file.tensors)} tensors")
    tensors = {k: v for k, v in model_file.tensors.items() if k not in TRAINING_EXTRAS}
    keys = _fitting_keys(spec, tensors, path)
    extras = [k for k in TRAINING_EXTRAS if k in model_file.tensors]
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k).float() for k in keys}
            kept = {k: f.get_tensor(k) for k in extras}
    except Exception as e:
        raise CheckpointError(f"{path}: cannot read weights ({first_line(e)})") from None
    return LoadedModel(_with_extras(_built(spec, state), spec, kept, path), spec, path, "cyclestream", meta)


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
    spec: FamilySpec,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Write a cyclestream model file atomically (safetensors weights + JSON metadata)."""
    meta = {"format_version": FORMAT_VERSION, **(metadata or {}), "generator": spec.to_dict()}
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in generator.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    state.update({k: v.detach().to("cpu", torch.float32).contiguous() for k, v in _extra_tensors(generator).items()})
    target = Path(path)
    with atomic_output(target) as tmp:
        save_file(state, str(tmp), metadata={METADATA_KEY: json.dumps(meta, sort_keys=True)})
    return target
