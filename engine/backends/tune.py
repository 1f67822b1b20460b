"""What ``--backend auto`` measures, and the cache of what it picked.

The first time a model runs at a frame size, batch and device on a machine, ``measure`` times each setting
(backend × precision) that can run there (``candidates``: fp32 everywhere; bf16 only with AVX-512-BF16/AMX
or on a GPU that has it, fp16 only on a GPU, int8 only on CPUs with AVX2/VNNI/Arm dot products) on frames
of the job, within a time budget, and compares each one's frames with eager fp32's on the same frames.
Only settings within the fidelity gate of their precision (``FIDELITY_DB``, PSNR of the uint8 frames) are
kept; the fastest kept one is the pick.  The whole table is cached (``default_cache_dir()/tune/``, one JSON
file per ``tune_key``: the model's digest, batch and frame size, device, asked precision and kernels, the
CPU's model and flags, the GPU, PyTorch's threads and the versions of every library a backend runs on), so
later runs prepare the pick at once; a pick that no longer prepares falls back to the next kept setting.

Not in the key: the calibration frames.  A job whose int8 graph is calibrated on its own frames reuses the
pick measured with the frames of the first job (the method passed the gate; the graph is its own).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import stat
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cyclestream.engine import machine
from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.base import Backend, FrameShape
from cyclestream.engine.backends.cache import (
    default_cache_dir,
    key_digest,
    model_digest,
    package_version,
    private_folder,
)
from cyclestream.engine.backends.options import PRECISIONS, Precision, TuneOptions
from cyclestream.engine.backends.quantize import CALIBRATION_FRAMES, CALIBRATION_STEP, Calibrated, Calibration
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line

log = logging.getLogger("cyclestream")

# PSNR (dB, uint8 frames) against eager fp32 on the same frames that a setting must reach to be kept.
# fp32 paths differ from eager only by the order of their sums (ONNX Runtime, OpenVINO: 78-87 dB on the
# bundled models); reduced precision is kept when the difference is not visible in motion.
FIDELITY_DB: dict[str, float] = {"fp32": 40.0, "bf16": 32.0, "fp16": 32.0, "int8": 32.0}

TUNE_FORMAT = 1  # bump when what is measured or how it is keyed changes
TUNE_ENV = "CYCLESTREAM_TUNE"  # "0": --no-tune for every job (test suites, CI machines that must not measure)
TEST_FRAMES = 2  # frames compared with eager fp32 (at least one batch)
SLICE_S = 1.0  # each setting is timed this long (two calls at least; less when the budget is small)
FINAL_ROUNDS = 5  # the kept settings timed again in turns with eager fp32, this many rounds while the budget lasts
# The first preparation of some settings takes long on a small CPU; one is not started with less budget left.
PREPARE_S: dict[str, float] = {"compile": 30.0}
LIBRARIES = ("onnx", "onnxscript", "onnxruntime", "openvino", "tensorrt", "torch_tensorrt", "triton")
MAX_ENTRY_BYTES = 1 << 20

Create = Callable[[str], Backend]


def tuning_allowed() -> bool:
    """False when ``$CYCLESTREAM_TUNE`` is 0 (or off, no, false): --backend auto keeps its static rules."""
    return os.environ.get(TUNE_ENV, "1").strip().lower() not in ("0", "off", "no", "false")


# ----------------------------------------------------------------------------- what can run here


@dataclass(frozen=True)
class Setting:
    backend: str
    precision: Precision

    def __str__(self) -> str:
        return f"{self.backend} {self.precision}"


REFERENCE = Setting("eager", "fp32")


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def candidates(
    device: str, precision: str, have: Callable[[str], bool] = _installed
) -> list[tuple[Setting, str | None]]:
    """The settings to measure on ``device`` for ``precision`` ("auto": every precision), likeliest first,
    the reference (eager fp32) always first; each with the reason it is not measured, if any."""
    if device.startswith("cuda"):
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        order = [("tensorrt", "fp16"), ("eager", "fp16"), ("tensorrt", "fp32"), ("eager", "bf16"),
                 ("compile", "fp16"), ("compile", "fp32"), ("compile", "bf16")]
        hardware = {"bf16": None if bf16 else "this GPU has no fast bf16"}
    else:
        # No onnxruntime int8: ONNX Runtime has no int8 kernel for a convolution whose output stays fp32 (what
        # holds quality, quantize.py), so it runs dequantised inputs through fp32 convolutions, slower than fp32.
        order = [("openvino", "fp32"), ("onnxruntime", "fp32"), ("openvino", "int8"), ("openvino", "bf16"),
                 ("eager", "bf16"), ("compile", "fp32"), ("compile", "bf16")]
        int8 = machine.cpu_int8()
        hardware = {
            "bf16": None if machine.cpu_has_bf16() else "no AVX-512-BF16 or AMX on this CPU (bf16 is emulated)",
            "int8": None if int8 else "no int8 dot products (AVX2, VNNI) on this CPU",
        }
    needs = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",), "tensorrt": ("tensorrt",)}
    found: list[tuple[Setting, str | None]] = [(REFERENCE, None)]
    for name, p in order:
        if precision != "auto" and p != precision:
            continue
        setting = Setting(name, p)  # type: ignore[arg-type]
        modules = needs.get(name, ()) + (("onnxruntime",) if p == "int8" else ())  # int8: ONNX Runtime's quantiser
        missing = [m for m in modules if not have(m)]
        if missing:
            found.append((setting, f"not installed ({', '.join(missing)})"))
        elif precision == "auto" and hardware.get(p):
            found.append((setting, hardware[p]))  # asked for by name, a precision is measured (and warned about)
        else:
            found.append((setting, None))
    return found


# ----------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    """One setting as measured: frames/s, × eager fp32, PSNR to eager fp32, kept or why not."""

    backend: str
    precision: str
    fps: float | None = None
    x_eager: float | None = None
    psnr_db: float | None = None
    kept: bool = False
    why: str = ""

    @property
    def setting(self) -> Setting:
        return Setting(self.backend, self.precision)  # type: ignore[arg-type]

    def cells(self) -> list[str]:
        def num(v: float | None, fmt: str) -> str:
            return "" if v is None else ("inf" if math.isinf(v) else format(v, fmt))

        return [self.backend, self.precision, num(self.fps, ".2f"), num(self.x_eager, ".2f"),
                num(self.psnr_db, ".1f"), "kept" if self.kept else self.why]


@dataclass(frozen=True)
class Tuning:
    """The measured table of one key, and when it was measured."""

    key: dict[str, Any]
    rows: tuple[Row, ...]
    tuned_at: float  # time.time()
    seconds: float  # how long measuring took
    budget: float
    machine: str = ""
    load: tuple[float, ...] = field(default=())  # the load average when measured (shared machines are noisy)

    def kept(self) -> list[Row]:
        """The kept settings, fastest first."""
        return sorted((r for r in self.rows if r.kept and r.fps), key=lambda r: -(r.fps or 0.0))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Tuning:
        rows = tuple(Row(**r) for r in data["rows"])
        tuning = cls(data["key"], rows, float(data["tuned_at"]), float(data["seconds"]), float(data["budget"]),
                     str(data.get("machine", "")), tuple(float(v) for v in data.get("load", ())))
        for row in rows:
            if row.kept and (row.precision not in PRECISIONS or not isinstance(row.fps, int | float)):
                raise ValueError(f"not a measured setting: {row}")
        if not isinstance(tuning.key, dict):
            raise ValueError("no key")
        return tuning


COLUMNS = ("backend", "precision", "frames/s", "x eager", "PSNR dB", "kept / why not")


def table_lines(tuning: Tuning) -> list[str]:
    """The table as aligned text lines (a header, a rule, one line per setting)."""
    cells = [list(COLUMNS)] + [r.cells() for r in tuning.rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(widths))) + "  " + c[-1] for c in cells]
    lines.insert(1, "-" * max(len(line) for line in lines))
    return lines


def markdown_lines(tuning: Tuning) -> list[str]:
    return ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)] + [
        "| " + " | ".join(r.cells()) + " |" for r in tuning.rows
    ]


def ago(seconds: float) -> str:
    if seconds < 90:
        return f"{max(0, round(seconds))} s ago"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min ago"
    if seconds < 36 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


def pick_line(row: Row, tuning: Tuning, now: float | None = None, fresh: bool = False) -> str:
    """``auto: openvino fp32, 19.3 frames/s, 2.0× eager, 78.5 dB to eager fp32; tuned 12 s ago`` (``fresh``:
    ``tuned just now in 20 s (cyclestream tune prints the table)``)"""
    quality = "" if row.setting == REFERENCE else f", {row.psnr_db:.1f} dB to eager fp32"
    when = (f"just now in {tuning.seconds:.0f} s (cyclestream tune prints the table)" if fresh
            else ago((now or time.time()) - tuning.tuned_at))
    speed = f"{row.fps:.1f} frames/s, {row.x_eager:.1f}× eager"
    return f"auto: {row.backend} {row.precision}, {speed}{quality}; tuned {when}"


# ----------------------------------------------------------------------------- the cache key and file




def library_versions() -> dict[str, str]:
    """The versions of PyTorch and of every library a backend runs on ("none" where not installed)."""
    return {"torch": torch.__version__, **{name: package_version(name.replace("_", "-")) for name in LIBRARIES}}


def _gpu(device: str) -> str | None:
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    from cyclestream.engine.backends.tensorrt import gpu_name

    return gpu_name(torch.device(device))


def tune_key(model_hash: str, shape: FrameShape, device: str, precision: str, kernels: str) -> dict[str, Any]:
    """Everything a measured pick depends on."""
    return {
        "format": TUNE_FORMAT,
        "model": model_hash,
        "batch": shape.batch,
        "height": shape.height,
        "width": shape.width,
        "device": device,
        "precision": precision,
        "kernels": kernels,
        "cpu": machine.cpu_model(),
        "cpu_flags": sorted(machine.cpu_flags()),
        "gpu": _gpu(device),
        "threads": torch.get_num_threads(),
        "libraries": library_versions(),
    }


def tuning_path(key: dict[str, Any], cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "tune" / f"{key_digest(key)}.json"


def load_tuning(key: dict[str, Any], cache_dir: Path | None = None) -> Tuning | None:
    """The cached table of ``key``; None when there is none.  A file that is not a regular file of ours, too
    large, unreadable or made for another key is ignored with a warning (and replaced by the next measurement)."""
    path = tuning_path(key, cache_dir)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        log.warning("auto: cannot read the tuning cache %s (%s); measuring again", path, e.strerror or e)
        return None
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        problem = f"belongs to another user (uid {st.st_uid})"
    elif st.st_size > MAX_ENTRY_BYTES:
        problem = f"is {st.st_size} bytes, too large to be a tuning"
    else:
        try:
            flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            with os.fdopen(os.open(path, flags), "rb") as f:
                tuning = Tuning.from_dict(json.loads(f.read(MAX_ENTRY_BYTES)))
            if tuning.key == key:
                return tuning
            problem = "was measured for another key"
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            problem = f"cannot be read ({first_line(e) or type(e).__name__})"
    log.warning("auto: the tuning cache entry %s %s; not used, measured again", path, problem)
    return None


def store_tuning(tuning: Tuning, cache_dir: Path | None = None) -> Path:
    """Write the table (whole, then renamed) in the user-only cache folder ``tune/``."""
    path = tuning_path(tuning.key, cache_dir)
    private_folder(path.parent)
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            path.unlink()  # never write through a link or onto a device planted under the name
    except OSError as e:
        raise BackendError(f"cannot replace the tuning cache entry {path}: {e.strerror or e}") from None
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(tuning.to_dict(), indent=1, sort_keys=True))
        os.chmod(tmp, 0o600)
    os.chmod(path, 0o600)
    return path


# ----------------------------------------------------------------------------- measuring


def psnr_db(out: torch.Tensor, ref: torch.Tensor) -> float:
    """PSNR of uint8 frames against reference uint8 frames (inf when identical)."""
    mse = float(((out.double() - ref.double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def job_frames(calibration: Calibration, shape: FrameShape) -> torch.Tensor:
    """Frames of the job at its size, after those that calibrate int8 (the first ``TEST_FRAMES`` or one batch)."""
    count = max(TEST_FRAMES, shape.batch)
    frames = calibration.frames(count, shape.width, shape.height, start=CALIBRATION_FRAMES * CALIBRATION_STEP)
    if not len(frames):
        raise BackendError(f"no frame of {calibration.describe()} to measure with")
    while len(frames) < count:  # a short source: its frames again
        frames = torch.cat([frames, frames])[:count]
    return frames


@dataclass
class _Measured:
    row: Row
    backend: Backend | None = None
    outputs: torch.Tensor | None = None


def _run_all(backend: Backend, frames: torch.Tensor, batch: int) -> tuple[torch.Tensor, list[float]]:
    """The backend's frames for ``frames`` (in calls of ``batch``) and the seconds of each full call."""
    outputs, times = [], []
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        t0 = time.perf_counter()
        outputs.append(backend.run(chunk))
        if len(chunk) == batch:
            times.append(time.perf_counter() - t0)
    return torch.cat(outputs), times


def _measure_one(
    setting: Setting, create: Create, model: LoadedModel, shape: FrameShape, frames: torch.Tensor,
    calibration: Calibration, deadline: float, slice_s: float,
) -> _Measured:
    backend: Backend | None = None
    try:
        backend = create(setting.backend)
        if isinstance(backend, Calibrated):
            backend.calibration = calibration
        backend.prepare(model, shape, setting.precision)
        outputs, times = _run_all(backend, frames, shape.batch)
        chunk = frames[: shape.batch]
        until = min(time.monotonic() + max(0.0, slice_s - sum(times)), deadline)
        while len(times) < 2 or time.monotonic() < until:
            t0 = time.perf_counter()
            backend.run(chunk)
            times.append(time.perf_counter() - t0)
            if time.monotonic() >= deadline:
                break
    except Exception as e:
        if backend is not None:
            backend.close()
        return _Measured(Row(setting.backend, setting.precision, why=f"failed: {first_line(e)}"))
    fps = shape.batch / statistics.median(times)
    return _Measured(Row(setting.backend, setting.precision, fps=fps), backend, outputs)


def measure(
    model: LoadedModel,
    shape: FrameShape,
    device: str,
    precision: str,
    create: Create,
    *,
    calibration: Calibration | None = None,
    budget: float,
    key: dict[str, Any],
    progress: bool = True,
    settings: Iterable[tuple[Setting, str | None]] | None = None,
) -> tuple[Tuning, Backend | None]:
    """Time and check every setting within ``budget`` seconds; the table, and the fastest kept setting's
    backend, prepared (None when no setting is kept).  ``settings``: ``candidates(device, precision)``
    unless given.

    Each setting is timed on its own as it comes; then every kept one and eager fp32 are timed again in
    turns (``FINAL_ROUNDS`` rounds, while the budget lasts), so that the pick and the × eager of every kept
    setting come from calls made side by side, not a minute apart on a machine whose load changes."""
    calibration = calibration or Calibration()
    todo = list(settings if settings is not None else candidates(device, precision))
    start = time.monotonic()
    deadline = start + budget
    frames = job_frames(calibration, shape)
    count = sum(why is None for _, why in todo)
    slice_s = min(SLICE_S, budget / (2 * max(1, count)))
    log.info("auto: measuring %d settings of %s for %dx%d frames, batch %d, on %s (at most about %.0f s, once: "
             "the pick is cached)", count, model.spec.official_name, shape.width, shape.height, shape.batch, device,
             budget)
    rows: list[Row] = []
    reference: _Measured | None = None
    finalists: list[_Measured] = []  # the kept settings, prepared
    bar = tqdm(todo, desc="tuning", unit="setting", leave=False, disable=None if progress else True)
    try:
        for setting, why in bar:
            bar.set_postfix_str(str(setting))
            why = why or _no_time(setting, deadline - time.monotonic(), budget)
            if why is not None:
                rows.append(Row(setting.backend, setting.precision, why=why))
                continue
            got = _measure_one(setting, create, model, shape, frames, calibration, deadline, slice_s)
            if setting == REFERENCE:
                if got.outputs is None:
                    raise BackendError(f"eager fp32, the reference, cannot run this model: {got.row.why}")
                reference = got
            got.row = _judge(got.row, got.outputs, reference, precision)
            got.outputs = None if got is not reference else got.outputs
            rows.append(got.row)
            if got.row.kept and got is not reference:
                finalists.append(got)
            elif got is not reference:
                _close(got)
        assert reference is not None
        rows = _final_round([reference, *finalists], rows, frames[: shape.batch], deadline)
    except BaseException:
        for measured in (reference, *finalists):
            _close(measured)
        raise
    finally:
        bar.close()
    info = machine.describe_machine()
    tuning = Tuning(key, tuple(rows), time.time(), time.monotonic() - start, budget, machine.one_line(info),
                    tuple(round(v, 2) for v in os.getloadavg()) if hasattr(os, "getloadavg") else ())
    kept = tuning.kept()
    chosen = None
    for measured in (reference, *finalists):
        if kept and measured.row.setting == kept[0].setting and chosen is None:
            chosen = measured.backend
        else:
            _close(measured)
    return tuning, chosen


def _no_time(setting: Setting, left: float, budget: float) -> str | None:
    """Why ``setting`` is not started with ``left`` seconds of the budget left, if it is not."""
    if setting == REFERENCE:
        return None
    if left <= 0:
        return f"not measured: the budget ({budget:.0f} s) was spent"
    need = PREPARE_S.get(setting.backend, 0.0)
    if need > left:
        return (f"not measured: its first preparation takes about {need:.0f} s, more than the {left:.0f} s left "
                "(cyclestream tune --budget measures it)")
    return None


def _close(measured: _Measured | None) -> None:
    if measured is not None and measured.backend is not None:
        measured.backend.close()
        measured.backend = None


def _final_round(contenders: list[_Measured], rows: list[Row], chunk: torch.Tensor, deadline: float) -> list[Row]:
    """``rows`` with the frames/s and × eager of the contenders (eager fp32 first) timed again in turns, when
    the budget leaves time for at least two rounds."""
    if len(contenders) < 2:
        return rows
    times: list[list[float]] = [[] for _ in contenders]
    for _ in range(FINAL_ROUNDS):
        if time.monotonic() >= deadline:
            break
        for measured, spent in zip(contenders, times, strict=True):
            assert measured.backend is not None
            t0 = time.perf_counter()
            measured.backend.run(chunk)
            spent.append(time.perf_counter() - t0)
    if len(times[0]) < 2:
        return rows
    fps = [len(chunk) / statistics.median(spent) for spent in times]
    again = {m.row.setting: f for m, f in zip(contenders, fps, strict=True)}
    out = []
    for row in rows:
        if row.setting in again:
            row = dataclasses.replace(row, fps=again[row.setting], x_eager=again[row.setting] / fps[0])
            for measured in contenders:
                if measured.row.setting == row.setting:
                    measured.row = row
        out.append(row)
    return out


def _judge(row: Row, outputs: torch.Tensor | None, reference: _Measured | None, precision: str) -> Row:
    """The row with its × eager and PSNR filled in, kept or not (and why)."""
    if outputs is None or reference is None or reference.outputs is None or row.fps is None:
        return row
    eager_fps = reference.row.fps or math.nan
    db = psnr_db(outputs, reference.outputs)
    gate = FIDELITY_DB[row.precision]
    kept, why = True, ""
    if db < gate:
        kept, why = False, f"{db:.1f} dB < {gate:.0f} dB"
    elif precision != "auto" and row.precision != precision:
        kept, why = False, f"reference (not {precision})"
    return dataclasses.replace(row, x_eager=row.fps / eager_fps, psnr_db=db, kept=kept, why=why)


def tune_model(model: LoadedModel, options: TuneOptions, cache_dir: Path | None = None) -> Tuning:
    """``cyclestream tune``: measure every setting for ``options.run``'s job (its ``size`` is required), cache
    the table for ``--backend auto`` and return it."""
    from cyclestream.engine.backends import create_backend
    from cyclestream.engine.backends.fit import check_frame_fits
    from cyclestream.engine.backends.options import run_precision
    from cyclestream.engine.options import resolve_device

    run = dataclasses.replace(options.run, backend="auto", tune=True)
    if run.size is None:
        raise BackendError("cyclestream tune needs the frame size of the job: --size WxH")
    width, height = run.size
    device = resolve_device(run.device)
    precision = run_precision(run)
    check_frame_fits(model.spec, run.batch_size, height, width,
                     precision="fp32" if precision == "auto" else precision, device=device)
    if (warning := machine.reduced_precision_warning(precision, device)) is not None:
        log.warning("%s", warning)
    shape = FrameShape(run.batch_size, height, width)
    key = tune_key(model_digest(model), shape, device, precision, run.kernels)
    tuning, backend = measure(model, shape, device, precision, lambda name: create_backend(name, device, run.kernels),
                              calibration=Calibration(run.calibration), budget=options.budget, key=key,
                              progress=options.progress)
    if backend is not None:
        backend.close()
    store_tuning(tuning, cache_dir)
    return tuning
