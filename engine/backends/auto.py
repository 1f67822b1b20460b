"""``--backend auto``: the fastest setting that holds quality on this machine, chosen when the job's shape is known.

By measurement (the default): the first job of a model at a frame size, batch and device on a machine
times every backend × precision that can run here and keeps those whose frames match eager fp32's within
the fidelity gate of their precision (engine/backends/tune.py: candidates, budget, gate, cache key).  The
table is cached; later jobs prepare the fastest kept setting at once, and one line says what was picked and
why (``auto: openvino fp32, 19.3 frames/s, 2.0× eager; tuned 12 s ago``).  ``cyclestream tune`` measures
ahead of time and prints the table.

How ``--precision`` and ``auto`` meet:

- ``auto`` (the default precision): every precision this hardware has instructions for is a candidate;
  fp32 settings must reach 40 dB PSNR to eager fp32, bf16/fp16/int8 settings 32 dB (``tune.FIDELITY_DB``);
- a precision named explicitly (``--precision int8``) restricts the candidates to it; eager fp32 is still
  measured, as the reference.  When no setting of that precision passes the gate, the job is refused with
  the numbers (``--backend onnxruntime --precision int8`` runs it anyway);
- reduced precision named on hardware without it (bf16 on a CPU without AVX-512-BF16 or AMX) is warned
  about before anything runs (``prepare_backend``); ``auto`` on its own never picks it there.

The static rules (``plan``), with ``--no-tune`` or ``$CYCLESTREAM_TUNE=0``, choose without timing: on a GPU
TensorRT when installed, else eager; on the CPU OpenVINO for bf16 on CPUs with fast bf16, OpenVINO or ONNX
Runtime for int8, else eager (eager is always the last resort).

Either way, a setting that is installed but fails to prepare falls back to the next with a warning that
says why — never silently.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from cyclestream.engine.backends.base import Backend, FrameShape, Precision, Wrapper
from cyclestream.engine.backends.options import AUTO_TUNE_BUDGET_S
from cyclestream.engine.backends.quantize import Calibrated
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line
from cyclestream.engine.machine import cpu_has_bf16
from cyclestream.engine.options import resolve_device

if TYPE_CHECKING:
    from cyclestream.engine.backends.tune import Setting, Tuning

log = logging.getLogger("cyclestream")


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (checked without importing it)."""
    return importlib.util.find_spec(module) is not None


def plan(
    device: str,
    precision: str,
    have: Callable[[str], bool] = installed,
    bf16_cpu: bool | None = None,
) -> list[str]:
    """The backends to try without measuring, best first, for a job on ``device`` at ``precision`` (pure,
    testable; ``auto`` precision is fp32 here)."""
    if device.startswith("cuda"):
        return ["tensorrt", "eager"] if have("tensorrt") and precision in ("auto", "fp32", "fp16") else ["eager"]
    if precision == "int8":  # the quantiser is ONNX Runtime's; eager has no int8
        return [name for name in ("openvino", "onnxruntime") if have(name) and have("onnxruntime")]
    if precision == "bf16" and have("openvino") and (cpu_has_bf16() if bf16_cpu is None else bf16_cpu):
        return ["openvino", "eager"]
    return ["eager"]


class AutoBackend(Calibrated, Wrapper):
    """Chooses and prepares a concrete backend in ``prepare``; ``run`` goes straight to it.

    ``tune`` (default True) measures, ``budget`` bounds the measurements in seconds, ``calibration`` is
    handed to the int8 backends; ``prepare_backend`` sets them from the job's options."""

    name = "auto"

    def __init__(
        self, device: str = "auto", factory: Callable[[str, str], Backend] | None = None, kernels: str = "auto"
    ) -> None:
        self.device = resolve_device(device)
        self._factory = factory
        self.kernels = kernels  # forwarded to the eager backend when it is the one chosen
        self.chosen: Backend | None = None
        self.tune = True
        self.budget = AUTO_TUNE_BUDGET_S
        self.progress = True
        self.settings: Callable[[str, str], list[tuple[Setting, str | None]]] | None = None  # tune.candidates
        self.cache_dir: Path | None = None  # the tuning cache's parent (default_cache_dir())

    def _create(self, name: str) -> Backend:
        if self._factory is not None:
            backend = self._factory(name, self.device)
        else:
            from cyclestream.engine.backends import create_backend

            backend = create_backend(name, self.device, self.kernels)
        if isinstance(backend, Calibrated):
            backend.calibration = self.calibration
        return backend

    def _use(self, backend: Backend) -> None:
        if self.chosen is not None:
            self.chosen.close()
        self.chosen = backend
        self.precision = backend.precision

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        from cyclestream.engine.backends.tune import tuning_allowed

        if self.tune and tuning_allowed():
            self._prepare_tuned(model, shape, precision)
        else:
            self._prepare_planned(model, shape, "fp32" if precision == "auto" else precision)  # type: ignore[comparison-overlap]

    # ------------------------------------------------------------------ without measuring

    def _prepare_planned(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        candidates = plan(self.device, precision)
        if not candidates:
            raise BackendError(f"--precision {precision} needs ONNX Runtime (pip install 'cyclestream[onnx]'), and "
                               "runs on the CPU with --backend onnxruntime or openvino")
        log.debug("--backend auto: trying %s for %s on %s", ", ".join(candidates), precision, self.device)
        failures: list[str] = []
        for i, name in enumerate(candidates):
            try:
                backend = self._create(name)
                backend.prepare(model, shape, precision)
            except Exception as e:
                reason = first_line(e)
                failures.append(f"{name}: {reason}")
                if i + 1 < len(candidates):
                    log.warning("--backend auto: %s failed (%s); falling back to %s", name, reason, candidates[i + 1])
                continue
            self._use(backend)
            log.info("--backend auto chose %s", backend.describe())
            return
        raise BackendError("no backend could run this model: " + "; ".join(failures))

    # ------------------------------------------------------------------ by measurement

    def _prepare_tuned(self, model: LoadedModel, shape: FrameShape, precision: str) -> None:
        from cyclestream.engine.backends import tune
        from cyclestream.engine.backends.cache import model_digest

        key = tune.tune_key(model_digest(model), shape, self.device, precision, self.kernels)
        tuning = tune.load_tuning(key, self.cache_dir)
        if tuning is not None:
            if not tuning.kept():
                raise BackendError(_nothing_kept(tuning, precision))
            for row in tuning.kept():
                try:
                    backend = self._create(row.backend)
                    backend.prepare(model, shape, row.precision)  # type: ignore[arg-type]
                except Exception as e:
                    log.warning("auto: the tuned %s %s failed to prepare (%s); trying the next", row.backend,
                                row.precision, first_line(e))
                    continue
                self._use(backend)
                log.info("%s", tune.pick_line(row, tuning))
                return
            log.warning("auto: none of the tuned settings prepares now; measuring again")
        settings = (self.settings or tune.candidates)(self.device, precision)
        if precision != "auto" and not any(s.precision == precision for s, _ in settings):
            raise BackendError(f"--precision {precision} has no backend on {self.device}"
                               + (" (fp16 is for GPUs)" if precision == "fp16" else "")
                               + "; use --precision auto or fp32")
        tuning, backend = tune.measure(
            model, shape, self.device, precision, self._create, calibration=self.calibration, budget=self.budget,
            key=key, progress=self.progress, settings=settings,
        )
        tune.store_tuning(tuning, self.cache_dir)
        if backend is None:
            raise BackendError(_nothing_kept(tuning, precision))
        self._use(backend)
        row = tuning.kept()[0]
        log.info("%s", tune.pick_line(row, tuning, fresh=True))

    def inner(self) -> Backend:
        if self.chosen is None:
            raise BackendError("the auto backend was used before prepare()")
        return self.chosen

    def describe(self) -> str:
        return self.chosen.describe() if self.chosen is not None else "auto (not prepared)"

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()


def _nothing_kept(tuning: Tuning, precision: str) -> str:
    """Why no setting can run the job, from its measured table."""
    from cyclestream.engine.backends.tune import FIDELITY_DB

    rows = [r for r in tuning.rows if precision in ("auto", r.precision)]
    said = "; ".join(f"{r.backend} {r.precision}: {r.why}" for r in rows) or "nothing could be measured"
    if precision in ("auto", "fp32"):
        return f"no backend could run this model: {said}"
    return (f"--precision {precision}: no setting holds quality here ({said}; the gate is "
            f"{FIDELITY_DB[precision]:.0f} dB PSNR to eager fp32); use --precision auto, or name a backend "
            f"(--backend onnxruntime) to run {precision} anyway")
