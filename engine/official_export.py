"""A generator written as the official pytorch-CycleGAN-and-pix2pix code saves one: ``torch.save`` of its
``state_dict()`` (``*_net_G.pth``), keys and shapes those its ``define_G`` builds, so its ``test.py``
loads the file with ``--netG`` / ``--ngf`` / ``--norm`` / ``--input_nc`` / ``--output_nc`` set as the
returned settings say.

Only the families whose layout is the official one (``resnet``, ``unet``) can be written; the others
are refused in one line.  The file is written whole or not at all (engine/atomic.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CheckpointError, OutputError
from cyclestream.engine.jobs.export_options import ExportOptions

OFFICIAL_SOURCE = "pytorch-CycleGAN-and-pix2pix"
OFFICIAL_FAMILIES = ("resnet", "unet")


def official_file_name(network: str) -> str:
    """What the official code's ``save_networks('latest')`` names a network's file: ``latest_net_G_A.pth``."""
    return f"latest_net_{network}.pth"


def official_settings(spec: object) -> dict[str, object]:
    """The official command-line settings that build a generator of ``spec``."""
    return {
        "netG": spec.official_name,  # type: ignore[attr-defined]
        "ngf": spec.ngf,  # type: ignore[attr-defined]
        "norm": spec.norm,  # type: ignore[attr-defined]
        "input_nc": spec.input_nc,  # type: ignore[attr-defined]
        "output_nc": spec.output_nc,  # type: ignore[attr-defined]
        "no_dropout": not spec.use_dropout,  # type: ignore[attr-defined]
    }


def export_model(
    model: str | os.PathLike[str], out: str | os.PathLike[str], options: ExportOptions | None = None
) -> dict[str, object]:
    """Write ``model`` to ``out`` in ``options.to``'s layout; returns the settings that load it there."""
    options = options or ExportOptions()
    target = Path(out)
    if target.suffix != ".pth":
        raise OutputError(f"{target}: an official generator file ends in .pth (e.g. latest_net_G_A.pth)")
    loaded = load_model(model)
    if loaded.family.published_by != OFFICIAL_SOURCE or loaded.spec.kind not in OFFICIAL_FAMILIES:
        raise CheckpointError(
            f"{loaded.path} is a {loaded.family.name} model ({loaded.spec.official_name}): {OFFICIAL_SOURCE} has "
            f"no generator of its layout (it has {', '.join(OFFICIAL_FAMILIES)})"
        )
    write_official(loaded.generator, target)
    return official_settings(loaded.spec)


def write_official(generator: torch.nn.Module, target: Path) -> Path:
    """``torch.save`` of the generator's state dict on the CPU, whole or not at all: the official layout
    (the resnet and unet families' keys are the official ones)."""
    state = {k: v.detach().to("cpu", torch.float32).clone() for k, v in generator.state_dict().items()}
    with atomic_output(target) as tmp:
        torch.save(state, tmp)
    return target
