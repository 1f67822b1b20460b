"""ONNX export of a generator: dynamic batch, height and width; one InstanceNormalization per norm.

The dynamo exporter (``torch.onnx.export(..., dynamo=True)``, torch.export + onnxscript) is used
first: with torch 2.13 it gives a clean graph of Pad/Conv/InstanceNormalization/Relu/ConvTranspose/
Add/Tanh with symbolic ``batch``, ``H`` and ``W``.  If it fails, the TorchScript exporter is tried
(same ops plus shape plumbing for the reflection pads) and the report says which one wrote the file.

Precision: ``fp32``, or ``fp16`` for GPU consumers (TensorRT): the model is cast to half, and since
the generator's InstanceNorm computes in fp32 under half inputs, the graph carries
``Cast(fp32) → InstanceNormalization → Cast(fp16)`` around every norm — statistics in fp32 spelled
out in the graph, which a strongly typed TensorRT network keeps as written.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import shutil
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.cache import (
    ShapeProfile,
    checked_entry,
    default_cache_dir,
    discard_entry,
    entry_lock,
    model_digest,
    onnx_cache_path,
    onnx_key,
    store_entry,
)
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line
from cyclestream.engine.models import FamilySpec, GeneratorSpec

log = logging.getLogger("cyclestream")
T = TypeVar("T")

OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"
EXPORT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
MAX_SIDE = 16384


@dataclass(frozen=True)
class OnnxExport:
    """What an export wrote and how."""

    path: Path
    exporter: str  # "dynamo" or "torchscript"
    precision: str
    seconds: float
    op_counts: dict[str, int] = field(default_factory=dict)

    @property
    def instance_norms(self) -> int:
        return self.op_counts.get("InstanceNormalization", 0)


def count_instance_norms(generator: nn.Module) -> int:
    return sum(isinstance(m, nn.InstanceNorm2d) for m in generator.modules())


def onnx_op_counts(path: Path) -> dict[str, int]:
    """How many nodes of each op type the graph at ``path`` has."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return dict(Counter(node.op_type for node in graph.node))


def external_data_files(path: Path) -> list[str]:
    """The files the graph at ``path`` keeps weights in besides itself (none for an export under 2 GB)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    found = {
        entry.value
        for tensor in graph.initializer
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    return sorted(found)


def example_input(spec: GeneratorSpec, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A small batch-2 input of a valid size (batch 2 so that export keeps the batch symbolic)."""
    side = max(64, 2 * spec.size_multiple)
    return torch.zeros(2, spec.input_nc, side, side, dtype=dtype)


def conditioning_example(spec: FamilySpec, batch: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Zero values of the generator's conditioning inputs (StarGAN's label, BicycleGAN's z) for a batch:
    graph inputs of their own, after the image, named as the family names them."""
    return tuple(torch.zeros(batch, c.size(spec), dtype=dtype) for c in spec.family.conditioning)


def conditioning_names(spec: FamilySpec) -> list[str]:
    return [c.name for c in spec.family.conditioning]


def _dynamic_shapes(spec: GeneratorSpec) -> tuple[dict[int, object], ...]:
    """Batch free; height and width any multiple of the generator's size multiple, from the smallest
    padded side its family runs on (``min_side`` padded up: a ResNet needs at least 2 × 4 pixels, its
    trunk runs at a quarter of the size and reflect-pads by 1; a U-Net's innermost level is 1 × 1).
    """
    dim = torch.export.Dim
    m = spec.size_multiple
    low = -(-spec.min_side // m)
    h = dim("h", min=low, max=MAX_SIDE // m)
    w = dim("w", min=low, max=MAX_SIDE // m)
    batch = dim("batch", min=1, max=4096)
    return ({0: batch, 2: m * h, 3: m * w}, *({0: batch} for _ in spec.family.conditioning))


def profile_dynamic_shapes(
    profile: ShapeProfile, multiple: int, conditioning: int = 0
) -> tuple[dict[int, object], ...]:
    """torch.export dynamic dims for a (padded) shape profile; an axis with min == max stays static.  The
    ``conditioning`` inputs after the image share its batch."""
    dim = torch.export.Dim
    dims: dict[int, object] = {}
    if profile.min[0] != profile.max[0]:
        dims[0] = dim("batch", min=profile.min[0], max=profile.max[0])
    for axis, name in ((2, "h"), (3, "w")):
        lo, hi = profile.min[axis], profile.max[axis]
        if lo != hi:
            dims[axis] = multiple * dim(name, min=-(-lo // multiple), max=hi // multiple)
    batch = {0: dims[0]} if 0 in dims else {}
    return (dims, *(dict(batch) for _ in range(conditioning)))


def export_program(
    generator: nn.Module,
    profile: ShapeProfile,
    *,
    multiple: int,
    dtype: torch.dtype,
    device: torch.device,
    conditioning: Sequence[int] = (),
) -> torch.export.ExportedProgram:
    """``torch.export`` of a generator over a padded shape profile (what torch-tensorrt compiles), with
    inputs of ``conditioning``'s sizes (StarGAN's label, BicycleGAN's z) after the image.

    Custom ops (the fused instance-norm kernels) stay single nodes, shaped by their fake kernels.
    """
    batch = profile.opt[0] if profile.opt[0] > 1 or profile.max[0] == 1 else 2
    x = torch.zeros((batch, *profile.opt[1:]), dtype=dtype, device=device)
    values = tuple(torch.zeros(batch, size, dtype=dtype, device=device) for size in conditioning)
    shapes = profile_dynamic_shapes(profile, multiple, len(values))
    with torch.no_grad():
        return torch.export.export(generator, (x, *values), dynamic_shapes=shapes)


_CHATTY_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter logs a warning per missing torchvision op and a line per graph rewrite; hide them."""
    loggers = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation chatter from torch.export internals
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _export_dynamo(generator: nn.Module, x: torch.Tensor, spec: GeneratorSpec, path: Path, opset: int) -> None:
    with _quiet_exporter():
        program = torch.onnx.export(
            generator,
            (x, *conditioning_example(spec, x.shape[0], x.dtype)),
            dynamo=True,
            input_names=[INPUT_NAME, *conditioning_names(spec)],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=_dynamic_shapes(spec),
            opset_version=opset,
            verbose=False,
        )
    if program is None:
        raise BackendError("the dynamo ONNX exporter returned no program")
    program.save(str(path))


def _export_torchscript(generator: nn.Module, x: torch.Tensor, spec: GeneratorSpec, path: Path, opset: int) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    names = conditioning_names(spec)
    with _quiet_exporter():
        torch.onnx.export(
            generator,
            (x, *conditioning_example(spec, x.shape[0], x.dtype)),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME, *names],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes, **{n: {0: "batch"} for n in names}},
            opset_version=min(opset, 17),
        )


def export_onnx(
    model: LoadedModel,
    path: str | Path,
    *,
    precision: str = "fp32",
    opset: int = OPSET,
    exporter: str = "auto",
) -> OnnxExport:
    """Write ``model``'s generator as an ONNX graph at ``path`` (atomically) and say how it went.

    ``exporter`` is "auto" (dynamo, then TorchScript if dynamo fails), "dynamo" or "torchscript".
    """
    if precision not in EXPORT_DTYPES:
        raise BackendError(f"ONNX export supports precision fp32 or fp16, not {precision}")
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise BackendError(f"unknown ONNX exporter {exporter!r} (auto, dynamo or torchscript)")
    dtype = EXPORT_DTYPES[precision]
    generator = copy.deepcopy(model.generator).eval().to(dtype)  # never touch the caller's model
    x = example_input(model.spec, dtype)
    path = Path(path)
    t0 = time.perf_counter()
    used = "dynamo"
    with atomic_output(path) as tmp, torch.no_grad():
        try:
            if exporter == "torchscript":
                raise _Skip
            _export_dynamo(generator, x, model.spec, tmp, opset)
        except Exception as e:
            if exporter == "dynamo":
                raise BackendError(f"ONNX export (dynamo exporter) failed: {first_line(e)}") from e
            if not isinstance(e, _Skip):
                log.warning("dynamo ONNX exporter failed (%s); trying the TorchScript exporter", first_line(e))
            used = "torchscript"
            try:
                _export_torchscript(generator, x, model.spec, tmp, opset)
            except Exception as e2:
                raise BackendError(f"ONNX export failed with both exporters: {first_line(e2)}") from e2
    if external := external_data_files(path):  # named after the temporary file, which is gone
        for name in [path.name, *(n for n in external if Path(n).name == n)]:
            (path.parent / name).unlink(missing_ok=True)
        raise BackendError("the ONNX graph of this model is over 2 GB (its weights would need a file of their own)")
    report = OnnxExport(path, used, precision, time.perf_counter() - t0, onnx_op_counts(path))
    expected = count_instance_norms(model.generator)
    if report.instance_norms != expected:
        log.warning(
            "the ONNX graph has %d InstanceNormalization nodes for %d instance norms in the model "
            "(decomposed norms run slower and lose the fp32 statistics)",
            report.instance_norms,
            expected,
        )
    return report


def _onnx_entry(
    model: LoadedModel, precision: str, cache_dir: Path | None, digest: str | None
) -> tuple[Path, dict[str, object]]:
    """Where the model's graph is cached and what its record must say it was made from."""
    digest = digest or model_digest(model)
    path = onnx_cache_path(cache_dir or default_cache_dir(), digest, precision, OPSET)
    return path, onnx_key(digest, precision, OPSET)


def _cached_onnx(model: LoadedModel, precision: str, cache_dir: Path | None, digest: str | None) -> tuple[Path, bool]:
    """The cached graph and whether it was exported just now."""
    path, key = _onnx_entry(model, precision, cache_dir, digest)
    with entry_lock(path):
        if checked_entry(path, key) is not None:
            log.debug("ONNX graph from the cache: %s", path)
            return path, False
        log.info("exporting %s to ONNX (%s, once; cached in %s)", model.spec.official_name, precision, path.parent)
        reports: list[OnnxExport] = []
        store_entry(path, key, lambda tmp: reports.append(export_onnx(model, tmp, precision=precision)))
    log.info("ONNX export done in %.1f s (%s exporter)", reports[0].seconds, reports[0].exporter)
    return path, True


def cached_onnx(
    model: LoadedModel, precision: str = "fp32", cache_dir: Path | None = None, digest: str | None = None
) -> Path:
    """The model's ONNX graph from the cache, exported there first if missing (once per model) or if the
    cached one no longer matches its record (engine/backends/cache.py)."""
    return _cached_onnx(model, precision, cache_dir, digest)[0]


def open_cached_onnx(
    model: LoadedModel,
    open_graph: Callable[[Path], T],
    *,
    precision: str = "fp32",
    cache_dir: Path | None = None,
    digest: str | None = None,
    damaged: type[Exception] | tuple[type[Exception], ...] = Exception,
) -> T:
    """``open_graph`` (a session, a compiled model) on the model's cached ONNX graph.  A cached graph that
    fails to open (with a ``damaged`` exception) is removed with a warning and exported again, once: a
    damaged entry never fails every later run; a graph that fails just after its export is a real error."""
    return open_or_remake(lambda: _cached_onnx(model, precision, cache_dir, digest), open_graph, damaged)


def open_or_remake(
    entry: Callable[[], tuple[Path, bool]],
    open_graph: Callable[[Path], T],
    damaged: type[Exception] | tuple[type[Exception], ...] = Exception,
) -> T:
    """``open_graph`` on a cache entry (``entry()``: its path, made anew or not).  A cached entry that fails to
    open with a ``damaged`` exception is removed with a warning and made again, once; one that fails just
    after it was made is a real error."""
    path, fresh = entry()
    try:
        return open_graph(path)
    except damaged as e:
        if fresh:
            raise
        with entry_lock(path):
            discard_entry(path, f"could not be opened ({first_line(e)})")
    return open_graph(entry()[0])


def cached_plugin_onnx(
    model: LoadedModel, precision: str, cache_dir: Path | None = None, digest: str | None = None
) -> Path:
    """The plugin graph (``onnx_plugins``: each norm as one TensorRT plugin node) of the model's cached ONNX
    graph, cached beside it with its own record."""
    from cyclestream.engine.backends.onnx_plugins import plugin_onnx_path, write_plugin_onnx

    digest = digest or model_digest(model)
    source = cached_onnx(model, precision, cache_dir, digest)
    path, key = plugin_onnx_path(source), {**_onnx_entry(model, precision, cache_dir, digest)[1], "graph": "plugins"}
    with entry_lock(path):
        if checked_entry(path, key) is None:
            reports = []
            store_entry(path, key, lambda tmp: reports.append(write_plugin_onnx(source, tmp)))
            log.info("plugin graph: %s norms fused (%s)", sum(reports[0].fused.values()), path)
    return path


def store_cached_onnx(model: LoadedModel, graph: Path, precision: str, cache_dir: Path | None = None) -> Path:
    """Put a graph ``export_onnx`` wrote elsewhere into the cache (with its record), where the ONNX backends
    find it; returns its cache path."""
    path, key = _onnx_entry(model, precision, cache_dir, None)
    with entry_lock(path):
        store_entry(path, key, lambda tmp: shutil.copyfile(graph, tmp))
    return path


class _Skip(Exception):
    """Internal: go straight to the TorchScript exporter."""
