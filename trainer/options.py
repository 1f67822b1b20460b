"""Training options: one frozen dataclass per group, each field declared once with its default and help.

``cyclestream train``/``distill``'s flags are generated from these fields (``cyclestream/cli/train.py``).
A field left at ``None`` whose name is a :class:`~cyclestream.trainer.tasks.TaskDefaults` field is
decided by the task (its recipe, declared beside it: ``cyclegan_options.py``, ...) and filled in by
:meth:`TrainOptions.resolved`, so every later stage sees concrete values.  Plain ranges are checked when
a group is built; what depends on the task or on several groups, by :meth:`TrainOptions.validate`,
naming the flag to change.  This module imports no torch (``cyclestream --help`` stays fast).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Literal

from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.options import DEVICE_HELP, Options, option, progress_option, valid_device
from cyclestream.trainer.distill_options import DistillOptions
from cyclestream.trainer.speed import Switch, TrainPrecision
from cyclestream.trainer.tasks import GanMode, Norm, TaskDefaults, declarations, task_names


class TrainingError(CycleStreamError):
    """Training cannot start or go on as asked (bad options, a run folder that does not fit)."""


@dataclass(frozen=True, kw_only=True)
class DataOptions(Options):
    """Where the images are and how each one is turned into a training crop."""

    data_a: Path | None = option(None, help="cyclegan: folder of domain A images")
    data_b: Path | None = option(None, help="cyclegan: folder of domain B images")
    dataroot: Path | None = option(None, help="cyclegan: folder holding trainA/ and trainB/")
    data: Path | None = option(None, help="pix2pix: aligned A|B side-by-side images; dcgan: a folder of images; "
                               "distill: source-domain images and videos (every 4th frame)")
    name_a: str | None = option(None, default_text="its folder's name", help="name of domain A in the model files")
    name_b: str | None = option(None, default_text="its folder's name", help="name of domain B in the model files")
    direction: Literal["AtoB", "BtoA"] = option("AtoB", help="pix2pix: which half of each image is the input")
    load_size: int | None = option(None, min=4, help="resize images to this square first; with only --crop-size "
                                   "given, in the recipe's ratio to it")
    crop_size: int | None = option(None, min=4, help="then take a random crop of this size")
    flip: bool = option(True, help="random horizontal flips")
    workers: int | None = option(None, min=0, default_text="0 on the CPU, up to 4 on CUDA",
                                 help="data loader processes decoding and cropping ahead of the step")


@dataclass(frozen=True, kw_only=True)
class ModelOptions(Options):
    """Networks and losses."""

    model: str = option("cyclegan", flag="", help="the model system: a task of trainer/tasks.py")
    ngf: int | None = option(None, min=1, help="generator width; distill: the student's")
    n_blocks: int | None = option(None, min=0, help="ResNet blocks or U-Net levels of the generator")
    ndf: int = option(64, min=1, help="discriminator width")
    n_layers_d: int = option(3, min=1, help="PatchGAN layers; 3 judges 70×70 patches")
    norm: Norm | None = option(None, help="normalisation layers")
    dropout: bool | None = option(None, help="generator dropout")
    padding: Literal["reflect", "replicate", "zero"] = option("reflect", help="generator padding")
    gan_mode: GanMode | None = option(None, help="GAN loss: lsgan (least squares) or vanilla (cross-entropy)")
    lambda_a: float = option(10.0, min=0, help="cycle loss weight A→B→A")
    lambda_b: float = option(10.0, min=0, help="cycle loss weight B→A→B")
    lambda_identity: float = option(0.5, min=0, help="identity loss, as a fraction of the cycle weights")
    lambda_l1: float | None = option(None, min=0, help="pix2pix/bicyclegan L1 weight")
    pool_size: int | None = option(None, min=0, help="image pool: earlier fakes the discriminator sees again")
    nz: int | None = option(None, min=1, help="dcgan noise size; bicyclegan: size of the latent code z")
    init_gain: float = option(0.02, above=0, help="std of the N(0, σ) initial weights")
    style: Path | None = option(None, help="style: the style image (used at its own size)")
    vgg: Path | None = option(None, help="style: torchvision VGG16/VGG19 ImageNet state dict for the perceptual "
                              "loss (https://download.pytorch.org/models/vgg16-397923af.pth)")
    content_weight: float = option(1e5, min=0, help="style: content loss weight (relu2_2)")
    style_weight: float = option(1e10, min=0, help="style: style loss weight (Gram matrices at relu1_2, relu2_2, "
                                 "relu3_3, relu4_3)")
    tv_weight: float = option(0.0, min=0, help="style: total variation weight (mean absolute neighbour differences)")
    lambda_gan: float = option(1.0, min=0, help="cut/fastcut: GAN loss weight; bicyclegan: of G(A, E(B))")
    lambda_gan2: float = option(1.0, min=0, help="bicyclegan: GAN loss weight of G(A, random z), judged by D2")
    lambda_z: float = option(0.5, min=0, help="bicyclegan: latent regression weight, |E(G(A, z)) − z|")
    lambda_kl: float = option(0.01, min=0, help="bicyclegan: KL weight of the encoder's N(μ, σ²) against N(0, 1)")
    nef: int = option(64, min=1, help="bicyclegan: encoder width")
    where_add: Literal["input", "all"] = option("all", help="bicyclegan: where z enters the U-Net: the input image "
                                                "only, or every level's down-convolution")
    use_same_d: bool = option(False, help="bicyclegan: one discriminator judges both halves' outputs (no D2)")
    conditional_d: bool = option(False, help="bicyclegan: the discriminators judge the input image beside the real "
                                 "or generated output")
    lambda_nce: float | None = option(None, min=0, default_text="the recipe's (trainer/cut_options.py)",
                                      help="cut/fastcut: PatchNCE loss weight")
    nce_idt: bool | None = option(None, default_text="the recipe's (trainer/cut_options.py)",
                                  help="cut/fastcut: identity PatchNCE on domain B images through the generator")
    flip_equivariance: bool | None = option(None, default_text="the recipe's (trainer/cut_options.py)",
                                            help="cut/fastcut: flip the input at random, PatchNCE on the flipped back "
                                            "features")
    nce_layers: str = option("0,4,8,12,16", help="cut/fastcut: generator layers (model.N) PatchNCE compares")
    num_patches: int = option(256, min=1, help="cut/fastcut: patches sampled per layer")
    nce_t: float = option(0.07, above=0, help="cut/fastcut: PatchNCE temperature")
    netf_nc: int = option(256, min=1, help="cut/fastcut: width of the MLP feature heads")
    antialias: bool = option(True, help="cut/fastcut: anti-aliased down- and upsampling (off: stride-2 convolutions "
                             "and transposed ones, the reference's --no_antialias --no_antialias_up)")
    lambda_cls: float = option(1.0, min=0, help="stargan: domain classification loss weight")
    lambda_rec: float = option(10.0, min=0, help="stargan: reconstruction loss weight")
    lambda_gp: float = option(10.0, min=0, help="stargan: WGAN-GP gradient penalty weight")
    n_critic: int = option(5, min=1, help="stargan: discriminator updates per generator update")
    latent: int = option(512, min=1, help="stylegan2: size of z and w")
    n_mlp: int = option(8, min=1, help="stylegan2: linear layers of the mapping network")
    channel_multiplier: int = option(2, min=1, help="stylegan2: widths above 32 px (the published table's multiplier)")
    r1: float = option(10.0, min=0, help="stylegan2: R1 penalty weight on the discriminator's real gradients")
    path_regularize: float = option(2.0, min=0, help="stylegan2: path-length penalty weight")
    d_reg_every: int = option(16, min=1, help="stylegan2: R1 every N iterations (lazy regularisation)")
    g_reg_every: int = option(4, min=1, help="stylegan2: path-length penalty every N iterations")
    mixing: float = option(0.9, min=0, max=1, help="stylegan2: probability of style mixing")

    def check(self) -> None:
        if self.model not in task_names():
            raise self.fail("model", f"unknown model {self.model!r}; expected one of {', '.join(task_names())}")


@dataclass(frozen=True, kw_only=True)
class OptimOptions(Options):
    """Optimiser and schedule: Adam, constant for ``epochs`` then linear decay to 0 over ``epochs_decay``."""

    lr: float | None = option(None, above=0, help="Adam learning rate")
    beta1: float | None = option(None, min=0, help="Adam β1, below 1")
    beta2: float | None = option(None, min=0, help="Adam β2, below 1")
    epochs: int | None = option(None, min=0, help="epochs at the initial rate")
    epochs_decay: int | None = option(None, min=0, help="then epochs of linear decay to 0")
    batch_size: int | None = option(None, min=1, help="images per step; with several processes see --ddp-recipe")

    def check(self) -> None:
        for name in ("beta1", "beta2"):
            if getattr(self, name) is not None and getattr(self, name) >= 1:
                raise self.fail(name, f"must be below 1, got {getattr(self, name):g}")


DDPRecipe = Literal["scaled", "official"]


@dataclass(frozen=True, kw_only=True)
class TrainRunOptions(Options):
    """How and where one training run executes: its folder, checkpoints and resuming, seed, device and
    determinism, processes.  None of these change the objective; the seed, ``ddp_recipe`` (with several
    processes) and the device decide which weights come out."""

    out: Path = option(Path("runs/train"), help="run folder: model files, state.pt, samples, logs")
    resume: bool = option(False, help="continue the run in --out from its state.pt")
    save_every_iters: int = option(0, min=0, help="also checkpoint every N iterations; 0: only at the end of "
                                   "each epoch")
    max_iters: int = option(0, min=0, help="stop, checkpointed, once N iterations are done; 0: no limit")
    seed: int = option(0, help="random seed")
    threads: int | None = option(None, min=1, default_text="torch's choice", help="torch threads per process")
    device: str = option("auto", help=f"{DEVICE_HELP}; the log says which is used (DDP: each process "
                         "cuda:LOCAL_RANK)")
    deterministic: bool = option(False, help="deterministic algorithms only (cuDNN, cuBLAS workspace): on CUDA a "
                                 "resumed run is then bit for bit the uninterrupted one, on the same GPU model, "
                                 "driver and torch (CPU runs always are)")
    precision: TrainPrecision = option("auto", help="arithmetic of the step: fp32 (the official code's), bf16 autocast "
                                       "(CPUs with AVX-512-BF16/AMX, GPUs), fp16 autocast with a gradient scaler "
                                       "(CUDA); auto: measured or known to pay here (trainer/speed.py)")
    compile: Switch = option("auto", help="torch.compile the networks (a minute or more up front); auto: on where "
                             "`cyclestream bench train` measured that it pays for this configuration")
    channels_last: Switch = option("auto", help="channels-last memory layout; auto: where `cyclestream bench train` "
                                   "measured that it pays")
    log_every: int = option(10, min=1, help="read the losses back from the device every N iterations (log.jsonl "
                            "still has one line per iteration; the step never waits for the device in between)")
    nproc: int = option(1, min=1, help="DDP processes to spawn on this machine (torchrun sets its own)")
    ddp_recipe: DDPRecipe = option("scaled", help="with several processes: scaled gives each process --batch-size "
                                   "images, an effective batch of N × --batch-size and N× fewer steps per epoch at "
                                   "the same --lr; official splits --batch-size across the processes (it must "
                                   "divide), so the effective batch and the steps per epoch are those of one process")
    progress: bool = progress_option()
    samples: int = option(4, min=0, help="images in each epoch's sample grid")


TASK_GROUPS: tuple[type[Options], ...] = (DataOptions, ModelOptions, OptimOptions)  # a recipe fills their None fields
TASK_DECIDED = frozenset(f.name for f in dataclasses.fields(TaskDefaults))

# Fields that may differ between a run and its --resume (paths, and how the run executes; a different device,
# precision, determinism or process count resumes correctly but not bit for bit).
RESUMABLE_CHANGES = frozenset(
    {"run.out", "run.resume", "run.save_every_iters", "run.max_iters", "run.threads", "run.progress",
     "run.nproc", "run.samples", "run.device", "run.precision", "run.compile", "run.channels_last",
     "run.log_every", "run.deterministic", "data.workers", "data.data_a",
     "data.data_b", "data.dataroot", "data.data", "distill.teacher"}  # distill checks the teacher's hash itself
)


@dataclass(frozen=True, kw_only=True)
class TrainOptions(Options):
    data: DataOptions = option(default_factory=DataOptions, help="data")
    model: ModelOptions = option(default_factory=ModelOptions, help="networks and losses")
    optim: OptimOptions = option(default_factory=OptimOptions, help="optimisation")
    run: TrainRunOptions = option(default_factory=TrainRunOptions, help="run")
    distill: DistillOptions = option(default_factory=DistillOptions, help="distillation: teacher, student, losses")

    @property
    def total_epochs(self) -> int:
        return int(self.optim.epochs or 0) + int(self.optim.epochs_decay or 0)

    def resolved(self) -> TrainOptions:
        """A copy with every task-decided default filled in, checked for consistency."""
        d = declarations()[self.model.model].defaults
        load, crop = self.data.load_size, self.data.crop_size
        if crop is None:
            crop = d.crop_size if load is None else min(load, d.crop_size)
        if load is None:  # keep the recipe's load/crop ratio (286/256) for a custom crop
            load = round(crop * d.load_size / d.crop_size)
        groups: dict[str, Any] = {"data": replace(self.data, load_size=load, crop_size=crop)}
        for f in fields(self):
            group = groups.get(f.name, getattr(self, f.name))
            if isinstance(group, TASK_GROUPS):
                groups[f.name] = replace(group, **{g.name: d.value(g.name, crop) for g in fields(group)
                                                   if g.name in TASK_DECIDED and getattr(group, g.name) is None})
        out = replace(self, **groups)
        out.validate()
        return out

    def validate(self) -> None:
        """Raise TrainingError for values that cannot work together, naming the flag to change (then the
        task's own checks: its data, the sizes its networks need)."""
        data, run = self.data, self.run
        assert data.load_size is not None and data.crop_size is not None
        checks = [
            (data.load_size >= data.crop_size,
             f"--load-size {data.load_size} is smaller than --crop-size {data.crop_size}"),
            (self.total_epochs >= 1, "--epochs + --epochs-decay must be at least 1"),
            (valid_device(run.device), f"--device {run.device}: expected {DEVICE_HELP}"),
            (run.precision != "fp16" or run.device == "auto" or run.device.startswith("cuda"),
             f"--precision fp16 needs a CUDA device (training on {run.device})"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        declarations()[self.model.model].validate(self)

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (paths as strings): for model metadata, logs and the training state."""
        def clean(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        return clean(asdict(self))



# ----------------------------------------------------------------------------- batches across processes


@dataclass(frozen=True)
class BatchPlan:
    """How a run's batches fall across its DDP processes: ``processes`` × ``per_process`` images per
    step (the effective batch), ``steps_per_epoch`` optimiser steps per epoch."""

    processes: int
    per_process: int
    steps_per_epoch: int
    recipe: str = "scaled"

    @property
    def effective(self) -> int:
        return self.processes * self.per_process

    def describe(self) -> str:
        n = self.processes
        line = (f"{n} process{'es' if n > 1 else ''} × batch {self.per_process} = effective batch {self.effective}, "
                f"{self.steps_per_epoch} steps per epoch")
        if n > 1 and self.recipe == "scaled":
            line += (f" (--ddp-recipe scaled: {n}× the batch and 1/{n} of the steps of one process at the same --lr; "
                     f"--ddp-recipe official keeps the effective batch at --batch-size)")
        elif n > 1:
            line += " (--ddp-recipe official: --batch-size split across the processes, as one process would train)"
        return line


def per_process_batch(batch_size: int, processes: int, recipe: str) -> int:
    """Images each DDP process takes per step: ``batch_size`` (``scaled``), or ``batch_size / processes``
    (``official``, which keeps the effective batch at ``batch_size``; a TrainingError when it does not divide)."""
    if recipe == "scaled" or processes <= 1:
        return batch_size
    if batch_size % processes:
        raise TrainingError(
            f"--ddp-recipe official splits --batch-size {batch_size} across {processes} processes, so it must be a "
            f"multiple of {processes}; change --batch-size or --nproc, or use --ddp-recipe scaled (each process "
            f"takes --batch-size images: an effective batch of {processes * batch_size})")
    return batch_size // processes


def plan_batches(samples: int, batch_size: int, processes: int, recipe: str) -> BatchPlan:
    """The plan for an epoch of ``samples`` samples (DistributedSampler's rule: each process gets
    ceil(samples / processes) of them, padded by repeating; the last batch may be short)."""
    per = per_process_batch(batch_size, processes, recipe)
    share = math.ceil(samples / max(1, processes))
    return BatchPlan(processes, per, math.ceil(share / per), recipe)


def check_patchgan(crop: int, n_layers: int) -> None:
    """The PatchGAN must still see at least 2×2 positions before its last two 4×4 convs."""
    side = crop
    for _ in range(n_layers):
        side = side // 2
    if side - 1 < 2:
        raise TrainingError(f"--crop-size {crop} is too small for a {n_layers}-layer PatchGAN; "
                            f"use a larger crop or fewer --n-layers-d")


def changed_fields(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Dotted names of options that differ between two ``to_dict()`` results and matter for resuming."""
    out = []
    defaults = TrainOptions().to_dict()  # a group a run saved before it existed holds its defaults
    for group, values in current.items():
        for key, value in values.items():
            name = f"{group}.{key}"
            was = saved.get(group, {}).get(key, defaults.get(group, {}).get(key))
            if name not in RESUMABLE_CHANGES and was != value:
                out.append(name)
    return out

