"""int8 for the whole generator on CPUs: post-training static quantisation with ONNX Runtime's quantiser.

The onnxruntime and openvino backends run ``--precision int8`` on one quantised graph, made from the model's
cached fp32 ONNX graph once per model, calibration frames and CPU kind, and cached beside it like every
export (a record of its bytes, checked before use: engine/backends/cache.py).  OpenVINO reads the QDQ graph
as int8 convolutions; ONNX Runtime fuses it into its int8 kernels.

How the graph is quantised, and why (measured on the bundled generators at 256² against eager fp32):

- QDQ format, per-channel symmetric int8 weights, per-tensor asymmetric uint8 activations, min/max ranges
  from ``CALIBRATION_FRAMES`` frames of the job: the first frames of the video being translated (or of the
  ``--calibration`` video or folder; the command line's default is the bundled demo clip), else a synthetic
  pattern.  The frames are
  scaled so that their long side is at most ``CALIBRATION_SIDE``: the ranges of an instance-normalised
  network hardly depend on the frame size, and calibrating at 720p would cost more than the job's start;
- only the inputs of the convolutions are quantised.  Their outputs, which feed the instance norms, the
  residual adds and the output tanh, stay fp32 (quantising them too cost the student 14 dB: 27 dB instead
  of 41 dB), and the output layer (the last convolution) stays fp32 entirely;
- on x86 CPUs without VNNI the weights keep 7 bits (``reduce_range``): there int8 products are summed in
  16 bits (``VPMADDUBSW``), which saturates with full 8-bit weights (OpenVINO lost 9 dB on the bundled model).

This module imports no ONNX library until a graph is quantised.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from cyclestream.engine.backends.base import FrameShape
from cyclestream.engine.backends.cache import (
    checked_entry,
    default_cache_dir,
    entry_lock,
    key_digest,
    model_digest,
    onnx_key,
    package_version,
    store_entry,
)
from cyclestream.engine.backends.export import open_or_remake
from cyclestream.engine.backends.tensors import to_model_input
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, MediaError
from cyclestream.engine.machine import int8_saturates

log = logging.getLogger("cyclestream")
T = TypeVar("T")

INT8_FORMAT = 1  # bump when the way graphs are quantised changes, so older ones are made again
CALIBRATION_FRAMES = 8
CALIBRATION_STEP = 3  # every third of the first frames: a second of a 24 fps video
CALIBRATION_SIDE = 384
QUANTISED = ("Conv", "ConvTranspose")


# ----------------------------------------------------------------------------- calibration frames


@dataclass(frozen=True)
class Calibration:
    """Where frames of the job come from: a video, a folder of images or an image (``source``), frames given
    as uint8 (N, H, W, 3) (``frames``), else a synthetic pattern (the command line passes the bundled clip
    where a job has no video of its own)."""

    source: Path | None = None
    given: torch.Tensor | None = field(default=None, compare=False)

    def describe(self) -> str:
        if self.given is not None:
            return f"{len(self.given)} given frames"
        return str(self.source) if self.source is not None else "a synthetic pattern"

    def frames(self, count: int, width: int, height: int, start: int = 0, step: int = CALIBRATION_STEP) -> torch.Tensor:
        """uint8 (n ≤ count, height, width, 3): frames ``start``, ``start + step``, … of the source (a folder's
        images one by one), scaled to width x height.  A source named by the user that cannot be read is a
        MediaError naming it; without one, a synthetic pattern."""
        if self.given is not None:
            given = _scaled(self.given, width, height)
            return given[start : start + count] if len(given) > start else given[:count]
        if self.source is not None:
            frames = _read(self.source, count, width, height, start, step)
            if frames:
                return torch.from_numpy(np.stack(frames))
            frames = _read(self.source, count, width, height, 0, step)  # shorter than start: its first frames
            if frames:
                return torch.from_numpy(np.stack(frames))
            raise MediaError(f"no frame of {self.source} could be read for int8 calibration")
        frames = []
        if not frames:
            from cyclestream.engine.media.synthetic import synthetic_frame

            frames = [synthetic_frame(start + i * step, width, height) for i in range(count)]
        return torch.from_numpy(np.stack(frames))


def _scaled(frames: torch.Tensor, width: int, height: int) -> torch.Tensor:
    if frames.shape[1:3] == (height, width):
        return frames
    x = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2).float(), size=(height, width), mode="area")
    return x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _read(source: Path, count: int, width: int, height: int, start: int, step: int) -> list[np.ndarray]:
    from cyclestream.engine.media.images import find_images, load_rgb
    from cyclestream.engine.media.probe import is_image

    if source.is_dir():
        return [load_rgb(path, (width, height)) for path in find_images(source)[start : start + count]]
    if is_image(source):
        return [load_rgb(source, (width, height))] if start == 0 else []
    from cyclestream.engine.media.sources import VideoFileSource

    frames: list[np.ndarray] = []
    video = VideoFileSource(source, size=(width, height), audio=False)
    try:
        for frame in video.frames():
            if frame.index >= start and (frame.index - start) % step == 0:
                frames.append(frame.image)
            if len(frames) == count:
                break
    finally:
        video.close()
    return frames


def calibration_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(width, height) of the calibration frames for a job of height x width: the long side at most
    ``CALIBRATION_SIDE``, the aspect kept, each side a multiple of the generator's."""
    scale = min(1.0, CALIBRATION_SIDE / max(height, width))
    side = lambda n: max(multiple, round(n * scale / multiple) * multiple)  # noqa: E731
    return side(width), side(height)


# ----------------------------------------------------------------------------- the quantised graph




def frames_digest(frames: torch.Tensor) -> str:
    h = hashlib.sha256(f"{tuple(frames.shape)}|{frames.dtype}|".encode())
    h.update(frames.contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def int8_key(digest: str, frames: torch.Tensor, reduce_range: bool) -> dict[str, Any]:
    """What a quantised graph depends on: the fp32 graph's key, the calibration frames, the weights' bits and
    the quantiser's version."""
    from cyclestream.engine.backends.export import OPSET

    return {
        **onnx_key(digest, "fp32", OPSET),
        "int8": INT8_FORMAT,
        "calibration": frames_digest(frames),
        "weight_bits": 7 if reduce_range else 8,
        "onnxruntime": package_version("onnxruntime"),
    }


def int8_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    return cache_dir / "onnx" / f"{key_digest(key)}.int8.onnx"


@contextlib.contextmanager
def _quiet_quantiser() -> Iterator[None]:
    """The quantiser logs advice on the root logger ("consider pre-processing") and per-node notes: drop them."""
    root = logging.getLogger()
    quiet = logging.Filter("nothing")  # passes only records of a logger named "nothing"
    chatty = logging.getLogger("onnxruntime")
    level = chatty.level
    root.addFilter(quiet)  # records logged on the root logger itself; cyclestream's own pass through
    chatty.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.removeFilter(quiet)
        chatty.setLevel(level)


def output_layer(graph_path: Path) -> str:
    """The name of the graph's last convolution (the output layer)."""
    import onnx

    nodes = [n for n in onnx.load(str(graph_path), load_external_data=False).graph.node if n.op_type in QUANTISED]
    if not nodes:
        raise BackendError(f"{graph_path} has no convolution to quantise")
    return nodes[-1].name


def quantise(fp32_graph: Path, out: Path, inputs: list[np.ndarray], reduce_range: bool) -> None:
    """Write the int8 QDQ graph of ``fp32_graph`` to ``out``, calibrated on ``inputs`` (model inputs, NCHW)."""
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
    except ImportError:
        raise BackendError("--precision int8 needs ONNX Runtime's quantiser: pip install 'cyclestream[onnx]'") from None
    from cyclestream.engine.backends.export import INPUT_NAME

    class Frames(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._next = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._next, None)
            return None if x is None else {INPUT_NAME: x}

    with _quiet_quantiser():
        quantize_static(
            str(fp32_graph), str(out), Frames(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTISED),
            nodes_to_exclude=[output_layer(fp32_graph)],
            per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"OpTypesToExcludeOutputQuantization": list(QUANTISED)},
        )


def calibration_inputs(model: LoadedModel, calibration: Calibration, shape: FrameShape) -> list[np.ndarray]:
    """The model inputs (1, 3, H', W') of the calibration frames for a job of ``shape``."""
    width, height = calibration_size(shape.height, shape.width, model.spec.size_multiple)
    frames = calibration.frames(CALIBRATION_FRAMES, width, height)
    multiple, value_range = model.spec.size_multiple, model.family.value_range
    return [to_model_input(frames[i : i + 1], multiple, value_range=value_range,
                           channels=model.spec.image_channels).contiguous().numpy()
            for i in range(len(frames))]


def _int8_graph(
    model: LoadedModel, calibration: Calibration, shape: FrameShape, cache_dir: Path, digest: str
) -> tuple[Path, bool]:
    """The cached int8 graph and whether it was made just now."""
    from cyclestream.engine.backends.export import cached_onnx

    inputs = calibration_inputs(model, calibration, shape)
    reduce_range = int8_saturates()
    key = int8_key(digest, torch.from_numpy(np.concatenate(inputs)), reduce_range)
    path = int8_path(cache_dir, key)
    with entry_lock(path):
        if checked_entry(path, key) is not None:
            log.debug("int8 graph from the cache: %s", path)
            return path, False
        source = cached_onnx(model, "fp32", cache_dir, digest)
        log.info("quantising %s to int8 (calibrated on %d frames of %s, once; cached in %s)",
                 model.spec.official_name, len(inputs), calibration.describe(), path.parent)
        store_entry(path, key, lambda tmp: quantise(source, tmp, inputs, reduce_range))
    return path, True


def open_int8(
    model: LoadedModel,
    open_graph: Callable[[Path], T],
    calibration: Calibration | None,
    shape: FrameShape,
    cache_dir: Path | None = None,
    damaged: type[Exception] | tuple[type[Exception], ...] = Exception,
) -> T:
    """``open_graph`` on the model's int8 graph for these calibration frames, quantised first if not cached.
    A cached graph that fails to open is removed with a warning and made again, once."""
    cache_dir = cache_dir or default_cache_dir()
    calibration = calibration or Calibration()
    digest = model_digest(model)
    return open_or_remake(lambda: _int8_graph(model, calibration, shape, cache_dir, digest), open_graph, damaged)


class Calibrated:
    """A backend that runs int8 graphs: ``calibration`` says where its calibration frames come from
    (``prepare_backend`` sets it from ``--calibration`` or the job's input)."""

    calibration: Calibration | None = None
