"""Training options: plain dataclasses, the command-line flags that fill them, and their defaults.

The defaults are the official pytorch-CycleGAN-and-pix2pix recipe for each model; a field left at
``None`` means "the model's default" and is filled in by :meth:`TrainOptions.resolved`, so every
later stage sees concrete values.  This module imports no torch (``cyclestream --help`` stays fast).
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from cyclestream.engine.errors import CycleStreamError

ModelKind = Literal["cyclegan", "pix2pix", "dcgan", "distill"]
MODELS: tuple[str, ...] = ("cyclegan", "pix2pix", "dcgan", "distill")


class TrainingError(CycleStreamError):
    """Training cannot start or go on as asked (bad options, a run folder that does not fit)."""


@dataclass(frozen=True)
class DataOptions:
    """Where the images are and how each one is turned into a training crop."""

    data_a: Path | None = None  # cyclegan: domain A folder
    data_b: Path | None = None  # cyclegan: domain B folder
    dataroot: Path | None = None  # cyclegan: DATAROOT/trainA + DATAROOT/trainB
    data: Path | None = None  # pix2pix: aligned A|B images; dcgan: one folder; distill: source-domain images
    name_a: str | None = None  # domain names written into the model files
    name_b: str | None = None
    direction: Literal["AtoB", "BtoA"] = "AtoB"  # pix2pix: which half is the input
    load_size: int | None = None  # resize to load_size² (286; dcgan 64) ...
    crop_size: int | None = None  # ... then random crop_size² crop (256; dcgan 64)
    flip: bool = True  # random horizontal flip
    workers: int = 0  # DataLoader worker processes


@dataclass(frozen=True)
class ModelOptions:
    """Networks and losses."""

    model: ModelKind = "cyclegan"
    ngf: int = 64  # distill: the student's width
    n_blocks: int | None = None  # resnet blocks (9) / U-Net levels (log2 crop, at most 8)
    ndf: int = 64
    n_layers_d: int = 3  # PatchGAN depth: 3 = the 70×70 PatchGAN
    norm: Literal["instance", "batch"] | None = None  # instance (cyclegan), batch (pix2pix, dcgan)
    dropout: bool | None = None  # generator dropout: off (cyclegan), on (pix2pix)
    padding: Literal["reflect", "replicate", "zero"] = "reflect"
    gan_mode: Literal["lsgan", "vanilla"] | None = None  # lsgan (cyclegan), vanilla (pix2pix, dcgan)
    lambda_a: float = 10.0  # cycle A→B→A
    lambda_b: float = 10.0  # cycle B→A→B
    lambda_identity: float = 0.5  # identity, as a fraction of lambda_a/b
    lambda_l1: float = 100.0  # pix2pix L1
    pool_size: int | None = None  # image pool: 50 (cyclegan), 0 (pix2pix)
    nz: int = 100  # dcgan noise size
    init_gain: float = 0.02  # N(0, init_gain) weights


@dataclass(frozen=True)
class OptimOptions:
    """Optimiser and schedule: Adam, constant for ``epochs`` then linear decay to 0 over ``epochs_decay``."""

    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    epochs: int | None = None  # 100 (cyclegan, pix2pix), 25 (dcgan)
    epochs_decay: int | None = None  # 100 (cyclegan, pix2pix), 0 (dcgan)
    batch_size: int | None = None  # 1 (cyclegan, pix2pix), 128 (dcgan)


DDPRecipe = Literal["scaled", "official"]
DDP_RECIPES: tuple[str, ...] = ("scaled", "official")
DEVICE_HELP = "auto (cuda when torch sees a GPU, else cpu), cpu, cuda or cuda:N"


@dataclass(frozen=True)
class TrainRunOptions:
    """How and where one training run executes: its folder, checkpoints and resuming, seed, device and
    determinism, processes.  None of these change the objective; the seed, ``ddp_recipe`` (with several
    processes) and the device decide which weights come out."""

    out: Path = Path("runs/train")
    resume: bool = False
    save_every_iters: int = 0  # also checkpoint every N iterations (0: only at epoch ends)
    max_iters: int = 0  # stop (after checkpointing) once this many iterations are done; 0: no limit
    seed: int = 0
    threads: int | None = None  # torch.set_num_threads per process
    device: str = "auto"  # auto (cuda if available, else cpu), cpu, cuda, cuda:N (DDP: each rank cuda:LOCAL_RANK)
    deterministic: bool = False  # deterministic algorithms, cuDNN and cuBLAS settings (bit-for-bit resume on CUDA)
    amp: Literal["none", "bf16", "fp16"] = "none"  # mixed precision (CUDA only)
    nproc: int = 1  # processes to spawn for DDP (torchrun sets its own)
    ddp_recipe: DDPRecipe = "scaled"  # scaled: --batch-size per process; official: --batch-size split across them
    progress: bool = True
    samples: int = 4  # images in each epoch's sample grid


@dataclass(frozen=True)
class DistillOptions:
    """``distill`` only: the teacher, the student's architecture and the weights of its three losses
    (GAN Compression: L1 to the teacher's output, feature distillation, adversarial)."""

    teacher: Path | None = None  # any generator file cyclestream loads
    arch: Literal["resnet", "mobile"] = "mobile"  # the student: ResNet or depthwise-separable ResNet
    lambda_recon: float = 10.0  # L1 to the teacher's output
    lambda_feat: float = 1.0  # MSE of 1x1-mapped student features to the teacher's
    lambda_gan: float = 1.0  # adversarial, against a PatchGAN on the teacher's outputs
    feat_layers: int = 4  # residual-block outputs distilled (at most the student's blocks)
    init: Path | None = None  # start the student from this model file (same architecture), e.g. a finished run's


# Fields that may differ between a run and its --resume (paths, and how the run executes; a different device,
# precision, determinism or process count resumes correctly but not bit for bit).
RESUMABLE_CHANGES = frozenset(
    {"run.out", "run.resume", "run.save_every_iters", "run.max_iters", "run.threads", "run.progress",
     "run.nproc", "run.samples", "run.device", "run.amp", "run.deterministic", "data.workers", "data.data_a",
     "data.data_b", "data.dataroot", "data.data", "distill.teacher"}  # distill checks the teacher's hash itself
)

_DEFAULTS: dict[str, dict[str, Any]] = {
    "cyclegan": {"load_size": 286, "crop_size": 256, "norm": "instance", "dropout": False, "gan_mode": "lsgan",
                 "pool_size": 50, "epochs": 100, "epochs_decay": 100, "batch_size": 1},
    "pix2pix": {"load_size": 286, "crop_size": 256, "norm": "batch", "dropout": True, "gan_mode": "vanilla",
                "pool_size": 0, "epochs": 100, "epochs_decay": 100, "batch_size": 1},
    "dcgan": {"load_size": 64, "crop_size": 64, "norm": "batch", "dropout": False, "gan_mode": "vanilla",
              "pool_size": 0, "epochs": 25, "epochs_decay": 0, "batch_size": 128},
    "distill": {"load_size": 286, "crop_size": 256, "norm": "instance", "dropout": False, "gan_mode": "lsgan",
                "pool_size": 0, "epochs": 10, "epochs_decay": 10, "batch_size": 4},
}


@dataclass(frozen=True)
class TrainOptions:
    data: DataOptions = field(default_factory=DataOptions)
    model: ModelOptions = field(default_factory=ModelOptions)
    optim: OptimOptions = field(default_factory=OptimOptions)
    run: TrainRunOptions = field(default_factory=TrainRunOptions)
    distill: DistillOptions = field(default_factory=DistillOptions)

    @property
    def total_epochs(self) -> int:
        return int(self.optim.epochs or 0) + int(self.optim.epochs_decay or 0)

    def resolved(self) -> TrainOptions:
        """A copy with every model-dependent default filled in, checked for consistency."""
        if self.model.model not in MODELS:
            raise TrainingError(f"unknown model {self.model.model!r} (expected one of {', '.join(MODELS)})")
        d = _DEFAULTS[self.model.model]

        def pick(value: Any, key: str) -> Any:
            return d[key] if value is None else value

        load, crop = self.data.load_size, self.data.crop_size
        if crop is None:
            crop = d["crop_size"] if load is None else min(load, d["crop_size"])
        if load is None:  # keep the recipe's load/crop ratio (286/256) for a custom crop
            load = round(crop * d["load_size"] / d["crop_size"])
        data = replace(self.data, load_size=load, crop_size=crop)
        model = replace(self.model, norm=pick(self.model.norm, "norm"), dropout=pick(self.model.dropout, "dropout"),
                        gan_mode=pick(self.model.gan_mode, "gan_mode"),
                        pool_size=pick(self.model.pool_size, "pool_size"))
        if model.n_blocks is None:
            levels = int(math.log2(max(data.crop_size, 1)))
            model = replace(model, n_blocks={"cyclegan": 9, "pix2pix": max(5, min(8, levels)), "dcgan": 0,
                                             "distill": 4}[model.model])
        optim = replace(self.optim, epochs=pick(self.optim.epochs, "epochs"),
                        epochs_decay=pick(self.optim.epochs_decay, "epochs_decay"),
                        batch_size=pick(self.optim.batch_size, "batch_size"))
        out = TrainOptions(data, model, optim, self.run, self.distill)
        out.validate()
        return out

    def validate(self) -> None:
        """Raise TrainingError for values that cannot work, naming the flag to change."""
        data, model, optim, run = self.data, self.model, self.optim, self.run
        assert data.load_size is not None and data.crop_size is not None and optim.batch_size is not None
        checks = [
            (data.crop_size >= 4, f"--crop-size {data.crop_size} is too small"),
            (data.load_size >= data.crop_size,
             f"--load-size {data.load_size} is smaller than --crop-size {data.crop_size}"),
            (model.ngf >= 1 and model.ndf >= 1, "--ngf and --ndf must be at least 1"),
            (optim.batch_size >= 1, "--batch-size must be at least 1"),
            ((optim.epochs or 0) >= 0 and (optim.epochs_decay or 0) >= 0, "--epochs must not be negative"),
            (self.total_epochs >= 1, "--epochs + --epochs-decay must be at least 1"),
            (optim.lr > 0, "--lr must be positive"),
            (run.save_every_iters >= 0 and run.max_iters >= 0, "--save-every-iters/--max-iters must be >= 0"),
            (run.nproc >= 1, "--nproc must be at least 1"),
            (_valid_device(run.device), f"--device {run.device}: expected {DEVICE_HELP}"),
            (run.amp == "none" or run.device == "auto" or run.device.startswith("cuda"),
             f"--amp {run.amp} needs a CUDA device (training on {run.device})"),
            (run.ddp_recipe in DDP_RECIPES, f"--ddp-recipe {run.ddp_recipe}: expected {' or '.join(DDP_RECIPES)}"),
            (model.pool_size is None or model.pool_size >= 0, "--pool-size must not be negative"),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainingError(message)
        if model.model == "cyclegan":
            if data.crop_size % 4:
                raise TrainingError(f"--crop-size {data.crop_size}: a ResNet generator needs a multiple of 4")
            if not (data.dataroot or (data.data_a and data.data_b)):
                raise TrainingError("cyclegan needs --data-a DIR --data-b DIR (or --dataroot with trainA/trainB)")
        elif model.model == "distill":
            _check_distill(self)
        elif model.model == "pix2pix":
            if data.data is None:
                raise TrainingError("pix2pix needs --data DIR of aligned A|B side-by-side images")
            if data.crop_size % (2 ** int(model.n_blocks or 0)):
                raise TrainingError(f"--crop-size {data.crop_size} is not a multiple of 2**{model.n_blocks} "
                                    f"(the U-Net's --n-blocks {model.n_blocks}); use a power of two")
        else:
            if data.data is None:
                raise TrainingError("dcgan needs --data DIR, one folder of images")
            size = data.crop_size
            if size < 16 or size & (size - 1):
                raise TrainingError(f"dcgan --crop-size {size}: must be a power of two, at least 16 (default 64)")
        if model.model != "dcgan":
            _check_patchgan(data.crop_size, model.n_layers_d)

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (paths as strings): for model metadata, logs and the training state."""
        def clean(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        return clean(asdict(self))


def _valid_device(device: str) -> bool:
    kind, _, index = device.partition(":")
    if kind == "cuda" and index:
        return index.isdigit()
    return device in ("auto", "cpu", "cuda")


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


def _check_distill(options: TrainOptions) -> None:
    data, distill = options.data, options.distill
    if distill.teacher is None:
        raise TrainingError("distill needs a TEACHER model file")
    if data.data is None:
        raise TrainingError("distill needs --data DIR, a folder of source-domain images (and videos)")
    if distill.arch not in ("resnet", "mobile"):
        raise TrainingError(f"--arch {distill.arch}: expected resnet or mobile")
    if int(data.crop_size or 0) % 4:
        raise TrainingError(f"--crop-size {data.crop_size}: the student needs a multiple of 4")
    weights = (distill.lambda_recon, distill.lambda_feat, distill.lambda_gan)
    if min(weights) < 0 or distill.feat_layers < 0:
        raise TrainingError("--lambda-recon/--lambda-feat/--lambda-gan and --feat-layers must not be negative")


def _check_patchgan(crop: int, n_layers: int) -> None:
    """The PatchGAN must still see at least 2×2 positions before its last two 4×4 convs."""
    side = crop
    for _ in range(n_layers):
        side = side // 2
    if n_layers < 1 or side - 1 < 2:
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


# ----------------------------------------------------------------------------- command-line flags


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``cyclestream train`` and ``python -m cyclestream.trainer``."""
    p.add_argument("--model", choices=[m for m in MODELS if m != "distill"], default="cyclegan",  # distill: own command
                   help="cyclegan (unpaired A/B folders, default), pix2pix (aligned A|B images), dcgan (noise→image)")
    g = p.add_argument_group("data")
    g.add_argument("--data-a", type=Path, help="cyclegan: folder of domain A images")
    g.add_argument("--data-b", type=Path, help="cyclegan: folder of domain B images")
    g.add_argument("--dataroot", type=Path, help="cyclegan: folder holding trainA/ and trainB/")
    g.add_argument("--data", type=Path, help="pix2pix: aligned A|B side-by-side images; dcgan: a folder of images")
    g.add_argument("--name-a", help="name of domain A in the model files (default: its folder's name)")
    g.add_argument("--name-b", help="name of domain B in the model files (default: its folder's name)")
    g.add_argument("--direction", choices=["AtoB", "BtoA"], default="AtoB", help="pix2pix: input half (default AtoB)")
    g.add_argument("--load-size", type=_positive, help="resize images to this square first (default 286; dcgan 64)")
    g.add_argument("--crop-size", type=_positive, help="then take a random crop of this size (default 256; dcgan 64)")
    g.add_argument("--no-flip", dest="flip", action="store_false", help="no random horizontal flips")
    g.add_argument("--workers", type=_non_negative, default=0, help="data loader processes (default 0)")
    g = p.add_argument_group("networks and losses")
    g.add_argument("--ngf", type=_positive, default=64, help="generator width (default 64)")
    g.add_argument("--n-blocks", type=_non_negative,
                   help="ResNet blocks (default 9) or U-Net levels (default log2 of the crop, at most 8)")
    g.add_argument("--ndf", type=_positive, default=64, help="discriminator width (default 64)")
    g.add_argument("--n-layers-d", type=_positive, default=3, help="PatchGAN layers (default 3: 70×70)")
    g.add_argument("--norm", choices=["instance", "batch"], help="instance (cyclegan default) or batch (pix2pix)")
    g.add_argument("--dropout", action=argparse.BooleanOptionalAction, default=None,
                   help="generator dropout (default: off for cyclegan, on for pix2pix)")
    g.add_argument("--padding", choices=["reflect", "replicate", "zero"], default="reflect")
    g.add_argument("--gan-mode", choices=["lsgan", "vanilla"], help="lsgan (cyclegan default) or vanilla")
    g.add_argument("--lambda-a", type=float, default=10.0, help="cycle loss weight A→B→A (default 10)")
    g.add_argument("--lambda-b", type=float, default=10.0, help="cycle loss weight B→A→B (default 10)")
    g.add_argument("--lambda-identity", type=float, default=0.5, help="identity loss, fraction of λ (default 0.5)")
    g.add_argument("--lambda-l1", type=float, default=100.0, help="pix2pix L1 weight (default 100)")
    g.add_argument("--pool-size", type=_non_negative, help="image pool size (default 50; pix2pix 0)")
    g.add_argument("--nz", type=_positive, default=100, help="dcgan noise size (default 100)")
    g.add_argument("--init-gain", type=float, default=0.02, help="std of the N(0, σ) init (default 0.02)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    g.add_argument("--beta1", type=float, default=0.5, help="Adam β1 (default 0.5)")
    g.add_argument("--beta2", type=float, default=0.999, help="Adam β2 (default 0.999)")
    g.add_argument("--epochs", type=_non_negative, help="epochs at the initial rate (default 100; dcgan 25)")
    g.add_argument("--epochs-decay", type=_non_negative, help="then epochs of linear decay to 0 (default 100)")
    g.add_argument("--batch-size", type=_positive,
                   help="images per step (default 1; dcgan 128); with several processes see --ddp-recipe")
    g = p.add_argument_group("run")
    g.add_argument("--out", type=Path, required=True, help="run folder: model files, state.pt, samples, logs")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its state.pt")
    g.add_argument("--save-every-iters", type=_non_negative, default=0,
                   help="also checkpoint every N iterations (default: only at the end of each epoch)")
    g.add_argument("--max-iters", type=_non_negative, default=0, help="stop after N iterations (checkpointed)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--threads", type=_positive, help="torch threads per process (default: torch's choice)")
    add_device_arguments(g)
    g.add_argument("--amp", choices=["none", "bf16", "fp16"], default="none", help="mixed precision on CUDA")
    add_process_arguments(g)
    g.add_argument("--samples", type=_non_negative, default=4, help="images per epoch sample grid (default 4)")


def add_device_arguments(g: Any) -> None:
    """``--device`` and ``--deterministic`` (train and distill)."""
    g.add_argument("--device", default="auto", help=f"{DEVICE_HELP} (default auto; the log says which is used)")
    g.add_argument("--deterministic", action="store_true",
                   help="deterministic algorithms only (cuDNN, cuBLAS workspace): on CUDA a resumed run is then bit "
                        "for bit the uninterrupted one, on the same GPU model, driver and torch (CPU runs always are)")


def add_process_arguments(g: Any) -> None:
    """``--nproc`` and ``--ddp-recipe`` (train and distill)."""
    g.add_argument("--nproc", type=_positive, default=1, help="DDP processes to spawn on this machine (default 1)")
    g.add_argument("--ddp-recipe", choices=DDP_RECIPES, default="scaled",
                   help="with several processes: scaled (default) gives each process --batch-size images, an "
                        "effective batch of N × --batch-size and N× fewer steps per epoch at the same --lr; "
                        "official splits --batch-size across the processes (it must divide), so the effective "
                        "batch and the steps per epoch are those of one process")


def options_from_args(args: argparse.Namespace, progress: bool = True) -> TrainOptions:
    """TrainOptions from parsed ``add_train_arguments`` flags (model defaults still unresolved)."""
    def take(cls: type, **extra: Any) -> Any:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in vars(args).items() if k in names and k not in extra}, **extra)

    return TrainOptions(
        data=take(DataOptions),
        model=take(ModelOptions),
        optim=take(OptimOptions),
        run=take(TrainRunOptions, progress=progress and not getattr(args, "quiet", False)),
    )
