"""How to run a generator (backend, device, precision, batch, size), and "open a backend for this model
and frame size": shared by every job that runs a model."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from cyclestream.engine.backends import Backend, FrameShape, Precision, create_backend
from cyclestream.engine.backends.fit import check_frame_fits
from cyclestream.engine.checkpoint import LoadedModel

log = logging.getLogger("cyclestream")


@dataclass(frozen=True)
class RunOptions:
    """How to run the generator: shared by translate, stream and bench."""

    backend: str = "auto"
    device: str = "cpu"
    precision: Precision = "fp32"
    batch_size: int = 1
    size: tuple[int, int] | None = None  # (width, height) to scale frames to; None keeps their size
    kernels: str = "auto"  # fused instance-norm kernels (eager backend): auto, triton, reference, off


def prepare_backend(model: LoadedModel, options: RunOptions, height: int, width: int) -> Backend:
    check_frame_fits(model.spec, options.batch_size, height, width, options.precision, options.device)
    backend = create_backend(options.backend, options.device, options.kernels)
    backend.prepare(model, FrameShape(options.batch_size, height, width), options.precision)
    log.info("backend: %s", backend.describe())
    return backend
