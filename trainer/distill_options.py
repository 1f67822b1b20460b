"""``distill``'s declarations: the teacher, the student's architecture and the weights of its losses
(``DistillOptions``, part of every run's TrainOptions), the evaluation after training
(``DistillEvalOptions``), and the task's recipe (a mobile ResNet of 16 × 4 blocks, batch 4, 10 + 10
epochs).  Imports no torch; the task itself is trainer/distill.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cyclestream.bundled import DEMO_CLIP
from cyclestream.engine.options import Options, comma_list, option
from cyclestream.trainer.tasks import TaskDeclaration, TaskDefaults

if TYPE_CHECKING:
    from cyclestream.trainer.options import TrainOptions

DEFAULT_BACKENDS = ("eager", "onnxruntime", "openvino")


@dataclass(frozen=True, kw_only=True)
class DistillOptions(Options):
    """The teacher, the student's architecture and the weights of its three losses (GAN Compression: L1 to
    the teacher's output, feature distillation, adversarial)."""

    teacher: Path | None = option(None, flag="TEACHER", help="the generator to distil (an official .pth or a "
                                  "cyclestream model)")
    arch: Literal["resnet", "mobile"] = option("mobile", help="the student: mobile (depthwise-separable residual "
                                               "blocks) or resnet")
    lambda_recon: float = option(10.0, min=0, help="L1 to the teacher's output")
    lambda_feat: float = option(1.0, min=0, help="feature distillation: MSE of 1x1-mapped student features to "
                                "the teacher's")
    lambda_gan: float = option(1.0, min=0, help="adversarial term, against a PatchGAN on the teacher's outputs")
    feat_layers: int = option(4, min=0, help="residual-block outputs distilled (at most the student's blocks)")
    init: Path | None = option(None, help="start from this student's weights (same --arch/--ngf/--n-blocks), "
                               "e.g. to fine-tune a finished run with other losses")


@dataclass(frozen=True, kw_only=True)
class DistillEvalOptions(Options):
    """What ``distill`` measures once the student is trained (``RUN/evaluation.json``)."""

    holdout: Path = option(DEMO_CLIP, help="held-out video or image folder for PSNR/SSIM to the teacher")
    eval_backends: tuple[str, ...] = option(DEFAULT_BACKENDS, parse=comma_list(), metavar="NAME,...",
                                            help="comma list of backends to time the student on")
    eval_seconds: float = option(1.0, above=0, help="timing per backend, seconds")
    eval: bool = option(True, help="evaluation of the student against the teacher, written to RUN/evaluation.json")

    def check(self) -> None:
        from cyclestream.engine.backends import BACKEND_NAMES

        unknown = [name for name in self.eval_backends if name not in BACKEND_NAMES]
        if unknown:
            raise self.fail("eval_backends", f"unknown backend {', '.join(unknown)}; expected some of "
                            f"{', '.join(BACKEND_NAMES)}")


def validate(options: TrainOptions) -> None:
    from cyclestream.trainer.options import TrainingError, check_patchgan

    data = options.data
    assert data.crop_size is not None
    if options.distill.teacher is None:
        raise TrainingError("distill needs a TEACHER model file")
    if data.data is None:
        raise TrainingError("distill needs --data DIR, a folder of source-domain images (and videos)")
    if data.crop_size % 4:
        raise TrainingError(f"--crop-size {data.crop_size}: the student needs a multiple of 4")
    check_patchgan(data.crop_size, options.model.n_layers_d)


TASK = TaskDeclaration(
    name="distill",
    order=40,
    help="a small student of a teacher generator",
    task="cyclestream.trainer.distill:DistillTask",
    command="distill",
    defaults=TaskDefaults(load_size=286, crop_size=256, ngf=16, n_blocks=4, norm="instance", dropout=False,
                          gan_mode="lsgan", pool_size=0, epochs=10, epochs_decay=10, batch_size=4),
    validate=validate,
)
