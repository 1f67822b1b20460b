"""Fast neural style's declaration: pytorch/examples ``fast_neural_style``'s recipe (256 px, batch 4, 2 epochs,
a TransformerNet of 32 channels and 5 residual blocks) and what a run of it needs (imports no torch; the
task itself is trainer/style.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError

    data = options.data
    if data.data is None:
        raise TrainingError("style needs --data DIR, a folder of content images")  # --style, --vgg: trainer/style.py
    size = int(data.crop_size or 0)
    if size < 16 or size % 4:
        raise TrainingError(f"style --crop-size {size}: must be a multiple of 4, at least 16")


TASK = TaskDeclaration(
    name="style",
    order=60,
    help="fast neural style: content images→one style",
    task="cyclestream.trainer.style:StyleTask",
    defaults=TaskDefaults(
        load_size=256,
        crop_size=256,
        ngf=32,
        n_blocks=5,
        norm="instance",
        dropout=False,
        gan_mode="lsgan",
        pool_size=0,
        epochs=2,
        epochs_decay=0,
        batch_size=4,
        lr=1e-3,
        beta1=0.9,
    ),
    validate=validate,
)  # gan_mode, pool_size, norm and dropout are not read: no discriminator, affine instance norms throughout
