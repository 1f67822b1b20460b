"""Distillation: a small student generator learns a teacher's translation (GAN Compression, Li et al. 2020).

The teacher (any generator cyclestream loads, frozen) labels each source-domain crop; the student is
trained on three losses:

- ``recon``: L1 between the student's and the teacher's outputs (× ``lambda_recon``);
- ``feat``: feature distillation — the outputs of evenly spaced residual blocks of the student, each
  through a learnt 1×1 convolution to the teacher's width, against the teacher's block outputs at the
  same relative depth (MSE × ``lambda_feat``);
- ``G_gan``: an LSGAN term against a PatchGAN that tells the teacher's outputs (real) from the
  student's (fake) (× ``lambda_gan``); the discriminator is trained on the same pairs (``D``).

It is a :class:`Task` of the trainer's loop, so it resumes bit for bit, runs under DDP, and writes
samples, loss curves and atomic checkpoints as every model system does.  Its model file,
``RUN/student.safetensors``, names the teacher (path, sha256, architecture) and the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cyclestream.engine.checkpoint import LoadedModel, load_model, save_model
from cyclestream.engine.models import GeneratorSpec, build_generator
from cyclestream.engine.models.resnet import ResnetBlock
from cyclestream.engine.paths import file_sha256
from cyclestream.trainer.data import SingleDataset
from cyclestream.trainer.distill_data import FRAMES_DIR, source_images
from cyclestream.trainer.losses import GANLoss
from cyclestream.trainer.networks import NLayerDiscriminator, init_weights, set_requires_grad
from cyclestream.trainer.options import TrainingError, TrainOptions
from cyclestream.trainer.plot import grid
from cyclestream.trainer.task import Runtime, Task

LOSSES = ("recon", "feat", "G_gan", "D")
STUDENT_FILE = "student.safetensors"



def residual_blocks(generator: nn.Module) -> list[nn.Module]:
    """The residual blocks of a ResNet or mobile ResNet generator, in order (none for a U-Net)."""
    return [m for m in generator.modules() if isinstance(m, ResnetBlock)]


def paired_layers(student_blocks: int, teacher_blocks: int, count: int) -> list[tuple[int, int]]:
    """``count`` (student block, teacher block) pairs at the same relative depth, the last blocks paired."""
    count = min(count, student_blocks, teacher_blocks)
    picks = np.linspace(student_blocks, 0, count, endpoint=False)[::-1] if count else []
    return [(int(s) - 1, round(int(s) * teacher_blocks / student_blocks) - 1) for s in picks]


class FeatureTap:
    """Keeps the latest output of each of some modules (forward hooks)."""

    def __init__(self, modules: list[nn.Module]) -> None:
        self.outputs: list[torch.Tensor | None] = [None] * len(modules)
        for i, module in enumerate(modules):
            module.register_forward_hook(self._hook(i))

    def _hook(self, i: int) -> Any:
        def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
            self.outputs[i] = output

        return hook

    def take(self) -> list[torch.Tensor]:
        out = [t for t in self.outputs if t is not None]
        self.outputs = [None] * len(self.outputs)
        return out


class FeatureMappings(nn.Module):
    """One learnt 1×1 convolution per distilled layer, student width → teacher width."""

    def __init__(self, count: int, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(student_width, teacher_width, 1) for _ in range(count))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [conv(f) for conv, f in zip(self.convs, features, strict=True)]


def student_spec(options: TrainOptions, teacher: GeneratorSpec) -> GeneratorSpec:
    m = options.model
    return GeneratorSpec(kind=options.distill.arch, input_nc=teacher.input_nc, output_nc=teacher.output_nc,
                         ngf=m.ngf, n_blocks=int(m.n_blocks or 0), norm=m.norm or "instance",
                         use_dropout=bool(m.dropout), padding_type=m.padding)


def load_initial_weights(student: nn.Module, spec: GeneratorSpec, path: Path) -> str:
    """Copy the weights of the model at ``path`` (the same architecture) into ``student``; its sha256."""
    try:
        start = load_model(path)
    except Exception as e:
        raise TrainingError(f"--init {path}: {e}") from None
    if start.spec != spec:
        raise TrainingError(f"--init {path} is a {start.spec.official_name} (ngf {start.spec.ngf}), not the student's "
                            f"{spec.official_name} (ngf {spec.ngf}); pass the same --arch/--ngf/--n-blocks")
    student.load_state_dict(start.generator.state_dict())
    return file_sha256(Path(path))


def load_teacher(path: Path) -> LoadedModel:
    try:
        return load_model(path)
    except TrainingError:
        raise
    except Exception as e:  # CheckpointError and friends: already one line naming the path
        raise TrainingError(f"teacher {path}: {e}") from None


class DistillTask(Task):
    name = "distill"
    losses = LOSSES

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        super().__init__(options, runtime)
        d, m, dist = options.data, options.model, options.distill
        assert dist.teacher is not None and d.data is not None
        self.teacher_path = Path(dist.teacher)
        teacher = load_teacher(self.teacher_path)
        self.teacher_model = teacher
        self.teacher_sha256 = file_sha256(self.teacher_path)
        if int(d.crop_size or 0) % teacher.spec.size_multiple:
            raise TrainingError(f"--crop-size {d.crop_size} is not a multiple of {teacher.spec.size_multiple}, "
                                f"which the teacher {self.teacher_path} ({teacher.spec.official_name}) needs")
        self.teacher = teacher.generator.to(self.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        files = source_images(Path(d.data), options.run.out / FRAMES_DIR)
        self.dataset = SingleDataset(files, int(d.load_size or 0), int(d.crop_size or 0), d.flip)
        self.spec = student_spec(options, teacher.spec)
        student = self.add_net("student", init_weights(build_generator(self.spec), m.init_gain))
        self.init_sha256 = load_initial_weights(student, self.spec, dist.init) if dist.init is not None else None
        s_blocks, t_blocks = residual_blocks(student), residual_blocks(self.teacher)
        self.pairs = paired_layers(len(s_blocks), len(t_blocks), dist.feat_layers if dist.lambda_feat > 0 else 0)
        s_width, t_width = self.spec.ngf * 4, teacher.spec.ngf * 4
        if self.pairs:
            self.add_net("mappings", FeatureMappings(len(self.pairs), s_width, t_width))
        self.student_tap = FeatureTap([s_blocks[s] for s, _ in self.pairs])
        self.teacher_tap = FeatureTap([t_blocks[t] for _, t in self.pairs])
        self.add_net("D", init_weights(NLayerDiscriminator(teacher.spec.output_nc, m.ndf, m.n_layers_d,
                                                           m.norm or "instance"), m.init_gain))
        self.add_optimizer("G", ["student", "mappings"] if self.pairs else ["student"])
        self.add_optimizer("D", ["D"])
        self.gan = GANLoss(m.gan_mode or "lsgan")

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        dist = self.options.distill
        real = self.to_device(batch)["image"]
        student, d = self.wrapped["student"], self.wrapped["D"]
        with torch.no_grad(), self.autocast():
            target = self.teacher(real).float()
        teacher_feats = self.teacher_tap.take()

        set_requires_grad([self.nets["D"]], False)
        self.optimizers["G"].zero_grad(set_to_none=True)
        with self.autocast():
            fake = student(real)
            student_feats = self.student_tap.take()
            loss_recon = F.l1_loss(fake.float(), target) * dist.lambda_recon
            zero = torch.zeros((), device=self.device)
            loss_feat = loss_gan = zero
            if self.pairs:
                pairs = zip(self.wrapped["mappings"](student_feats), teacher_feats, strict=True)
                loss_feat = sum((F.mse_loss(m.float(), t.float()) for m, t in pairs), zero)
                loss_feat = loss_feat / len(self.pairs) * dist.lambda_feat
            if dist.lambda_gan > 0:
                loss_gan = self.gan(self.nets["D"](fake), True) * dist.lambda_gan
            loss_g = loss_recon + loss_feat + loss_gan
        self.backward("G", loss_g)
        self.update("G")

        set_requires_grad([self.nets["D"]], True)
        self.optimizers["D"].zero_grad(set_to_none=True)
        with self.autocast():
            loss_d = (self.gan(d(target), True) + self.gan(d(fake.detach()), False)) * 0.5
        self.backward("D", loss_d)
        self.update("D")
        values = (loss_recon, loss_feat, loss_gan, loss_d)
        return {k: v.detach() for k, v in zip(LOSSES, values, strict=True)}

    def sample_grid(self, count: int) -> np.ndarray:
        """Rows ``input | teacher | student``."""
        rows = []
        with self.sampling():
            for i in range(max(1, count)):
                x = self.dataset.fixed(i)["image"].unsqueeze(0).to(self.device)
                rows.append([x[0], self.teacher(x)[0], self.nets["student"](x)[0]])
            self.student_tap.take()
            self.teacher_tap.take()
        return grid(rows)

    def distillation_metadata(self) -> dict[str, Any]:
        o = self.options
        return {
            "teacher": str(self.teacher_path), "teacher_sha256": self.teacher_sha256,
            "teacher_architecture": self.teacher_model.spec.official_name,
            "teacher_generator": self.teacher_model.spec.to_dict(),
            "arch": o.distill.arch, "ngf": self.spec.ngf, "n_blocks": self.spec.n_blocks,
            "lambda_recon": o.distill.lambda_recon, "lambda_feat": o.distill.lambda_feat,
            "lambda_gan": o.distill.lambda_gan, "feature_pairs": [list(p) for p in self.pairs],
            "crop_size": o.data.crop_size, "load_size": o.data.load_size, "data": str(o.data.data),
            "init": None if o.distill.init is None else str(o.distill.init), "init_sha256": self.init_sha256,
            "images": len(self.dataset),  # type: ignore[arg-type]
        }

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        """``student.safetensors``: loads wherever a model does; the teacher's domains carry over."""
        keep = ("domains", "direction", "input_domain", "output_domain")
        meta = {k: v for k, v in self.teacher_model.metadata.items() if k in keep}
        meta.update(network="student", distillation=self.distillation_metadata(), **info)
        return [save_model(run_dir / STUDENT_FILE, self.nets["student"], self.spec, meta)]

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "teacher_sha256": self.teacher_sha256}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("teacher_sha256") != self.teacher_sha256:
            raise TrainingError(f"teacher {self.teacher_path} is not the model this run was distilled from "
                                f"(sha256 {str(state.get('teacher_sha256'))[:12]}…)")
        super().load_state_dict(state)
