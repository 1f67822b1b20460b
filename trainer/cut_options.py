"""CUT and FastCUT's declarations: the contrastive-unpaired-translation recipes (``--CUT_mode CUT`` and
``FastCUT``) and what a run of them needs (imports no torch; the task itself is trainer/cut.py).

Both: LSGAN, no image pool, Adam at 2e-4 (β 0.5, 0.999), PatchNCE on layers 0,4,8,12,16 with 256 patches
per layer and MLP feature heads.  CUT: λ_NCE 1 with identity PatchNCE, 200 + 200 epochs.  FastCUT:
λ_NCE 10, no identity PatchNCE, flip equivariance, 150 + 50 epochs.  ``RECIPES`` holds the three values
that tell them apart where ``--lambda-nce``, ``--nce-idt`` and ``--flip-equivariance`` are not given.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions


@dataclass(frozen=True)
class NCERecipe:
    """What CUT and FastCUT set apart from each other besides their epochs."""

    lambda_nce: float
    nce_idt: bool
    flip_equivariance: bool


RECIPES = {"cut": NCERecipe(1.0, True, False), "fastcut": NCERecipe(10.0, False, True)}


def nce_layers(text: str) -> list[int]:
    """``--nce-layers`` as ascending layer indices; a ValueError for anything else."""
    layers = [int(part) for part in text.split(",") if part.strip()]
    if not layers or any(n < 0 for n in layers) or layers != sorted(set(layers)):
        raise ValueError(text)
    return layers


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError, check_patchgan

    data, model = options.data, options.model
    assert data.crop_size is not None
    if data.crop_size % 4:
        raise TrainingError(f"--crop-size {data.crop_size}: a ResNet generator needs a multiple of 4")
    if not (data.dataroot or (data.data_a and data.data_b)):
        raise TrainingError(f"{model.model} needs --data-a DIR --data-b DIR (or --dataroot with trainA/trainB)")
    try:
        layers = nce_layers(model.nce_layers)
    except ValueError:
        raise TrainingError(
            f"--nce-layers {model.nce_layers!r}: expected ascending layer numbers such as 0,4,8,12,16"
        ) from None
    depth = (23 if model.antialias else 19) + int(model.n_blocks or 0)  # the generator's layers (model.N)
    if layers[-1] >= depth:
        raise TrainingError(f"--nce-layers {model.nce_layers}: the generator has no layer {layers[-1]}")
    check_patchgan(data.crop_size, options.model.n_layers_d)


def _defaults(epochs: int, epochs_decay: int) -> TaskDefaults:
    return TaskDefaults(
        load_size=286,
        crop_size=256,
        ngf=64,
        n_blocks=9,
        norm="instance",
        dropout=False,
        gan_mode="lsgan",
        pool_size=0,
        epochs=epochs,
        epochs_decay=epochs_decay,
        batch_size=1,
    )


TASK = TaskDeclaration(
    name="cut",
    order=15,
    help="unpaired A/B folders, one generator with PatchNCE (Park et al. 2020)",
    task="cyclestream.trainer.cut:CUTTask",
    defaults=_defaults(200, 200),
    validate=validate,
)
