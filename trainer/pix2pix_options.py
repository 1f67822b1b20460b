"""pix2pix's declaration: the official recipe (U-Net, batch norm, dropout, vanilla GAN, no image pool)
and what a run of it needs (imports no torch; the task itself is trainer/pix2pix.py)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions


def unet_levels(crop_size: int) -> int:
    """log2 of the crop, 5 to 8."""
    return max(5, min(8, int(math.log2(max(crop_size, 1)))))


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError, check_patchgan

    data, model = options.data, options.model
    assert data.crop_size is not None
    if data.data is None:
        raise TrainingError("pix2pix needs --data DIR of aligned A|B side-by-side images")
    if data.crop_size % (2 ** int(model.n_blocks or 0)):
        raise TrainingError(f"--crop-size {data.crop_size} is not a multiple of 2**{model.n_blocks} "
                            f"(the U-Net's --n-blocks {model.n_blocks}); use a power of two")
    check_patchgan(data.crop_size, model.n_layers_d)


TASK = TaskDeclaration(
    name="pix2pix",
    order=20,
    help="aligned A|B images",
    task="cyclestream.trainer.pix2pix:Pix2PixTask",
    defaults=TaskDefaults(load_size=286, crop_size=256, ngf=64, n_blocks=unet_levels, norm="batch", dropout=True,
                          gan_mode="vanilla", pool_size=0, epochs=100, epochs_decay=100, batch_size=1),
    validate=validate,
)
