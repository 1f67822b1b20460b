"""StarGAN's declaration: yunjey/stargan's recipe (128 px, batch 16, 6 residual blocks, Adam 1e-4 with
β (0.5, 0.999), WGAN-GP with λ_cls 1, λ_rec 10, λ_gp 10, five D updates per G update) and what a run of it
needs (imports no torch; the task itself is trainer/stargan.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError

    data = options.data
    assert data.crop_size is not None
    if data.dataroot is None and data.data is None:
        raise TrainingError("stargan needs --dataroot DIR (or --data DIR) holding one folder of images per domain")
    size = data.crop_size
    if size < 16 or size & (size - 1):
        raise TrainingError(
            f"stargan --crop-size {size}: must be a power of two, at least 16 (the discriminator halves it down to 2x2)"
        )


TASK = TaskDeclaration(
    name="stargan",
    order=50,
    help="one folder per domain, one generator for all",
    task="cyclestream.trainer.stargan:StarGANTask",
    defaults=TaskDefaults(
        load_size=128,
        crop_size=128,
        ngf=64,
        n_blocks=6,
        norm="instance",
        dropout=False,
        gan_mode="vanilla",
        pool_size=0,
        epochs=100,
        epochs_decay=100,
        batch_size=16,
        lr=1e-4,  # g_lr = d_lr; Adam betas (0.5, 0.999) as everywhere
    ),
    validate=validate,
)  # gan_mode is not read: StarGAN's adversarial loss is always WGAN-GP
