"""DCGAN's declaration: PyTorch's dcgan example recipe (64 px, batch 128, 25 epochs) and what a run of it
needs (imports no torch; the task itself is trainer/dcgan.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError

    data = options.data
    if data.data is None:
        raise TrainingError("dcgan needs --data DIR, one folder of images")
    size = int(data.crop_size or 0)
    if size < 16 or size & (size - 1):
        raise TrainingError(f"dcgan --crop-size {size}: must be a power of two, at least 16 "
                            f"(default {TASK.defaults.crop_size})")


TASK = TaskDeclaration(
    name="dcgan",
    order=30,
    help="noise→image",
    task="cyclestream.trainer.dcgan:DCGANTask",
    defaults=TaskDefaults(load_size=64, crop_size=64, ngf=64, n_blocks=0, norm="batch", dropout=False,
                          gan_mode="vanilla", pool_size=0, epochs=25, epochs_decay=0, batch_size=128),
    validate=validate,
)
