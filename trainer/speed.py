"""How a training step runs fast without changing the recipe: precision, ``torch.compile``, memory layout,
the optimiser's kernel — and what ``auto`` picks for each, from measurements of this machine.

A :class:`Speed` is one concrete way to run the same objective: ``fp32`` or reduced-precision autocast
(``bf16``; ``fp16`` with a gradient scaler, CUDA only), the networks compiled in place or eager, channels-last
or contiguous tensors, and Adam's fused kernel (CUDA only) or its default one.  The exact path, eager fp32
contiguous with the default Adam, is the official code's own arithmetic; the objective tests run on it.

``--precision``, ``--compile`` and ``--channels-last`` are ``auto`` by default, decided here:

- a record of ``cyclestream bench train`` for this machine and configuration (:func:`speed_key`: the CPU's
  model and flags or the GPU, torch, the task, its networks, crop and batch) picks the fastest mode it
  measured among those the other flags allow;
- without one, the rules known to pay: bf16 on a CPU with AVX-512-BF16 or AMX when this machine's measured
  peaks (``roofline.measure_peaks``, cached) have bf16 at least 1.5x fp32, bf16 on a GPU that has it (fp16
  on older tensor-core GPUs); never emulated bf16.  Compile and channels-last, whose gains depend on the
  machine and whose compile costs a minute or more up front, are left off until a bench measured them here;
- ``CYCLESTREAM_TUNE=0`` (test suites): the exact path, nothing measured.

This module imports torch only inside functions: the options' ``--help`` reads the names.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

    from cyclestream.trainer.options import TrainOptions

log = logging.getLogger("cyclestream.trainer")

TrainPrecision = Literal["auto", "fp32", "bf16", "fp16"]
Switch = Literal["auto", "on", "off"]
RECORD_FORMAT = 1
BF16_PAYS = 1.5  # measured bf16/fp32 peak ratio from which bf16 is chosen without a bench record


@dataclass(frozen=True, kw_only=True)
class Speed:
    """One concrete way to run a training step (nothing ``auto``)."""

    precision: str = "fp32"  # fp32 | bf16 | fp16
    compile: bool = False
    channels_last: bool = False
    fused_adam: bool = False

    @property
    def name(self) -> str:
        """``eager fp32``, ``compile+cl bf16``: the mode's name in logs, tables and records."""
        how = "compile" if self.compile else "eager"
        return f"{how}{'+cl' if self.channels_last else ''} {self.precision}"

    @property
    def exact(self) -> bool:
        """The official code's arithmetic: eager fp32, contiguous, default Adam."""
        return self == Speed()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# Every mode's name, in the order a bench times them (``compile+cl bf16``); torch-free, for option checks.
MODE_NAMES = tuple(Speed(precision=p, compile=c, channels_last=cl).name
                   for p in ("fp32", "bf16", "fp16") for c in (False, True) for cl in (False, True))


def modes(device_type: str, *, bf16: bool) -> list[Speed]:
    """The modes a bench measures on a device: eager and compiled, contiguous and channels-last, fp32 and the
    reduced precisions it has (``bf16``: the CPU or GPU has bf16 instructions; fp16 on CUDA)."""
    import torch

    precisions = ["fp32"] + (["bf16"] if bf16 else []) + (["fp16"] if device_type == "cuda" else [])
    device = torch.device(device_type)
    return [concrete(p, c, cl, device) for p in precisions for c in (False, True) for cl in (False, True)]


def has_bf16(device: torch.device) -> bool:
    """Whether the device has bf16 arithmetic in hardware (never emulated)."""
    import torch

    from cyclestream.engine.machine import cpu_has_bf16

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return cpu_has_bf16()


# ----------------------------------------------------------------------------- the bench record


def speed_key(options: TrainOptions, device: torch.device) -> dict[str, Any]:
    """What a measured speed depends on: the machine, torch, the task and its networks' sizes, crop, batch."""
    import torch

    from cyclestream.engine.machine import cpu_flags, cpu_model

    m, d = options.model, options.data
    key: dict[str, Any] = {
        "format": RECORD_FORMAT, "torch": str(torch.__version__), "device": device.type,
        "threads": torch.get_num_threads(), "task": m.model, "ngf": m.ngf, "n_blocks": m.n_blocks, "ndf": m.ndf,
        "n_layers_d": m.n_layers_d, "norm": m.norm, "crop": d.crop_size, "batch": options.optim.batch_size,
    }
    if device.type == "cuda":
        key["gpu"] = torch.cuda.get_device_name(device)
    else:
        key["cpu"], key["flags"] = cpu_model(), sorted(cpu_flags())
    return key


def record_path(key: dict[str, Any], cache_dir: Path | None = None) -> Path:
    from cyclestream.engine.backends.cache import default_cache_dir, key_digest

    return (cache_dir or default_cache_dir()) / "train_speed" / f"{key_digest(key)}.json"


def store_record(key: dict[str, Any], rows: list[dict[str, Any]], cache_dir: Path | None = None) -> Path | None:
    """Write a bench's measured rows (each ``{"speed": Speed.to_dict(), "seconds": s/it}``) for ``auto``."""
    from cyclestream.engine.atomic import atomic_output
    from cyclestream.engine.backends.cache import private_folder

    path = record_path(key, cache_dir)
    try:
        private_folder(path.parent)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps({"key": key, "rows": rows}, indent=1))
    except (OSError, ValueError) as e:  # a read-only or foreign cache: auto keeps its rules
        log.warning("the measured training speeds were not recorded at %s: %s", path, e)
        return None
    return path


def load_record(key: dict[str, Any], cache_dir: Path | None = None) -> list[tuple[Speed, float]]:
    """The measured (mode, seconds per iteration) of this key, fastest first; empty when none was recorded."""
    path = record_path(key, cache_dir)
    try:
        data = json.loads(path.read_text())
        if data.get("key") != key:
            return []
        rows = [(Speed(**r["speed"]), float(r["seconds"])) for r in data["rows"]]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []
    return sorted(rows, key=lambda r: r[1])


# ----------------------------------------------------------------------------- deciding auto


def _allowed(speed: Speed, precision: str, compiled: str, channels_last: str) -> bool:
    return ((precision == "auto" or speed.precision == precision)
            and (compiled == "auto" or speed.compile == (compiled == "on"))
            and (channels_last == "auto" or speed.channels_last == (channels_last == "on")))


def auto_precision(device: torch.device) -> tuple[str, str]:
    """(precision, why) by the rules known to pay, without a bench record."""
    import torch

    if device.type == "cuda":
        if has_bf16(device):
            return "bf16", "the GPU has bf16"
        if torch.cuda.get_device_capability(device) >= (7, 0):
            return "fp16", "the GPU has fp16 tensor cores"
        return "fp32", "the GPU has no fast reduced precision"
    if not has_bf16(device):
        return "fp32", "the CPU has no AVX-512-BF16 or AMX"
    from cyclestream.engine.jobs.roofline import measure_peaks

    peaks = measure_peaks()
    ratio = peaks.bf16_gflops / max(peaks.fp32_gflops, 1e-9)
    if ratio >= BF16_PAYS:
        return "bf16", f"measured bf16 peak {ratio:.1f}x fp32 on this CPU"
    return "fp32", f"measured bf16 peak only {ratio:.1f}x fp32 on this CPU"


def concrete(precision: str, compiled: bool, channels_last: bool, device: torch.device) -> Speed:
    """A mode, with Adam's fused kernel wherever it is not the exact path on CUDA (on the CPU it measured no
    faster than the default one)."""
    exact = precision == "fp32" and not compiled and not channels_last
    return Speed(precision=precision, compile=compiled, channels_last=channels_last,
                 fused_adam=device.type == "cuda" and not exact)


def plan_speed(options: TrainOptions, device: torch.device, *, cache_dir: Path | None = None) -> tuple[Speed, str]:
    """The concrete mode for a run and one line saying how it was chosen."""
    from cyclestream.engine.backends.tune import TUNE_ENV, tuning_allowed

    run = options.run
    asked = (run.precision, run.compile, run.channels_last)
    compiled, cl = run.compile == "on", run.channels_last == "on"
    if "auto" not in asked:
        return concrete(run.precision, compiled, cl, device), "as asked"
    if not tuning_allowed():
        precision = "fp32" if run.precision == "auto" else run.precision
        return concrete(precision, compiled, cl, device), f"{TUNE_ENV}=0: nothing measured"
    bf16_ok = has_bf16(device)
    for speed, seconds in load_record(speed_key(options, device), cache_dir):
        if _allowed(speed, *asked) and (speed.precision != "bf16" or bf16_ok):
            return speed, f"the fastest mode `cyclestream bench train` measured here ({seconds:.2f} s/iteration)"
    precision, why = (run.precision, "as asked") if run.precision != "auto" else auto_precision(device)
    hint = ("" if "auto" not in asked[1:] else
            "; compile and channels-last stay off until `cyclestream bench train` (the same --model, network "
            "sizes, --crop-size and --batch-size) has measured them on this machine")
    return concrete(precision, compiled, cl, device), f"{precision}: {why}{hint}"


def bf16_warning(speed: Speed, device: torch.device) -> str | None:
    """A warning for bf16 without bf16 hardware: it runs, emulated, several times slower than fp32."""
    if speed.precision != "bf16" or has_bf16(device):
        return None
    from cyclestream.engine.machine import reduced_precision_warning

    return reduced_precision_warning("bf16", device.type)
