"""The values of a generator's conditioning inputs for a job: StarGAN's target label, BicycleGAN's z.

``--target`` names the label: a domain name from the model file's ``"domains"`` metadata, a domain
index (one-hot over ``c_dim`` values), or the whole vector (``0,1,0,0,1``: the published CelebA models'
attributes).  ``--z-seed N`` draws z from N(0, 1) with a generator seeded by N; without it z is 0, the
prior's mean.  Each value is a (1, size) float32 tensor, the same for every frame of the job, handed to
the backend as an input of the generator (engine/backends/base.py ``Backend.conditioning``), never baked
into a graph.  ``--z-walk S`` makes z a path over the frames' times instead (:class:`LatentWalk`): at
``t = k S`` it is the z of seed ``z_seed + k``, in between the normalised blend
``((1 − w) z_k + w z_{k+1}) / sqrt((1 − w)² + w²)`` with ``w`` the smoothstep of the fraction of the leg, so
it stays N(0, 1)-distributed and changes smoothly (no jump at the keyframes).

Models with a conditioning input run on every backend: eager and compile call the generator with it,
onnxruntime, openvino and tensorrt bind it as an input of the exported graph or engine (``--backend auto``
takes eager for them); int8 is not offered for them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from cyclestream.engine.errors import BackendError, CheckpointError
from cyclestream.engine.models.family import Conditioning

if TYPE_CHECKING:
    from cyclestream.engine.backends.options import RunOptions
    from cyclestream.engine.checkpoint import LoadedModel

CONDITIONED_BACKENDS = ("eager", "compile", "onnxruntime", "openvino", "tensorrt")


def domain_names(model: LoadedModel) -> list[str]:
    """The domain names of a model file's metadata (``"domains"``: a list of names), or []."""
    domains = model.metadata.get("domains")
    return [str(d) for d in domains] if isinstance(domains, list) else []


def parse_label(model: LoadedModel, target: str, size: int) -> torch.Tensor:
    """``target`` as a label vector of ``size`` values (a CheckpointError naming the choices otherwise)."""
    names = domain_names(model)
    choices = f"one of {', '.join(names)}, " if names else ""
    text = target.strip()
    if "," in text:
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != size:
            raise CheckpointError(f"--target {target!r}: {model.path} takes a label of {size} comma-separated values")
        return torch.tensor([values], dtype=torch.float32)
    if text in names:
        index = names.index(text)
    elif text.isdigit() and int(text) < size:
        index = int(text)
    else:
        raise CheckpointError(
            f"--target {target!r} is not a target of {model.path} ({choices}an index 0..{size - 1}, "
            f"or {size} comma-separated values)"
        )
    label = torch.zeros(1, size)
    label[0, index] = 1.0
    return label


def seeded_z(size: int, seed: int) -> torch.Tensor:
    """z (1, size) drawn from N(0, 1) by a torch generator seeded with ``seed``."""
    return torch.randn(1, size, generator=torch.Generator().manual_seed(seed))


class LatentWalk:
    """A smooth path through z over time: ``--z-seed``'s z at 0 s, the next seed's after ``seconds``, ..."""

    def __init__(self, size: int, seed: int, seconds: float) -> None:
        self.size, self.seed, self.seconds = size, seed, seconds

    def __call__(self, t: float) -> torch.Tensor:
        legs = max(0.0, t) / self.seconds
        k = int(legs)
        u = legs - k
        w = u * u * (3 - 2 * u)
        a, b = seeded_z(self.size, self.seed + k), seeded_z(self.size, self.seed + k + 1)
        return ((1 - w) * a + w * b) / ((1 - w) ** 2 + w**2) ** 0.5


def conditioning_path(model: LoadedModel, options: RunOptions) -> Callable[[float], tuple[torch.Tensor, ...]] | None:
    """The values at a frame's time for ``--z-walk`` (None without it: the values are constant)."""
    if options.z_walk is None or not model.family.image_input:
        return None
    walks = [
        LatentWalk(c.size(model.spec), options.z_seed or 0, options.z_walk) if c.kind == "latent" else None
        for c in model.family.conditioning
    ]
    constant = conditioning_inputs(model, options.target, options.z_seed)

    def at(t: float) -> tuple[torch.Tensor, ...]:
        return tuple(walk(t) if walk is not None else value for walk, value in zip(walks, constant, strict=True))

    return at


def _value(model: LoadedModel, cond: Conditioning, target: str | None, z_seed: int | None) -> torch.Tensor:
    size = cond.size(model.spec)
    if cond.kind == "label":
        if target is None:
            names = domain_names(model)
            hint = f" ({', '.join(names)})" if names else f" (an index 0..{size - 1} or {size} values)"
            raise CheckpointError(f"{model.path} translates to a target domain: pass --target{hint}")
        return parse_label(model, target, size)
    if z_seed is None:
        return torch.zeros(1, size)
    return seeded_z(size, z_seed)


def conditioning_inputs(
    model: LoadedModel, target: str | None, z_seed: int | None, z_walk: float | None = None
) -> tuple[torch.Tensor, ...]:
    """The values of ``model``'s conditioning inputs, in the family's order (a walk's start for ``z_walk``); a
    one-line CheckpointError for a target, seed or walk the model has no input for."""
    if not model.family.image_input:
        return ()  # refused by the frame checks: nothing to translate
    kinds = {c.kind for c in model.family.conditioning}
    for given, kind, flag in (
        (target, "label", "--target"),
        (z_seed, "latent", "--z-seed"),
        (z_walk, "latent", "--z-walk"),
    ):
        if given is not None and kind not in kinds:
            raise CheckpointError(
                f"{flag} was given, but {model.path} ({model.spec.official_name}) has no {kind} input"
            )
    return tuple(_value(model, c, target, z_seed) for c in model.family.conditioning)


def require_image_only(model: LoadedModel, what: str) -> None:
    """A one-line CheckpointError when ``model`` takes a conditioning input that ``what`` does not feed."""
    if model.family.image_input and model.family.conditioning:
        names = ", ".join("--target" if c.kind == "label" else "--z-seed/--z-walk" for c in model.family.conditioning)
        raise CheckpointError(
            f"{model.path} is a {model.family.name} model ({names} input): {what} runs image-only generators; "
            f"translate, stream, serve and batch run it (eager, onnxruntime, openvino)"
        )


def conditioned_backend(model: LoadedModel, options: RunOptions) -> RunOptions:
    """``options`` with a backend that feeds the conditioning inputs (``auto`` → eager); a BackendError for
    one that cannot."""
    if not model.family.image_input or not model.family.conditioning:
        return options
    if options.backend == "auto":
        return dataclasses.replace(
            options, backend="eager", precision="fp32" if options.precision == "auto" else options.precision
        )
    if options.backend not in CONDITIONED_BACKENDS:
        raise BackendError(
            f"the {options.backend} backend does not feed a {model.family.name} model's "
            f"{model.family.conditioning[0].name} input; use --backend {', '.join(CONDITIONED_BACKENDS)}"
        )
    if options.precision == "int8":
        raise BackendError(f"int8 is not offered for {model.family.name} models (its label/z input is not calibrated)")
    return options
