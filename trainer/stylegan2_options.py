"""StyleGAN2's declaration: rosinality/stylegan2-pytorch's ``train.py`` recipe (256 px, batch 16, Adam
0.002 with β (0, 0.99), R1 10 every 16 iterations, path length 2 every 4, mixing 0.9, the published widths)
and what a run of it needs (imports no torch; the task itself is trainer/stylegan2.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError

    data = options.data
    if data.data is None:
        raise TrainingError("stylegan2 needs --data DIR, one folder of images")
    size = int(data.crop_size or 0)
    if size < 8 or size & (size - 1):
        raise TrainingError(f"stylegan2 --crop-size {size}: must be a power of two, at least 8 "
                            f"(default {TASK.defaults.crop_size})")


TASK = TaskDeclaration(
    name="stylegan2",
    order=70,
    help="noise→image, style-based (a latent walk with `cyclestream generate`)",
    task="cyclestream.trainer.stylegan2:StyleGAN2Task",
    defaults=TaskDefaults(load_size=256, crop_size=256, ngf=512, n_blocks=0, norm="instance", dropout=False,
                          gan_mode="vanilla", pool_size=0, epochs=100, epochs_decay=0, batch_size=16,
                          lr=0.002, beta1=0.0, beta2=0.99),
    validate=validate,
)  # ngf: the widest layer (512 published); ndf, n_blocks, norm, dropout, gan_mode and pool_size are not read
