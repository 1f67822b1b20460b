"""BicycleGAN's declaration: junyanz/BicycleGAN's training recipe (``train_options.py``, ``base_options.py``
and its ``scripts/train*.sh``: 286 → 256 px, batch 2 split into a cVAE-GAN and a cLR-GAN half, nz 8,
``unet_256`` with z added at every level and dropout, ``resnet_256`` encoder, two 2-scale PatchGANs,
instance norm, LSGAN, λ_L1 10, λ_z 0.5, λ_KL 0.01, λ_GAN = λ_GAN2 = 1, Adam 2e-4 with β1 0.5, 100 + 100
epochs; ``--where-add``, ``--use-same-d`` and ``--conditional-d`` are ModelOptions fields, the reference's
``all``, off and off by default) and what a run of it needs (imports no torch; the task itself is
trainer/bicyclegan.py)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions

MIN_CROP = 64  # the U-Net with z at every level has at least 6 levels; the 2-scale PatchGANs need 64 px


def unet_levels(crop_size: int) -> int:
    """log2 of the crop, 6 to 8."""
    return max(6, min(8, int(math.log2(max(crop_size, 1)))))


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError, check_patchgan, per_process_batch

    data, model, optim, run = options.data, options.model, options.optim, options.run
    crop, levels = int(data.crop_size or 0), int(model.n_blocks or 0)
    if data.data is None:
        raise TrainingError("bicyclegan needs --data DIR of aligned A|B side-by-side images")
    if crop < MIN_CROP or crop & (crop - 1):
        raise TrainingError(
            f"bicyclegan --crop-size {crop}: must be a power of two, at least {MIN_CROP} "
            f"(default {TASK.defaults.crop_size})"
        )
    low = 6 if model.where_add == "all" else 5  # the reference's G_Unet_add_all / G_Unet_add_input
    if levels < low or crop % 2**levels:
        raise TrainingError(
            f"bicyclegan --n-blocks {levels}: the U-Net needs at least {low} levels and --crop-size "
            f"{crop} a multiple of 2**{levels}"
        )
    if model.use_same_d and model.lambda_gan2 > 0 and not model.lambda_gan > 0:
        raise TrainingError(
            "bicyclegan --use-same-d trains the one discriminator as D, which --lambda-gan 0 leaves out; "
            "give --lambda-gan above 0 or drop --use-same-d"
        )
    if model.norm != "instance":
        raise TrainingError(f"bicyclegan --norm {model.norm}: only instance norm (the published generator's)")
    batch = per_process_batch(int(optim.batch_size or 0), run.nproc, run.ddp_recipe)
    if batch % 2:
        raise TrainingError(
            f"bicyclegan takes an even batch per process (half cVAE-GAN, half cLR-GAN), got {batch}; "
            "change --batch-size"
        )
    check_patchgan(crop // 2, 3)  # the second scale of the 3-layer PatchGANs


TASK = TaskDeclaration(
    name="bicyclegan",
    order=55,
    help="aligned A|B images, many outputs per input (a latent z)",
    task="cyclestream.trainer.bicyclegan:BicycleGANTask",
    defaults=TaskDefaults(
        load_size=286,
        crop_size=256,
        ngf=64,
        n_blocks=unet_levels,
        norm="instance",
        dropout=True,
        gan_mode="lsgan",
        pool_size=0,
        epochs=100,
        epochs_decay=100,
        batch_size=2,
        lambda_l1=10.0,
        nz=8,
    ),
    validate=validate,
)  # ndf and nef are the reference's 64 (ModelOptions' defaults); pool_size is not read
