"""What a model family declares: its layers, how its published files are recognised, its value range,
its inputs.

A family is one module of this package that defines a module-level ``FAMILY``, a :class:`Family`
(engine/models/registry.py finds it; no list names it).  Everything that runs a generator reads the
declaration instead of branching on an architecture: the loader (engine/checkpoint.py) builds it
with ``build`` and recognises an official state dict with ``recognise``; the backends scale frames
to ``value_range`` and pad them to ``size_multiple``; the frame checks (engine/backends/fit.py)
refuse frames under ``min_side`` and models without ``image_input``; export bounds its dynamic
shapes by both; ``cyclestream info`` prints it all.

A family's *spec* is a frozen dataclass subclassing :class:`FamilySpec` whose ``kind`` is the
family's name: everything needed to rebuild the generator and nothing else.  It is what a
cyclestream model file stores under ``"generator"`` (``to_dict``) and what ``recognise`` returns.

This module imports no torch: the declarations are read by ``--help`` and by ``info`` alike.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cyclestream.engine.errors import CheckpointError

if TYPE_CHECKING:
    from torch import nn

ValueRange = tuple[float, float]
Shapes = Mapping[str, tuple[int, ...]]  # a state dict's tensor names → shapes (nothing read yet)
ConditioningKind = Literal["label", "latent"]

# The generator's input and output scale of the CycleGAN/pix2pix families (x / 127.5 - 1 and back): a
# Tanh output layer.  Frames are uint8 0..255; engine/backends/tensors.py maps them onto the range.
TANH_RANGE: ValueRange = (-1.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class Conditioning:
    """An input a generator takes besides (or instead of) an image: a target label (StarGAN's domain
    vector) or a latent code (DCGAN's z, BicycleGAN's z).  Its size is a field of the family's spec."""

    name: str  # "z", "label": what a job's flag will be called
    kind: ConditioningKind
    size_field: str  # the spec field that holds its size (DCGAN: "nz")
    help: str

    def size(self, spec: FamilySpec) -> int:
        return int(getattr(spec, self.size_field))

    def describe(self, spec: FamilySpec) -> dict[str, Any]:
        """What ``info --json`` says of it for one model."""
        return {"name": self.name, "kind": self.kind, "size": self.size(spec), "help": self.help}


def _one(spec: Any) -> int:
    return 1


def _no_tensors(spec: Any) -> int:
    return 0


@dataclass(frozen=True, kw_only=True)
class Family:
    """One model family.  ``name`` is its specs' ``kind`` (and the ``"kind"`` of a model file's
    ``"generator"`` metadata); ``description`` is one line for ``info``.

    - ``spec_type``: the spec class (a :class:`FamilySpec`); ``build(spec)`` a freshly initialised
      generator of it.  Its state dict keys are those of the published files ``recognise`` reads.
    - ``recognise(shapes)``: the spec whose state dict has exactly this layout, or None when the keys
      are not this family's; a CheckpointError (one line) for this family's layout gone wrong.
      None: no published layout (the family's files are the project's own, their spec in the metadata).
      ``published_by`` names the project whose files ``recognise`` reads (``info``'s provenance).
    - ``value_range``: the scale of the generator's image input and output (``(-1, 1)`` for a Tanh
      output; fast neural style works on ``(0, 255)``); frames are mapped onto it and back.
    - ``image_input``: False for a generator that makes images from its conditioning alone (DCGAN);
      such a model is refused by every job that translates frames.
    - ``conditioning``: its other inputs (a target label, a latent z), in the order it takes them.
    - ``size_multiple(spec)``: frame sides are padded to a multiple of it and cropped back;
      ``min_side(spec)``: the smallest side it runs on; ``official_name(spec)``: its name in logs and
      errors (the official ``--netG`` where there is one).
    - ``min_tensors(spec)``: the fewest tensors a file of this spec holds (every block has weights), so
      a model file whose metadata declares more blocks than it has tensors is refused before anything is
      built, even on the meta device.
    - ``priority``: recognisers are asked in (priority, name) order, lowest first; the first that
      returns a spec wins.  Layouts of different families should not overlap: it only makes the order
      deterministic.
    """

    name: str
    description: str
    spec_type: type[FamilySpec]
    build: Callable[[Any], nn.Module]
    official_name: Callable[[Any], str]
    recognise: Callable[[Shapes], FamilySpec | None] | None = None
    published_by: str = ""
    value_range: ValueRange = TANH_RANGE
    image_input: bool = True
    conditioning: tuple[Conditioning, ...] = ()
    size_multiple: Callable[[Any], int] = _one
    min_side: Callable[[Any], int] = _one
    min_tensors: Callable[[Any], int] = _no_tensors
    priority: int = 0

    def __post_init__(self) -> None:
        low, high = self.value_range
        if not low < high:
            raise ValueError(f"family {self.name}: value_range {self.value_range} is empty")
        if not self.image_input and not self.conditioning:
            raise ValueError(f"family {self.name}: a generator without an image input needs a conditioning input")

    def inputs_text(self, spec: FamilySpec) -> str:
        """Its inputs in words: ``an image (3 channels)``, ``a latent z of 100 values``."""
        channels = "1 channel, grey: frames are converted to it" if spec.image_channels == 1 else \
            f"{spec.image_channels} channels"  # fmt: skip
        parts = [f"an image ({channels})"] if self.image_input else []
        parts += [f"a {c.kind} {c.name} of {c.size(spec)} values" for c in self.conditioning]
        return " and ".join(parts)

    def require_image_input(self, spec: FamilySpec, subject: str) -> None:
        """A CheckpointError (one line, beginning with ``subject``: the model's path or name) when this
        family's generators take no image, so there is nothing to translate."""
        if not self.image_input:
            raise CheckpointError(
                f"{subject} is a {self.name} model ({spec.official_name}): it generates images from "
                f"{self.inputs_text(spec)}; it has no image input to translate"
            )


class FamilySpec:
    """The base of every family's spec (a frozen dataclass whose ``kind`` field names its family): the
    rules that depend on the family are asked of it, the fields are the subclass's own.

    A spec of a family with an image input has ``input_nc`` (image channels) and ``ngf`` (channels of
    its widest full-resolution activation, for the memory estimate of engine/backends/fit.py)."""

    kind: str

    @property
    def family(self) -> Family:
        from cyclestream.engine.models.registry import family_named

        return family_named(str(self.kind))

    @property
    def image_channels(self) -> int:
        """The channels of its image input: 3 (RGB), 1 (grey: frames are converted at the edges)."""
        return int(getattr(self, "input_nc", 3))

    @property
    def size_multiple(self) -> int:
        """Frame sides must be a multiple of this; frames are padded to it and cropped back."""
        return self.family.size_multiple(self)

    @property
    def min_side(self) -> int:
        """The smallest frame side it runs on."""
        return self.family.min_side(self)

    @property
    def official_name(self) -> str:
        """Its name in logs and errors: the official ``--netG`` name when there is one."""
        return self.family.official_name(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"unknown generator fields in model metadata: {sorted(unknown)}")
        return cls(**data)
