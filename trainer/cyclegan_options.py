"""CycleGAN's declaration: the official pytorch-CycleGAN-and-pix2pix recipe and what a run of it needs
(imports no torch; the task itself is trainer/cyclegan.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError, check_patchgan

    data = options.data
    assert data.crop_size is not None
    if data.crop_size % 4:
        raise TrainingError(f"--crop-size {data.crop_size}: a ResNet generator needs a multiple of 4")
    if not (data.dataroot or (data.data_a and data.data_b)):
        raise TrainingError("cyclegan needs --data-a DIR --data-b DIR (or --dataroot with trainA/trainB)")
    check_patchgan(data.crop_size, options.model.n_layers_d)


TASK = TaskDeclaration(
    name="cyclegan",
    order=10,
    help="unpaired A/B folders",
    task="cyclestream.trainer.cyclegan:CycleGANTask",
    defaults=TaskDefaults(load_size=286, crop_size=256, ngf=64, n_blocks=9, norm="instance", dropout=False,
                          gan_mode="lsgan", pool_size=50, epochs=100, epochs_decay=100, batch_size=1),
    validate=validate,
)
