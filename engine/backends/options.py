"""How to run a generator (backend, device, precision, batch, size, kernels, tuning, int8 calibration), and
"open a backend for this model and frame size": shared by every job that runs a model.  The options import
nothing heavy.

``--precision auto`` (the default) lets ``--backend auto`` choose the arithmetic too: it measures fp32 and
whatever reduced precision this hardware has instructions for (bf16 with AVX-512-BF16/AMX or on a GPU,
fp16 on a GPU, int8 on CPUs with AVX2/VNNI) and keeps only settings within the fidelity gate of their
precision against eager fp32 (``tune.FIDELITY_DB``).  A precision named explicitly restricts ``auto``'s
candidates to that precision.  Every other backend runs ``auto`` as fp32: the numbers of the reference.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cyclestream.engine.backends import BACKEND_NAMES, backends_help
from cyclestream.engine.options import DEVICE_HELP, Options, option, parse_size, progress_option, valid_device

if TYPE_CHECKING:
    from cyclestream.engine.backends.base import Backend
    from cyclestream.engine.checkpoint import LoadedModel

log = logging.getLogger("cyclestream")

Precision = Literal["fp32", "bf16", "fp16", "int8"]  # what a backend runs
PRECISIONS: tuple[Precision, ...] = ("fp32", "bf16", "fp16", "int8")
PrecisionChoice = Literal["auto", "fp32", "bf16", "fp16", "int8"]  # what a user asks for
Kernels = Literal["auto", "triton", "reference", "off"]
NormStats = Literal["frame", "running"]  # how batch norms run: engine/models/runtime_norm.py
Upsample = Literal["auto", "scale", "align"]  # how an AnimeGANv2 decoder upsamples: engine/models/animegan2.py

DROPOUT_BACKENDS = ("auto", "eager", "compile")  # the ones that run random dropout (auto: as eager)
AUTO_TUNE_BUDGET_S = 30.0  # the measurements of --backend auto's first run of a model, shape and device


def backend_option() -> Any:
    """The ``--backend`` field of every job that runs a generator: the registry's names and help."""
    return option("auto", choices=BACKEND_NAMES, metavar="BACKEND", help=backends_help())


@dataclass(frozen=True, kw_only=True)
class RunOptions(Options):
    """How to run the generator: shared by every job that runs one."""

    backend: str = backend_option()
    device: str = option("auto", help=DEVICE_HELP)
    precision: PrecisionChoice = option(
        "auto", help="arithmetic of the model: auto (--backend auto measures fp32 and the reduced precisions this "
        "hardware has, and keeps those that match fp32 closely; other backends: fp32), fp32, bf16 (CPUs with "
        "AVX-512-BF16 or AMX, GPUs), fp16 (GPUs), int8 (CPUs: onnxruntime, openvino; calibrated on --calibration)")
    batch_size: int = option(1, min=1, help="frames per model call")
    size: tuple[int, int] | None = option(None, parse=parse_size, metavar="WxH", default_text="keep their size",
                                          help="scale frames to WxH first")
    kernels: Kernels = option("auto", help="fused instance-norm kernels for --backend eager (auto: Triton on "
                              "CUDA, off on CPU)")
    tune: bool = option(True, flag="--no-tune", help="--backend auto without measuring: the static rules "
                        "(TensorRT on a GPU, OpenVINO for bf16 on CPUs with bf16, else eager)")
    calibration: Path | None = option(None, metavar="PATH", help="a video or a folder of images whose frames "
                                      "calibrate int8", default_text="the input video, else a synthetic pattern; "
                                      "tune: the bundled clip")
    target: str | None = option(None, metavar="NAME|INDEX|0,1,0,0,1", default_text="none (required by models "
                                "with a label input)", help="a StarGAN model's target domain: a name from the "
                                "model's domains, an index, or the whole label vector (CelebA attributes)")
    z_seed: int | None = option(None, min=0, metavar="N", default_text="z = 0, the prior's mean",
                                help="a BicycleGAN model's latent z, drawn from N(0, 1) with this seed (one z "
                                "for every frame)")
    z_walk: float | None = option(None, above=0, metavar="SECONDS", help="a BicycleGAN model's z walks smoothly "
                                  "through N(0, 1), from --z-seed's z to the next seed's in SECONDS, and on (video "
                                  "jobs: by each frame's time)")

    norm_stats: NormStats = option("frame", help="batch-norm generators (pix2pix's default): frame normalises each "
                                   "frame by its own statistics, as the official test.py runs them by default; "
                                   "running uses the stored statistics, as its --eval does")  # fmt: skip
    dropout: Literal["off", "on"] = option("off", help="generators with dropout: on drops at random in every frame, as "
                                           "the official test.py runs pix2pix (the paper's noise; flickers on video; "
                                           "--backend eager or compile)")  # fmt: skip
    upsample: Upsample = option("auto", help="AnimeGANv2 generators' decoder: scale (×2 without aligned corners, as "
                                "its test.py runs them), align (to the encoder's sizes with aligned corners: its "
                                "--upsample_align True, and the hub's face2paint); auto: the model file's, else "
                                "scale")  # fmt: skip

    def check(self) -> None:
        if not valid_device(self.device):
            raise self.fail("device", f"expected {DEVICE_HELP}; got {self.device!r}")
        if self.dropout == "on" and self.backend not in DROPOUT_BACKENDS:
            runs = " or ".join(DROPOUT_BACKENDS)
            raise self.fail("dropout", f"on draws new random numbers every call: --backend {runs} runs it, "
                            f"not {self.backend}")  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class TuneOptions(Options):
    """``cyclestream tune``: what ``--backend auto`` measures on a job's first run, ahead of time."""

    run: RunOptions = option(default_factory=RunOptions, help="the job to tune for",
                             fields=("device", "precision", "batch_size", "size", "kernels", "calibration"))
    budget: float = option(120.0, above=0, metavar="SECONDS",
                           help="time for the measurements in all (an export or compilation under way is finished)")
    progress: bool = progress_option()


def run_precision(options: RunOptions) -> PrecisionChoice:
    """The precision the chosen backend is prepared with: ``auto`` stays ``auto`` only for a tuning
    ``--backend auto``; everywhere else it is fp32."""
    if options.precision == "auto" and not (options.backend == "auto" and options.tune):
        return "fp32"
    return options.precision


def run_description(model: LoadedModel, options: RunOptions) -> str | None:
    """How ``options`` run the model's batch norms, dropout and upsampling, for the log and ``info``; None
    when it has none of them."""
    from cyclestream.engine.models.animegan2 import AnimeGAN2Spec, upsampling_text
    from cyclestream.engine.models.runtime_norm import describe

    parts = [describe(model.generator, model.spec, options.norm_stats, options.dropout == "on")]
    if isinstance(model.spec, AnimeGAN2Spec):
        parts.append(upsampling_text(upsampled_spec(model, options)))
    return "; ".join(p for p in parts if p) or None


def upsampled_spec(model: LoadedModel, options: RunOptions) -> Any:
    """The model's spec with ``--upsample``'s choice (AnimeGANv2 only: a CheckpointError for another family)."""
    from cyclestream.engine.errors import CheckpointError

    if options.upsample == "auto":
        return model.spec
    if model.family.name != "animegan2":
        raise CheckpointError(f"--upsample {options.upsample}: {model.path} is a {model.family.name} model; the "
                              "choice is an AnimeGANv2 decoder's")  # fmt: skip
    return dataclasses.replace(model.spec, upsample_align=options.upsample == "align")


def as_run_model(model: LoadedModel, options: RunOptions) -> LoadedModel:
    """``model`` with its batch norms, dropout and upsampling as ``--norm-stats``, ``--dropout`` and
    ``--upsample`` run them (said in the log)."""
    from cyclestream.engine.models.animegan2 import with_upsampling
    from cyclestream.engine.models.runtime_norm import as_run

    if said := run_description(model, options):
        log.info("model: %s", said)
    spec = upsampled_spec(model, options)
    generator = as_run(model.generator, model.spec, options.norm_stats, options.dropout == "on")
    if spec is not model.spec:
        generator, spec = with_upsampling(generator, model.spec, spec.upsample_align)
    if generator is model.generator:
        return model
    return dataclasses.replace(model, generator=generator, spec=spec)


def prepare_backend(
    model: LoadedModel, options: RunOptions, height: int, width: int, *, calibration: Path | None = None
) -> Backend:
    """The backend of ``options``, prepared for ``height`` x ``width`` frames.  ``calibration``: the job's
    input, whose first frames calibrate int8 when ``options.calibration`` names none (else a synthetic pattern)."""
    from cyclestream.engine.backends import FrameShape, create_backend
    from cyclestream.engine.backends.auto import AutoBackend
    from cyclestream.engine.backends.fit import check_frame_fits
    from cyclestream.engine.backends.quantize import Calibrated, Calibration
    from cyclestream.engine.conditioning import conditioned_backend, conditioning_inputs, conditioning_path
    from cyclestream.engine.machine import reduced_precision_warning
    from cyclestream.engine.options import resolve_device

    inputs = conditioning_inputs(model, options.target, options.z_seed, options.z_walk)  # checked before any work
    model = as_run_model(model, options)
    if options.dropout == "on" and options.backend == "auto":  # nothing to measure: random numbers every call
        options = dataclasses.replace(options, backend="eager")
    options = conditioned_backend(model, options)
    device = resolve_device(options.device)
    precision = run_precision(options)
    check_frame_fits(model.spec, options.batch_size, height, width,
                     precision="fp32" if precision == "auto" else precision,
                     device=device)
    if (warning := reduced_precision_warning(precision, device)) is not None:
        log.warning("%s", warning)
    backend = create_backend(options.backend, device, options.kernels)
    backend.conditioning, backend.conditioning_at = inputs, conditioning_path(model, options)
    if isinstance(backend, Calibrated):
        backend.calibration = Calibration(options.calibration or calibration)
    if isinstance(backend, AutoBackend):
        backend.tune = options.tune
    backend.prepare(model, FrameShape(options.batch_size, height, width), precision)  # type: ignore[arg-type]
    log.info("backend: %s", backend.describe())
    return backend
