"""TensorRT on NVIDIA GPUs: a serialized engine per (model, shape profile, precision, GPU, TensorRT), cached.

Three ways to build the engine, tried in this order; all give raw engine bytes run by ``EngineRunner``:

- ``aot`` — TensorRT's ONNX parser on the plugin graph (``onnx_plugins``: every norm and its ReLU or
  residual add as one ``CycleStreamInstanceNorm`` node), with ``libcyclestream_trt_plugins.so``
  loaded: the C++ IPluginV3 of ``native/tensorrt`` over the Triton kernels compiled ahead of time
  (``kernels/aot.py``, ``CMakeLists.txt``).  No Python in the engine: ``trtexec`` and C++ programs
  run it with the library.  Tried only when the library is found (``$CYCLESTREAM_TRT_PLUGINS``, or
  ``build/`` of a source checkout after ``cmake -S . -B build && cmake --build build``).

- ``plugins`` — torch-tensorrt (dynamo), ≥ 2.13: older versions generate a plugin shape function that
  calls the op without its attributes, so this variant is skipped there with that reason
  (``variant_unavailable``).  The generator's norms are swapped for the fused Triton
  kernels (``cyclestream.engine.models.fuse.fuse_kernels``: IN+ReLU and IN+residual-add as single custom ops),
  the model is ``torch.export``-ed over the shape profile, and each ``cyclestream::instance_norm_*``
  op becomes a TensorRT plugin through torch-tensorrt's automatic plugin generation on TensorRT's
  Python plugin API (Quick Deployable Plugins, TensorRT ≥ 10.7): at run time TensorRT calls back
  into the op, which launches the Triton kernel on TensorRT's stream.
  ``convert_exported_program_to_serialized_trt_engine(..., use_explicit_typing=True)`` builds a
  strongly typed network from the half-precision graph; the kernels keep statistics in fp32.
- ``native`` — plain TensorRT, no torch-tensorrt: the cached ONNX export is parsed by TensorRT's
  ONNX parser (InstanceNormalization → TensorRT's native normalization layer) into a strongly
  typed network.  For fp16 the ONNX graph itself is half precision with ``Cast → fp32
  InstanceNormalization → Cast`` around every norm, so the statistics stay fp32 as written.

A generator with conditioning inputs (StarGAN's label, BicycleGAN's z) keeps them as engine inputs after
the image, each with the frames' batch range in the profile, bound on every call: one engine serves every
value.  StarGAN's affine norms are left to TensorRT's own normalization in every build (the plugins are
the plain norms').

Strong typing (precision from the graph, not builder flags) is what TensorRT 11 requires and what
10.x recommends.  Engines have one optimization profile: batches 1..N (the last, shorter batch of a
video fits) and the padded frame size, or whatever range ``cyclestream compile --shape`` asked for.
Frames of a size outside the profile get another engine (built or found in the cache).

Nothing here could be run where it was written (no GPU): it follows the TensorRT and torch-tensorrt
documentation; ``benchmarks/gpu_check.py`` builds every variant and checks them against eager.
"""

from __future__ import annotations

import copy
import ctypes
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision
from cyclestream.engine.backends.cache import (
    EngineKey,
    ShapeProfile,
    default_cache_dir,
    discard_entry,
    entry_lock,
    find_engine,
    model_digest,
    store_engine,
)
from cyclestream.engine.backends.export import INPUT_NAME, cached_plugin_onnx, export_program, open_cached_onnx
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, first_line

log = logging.getLogger("cyclestream")

VARIANTS = ("aot", "plugins", "native")
PLUGIN_LIBRARY_ENV = "CYCLESTREAM_TRT_PLUGINS"
PLUGIN_LIBRARY_NAME = "libcyclestream_trt_plugins.so"
# A source checkout (the project root holds CMakeLists.txt): its cmake build folder; an installed wheel has none.
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
SOURCE_BUILD_DIR = _PROJECT_ROOT / "build" if (_PROJECT_ROOT / "CMakeLists.txt").is_file() else None
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}
PLUGIN_OPS = ("cyclestream::instance_norm_act", "cyclestream::instance_norm_residual")
INSTALL_HINT = "pip install 'cyclestream[gpu]' (tensorrt ≥ 10.7, torch-tensorrt matching your torch)"
# torch-tensorrt's generated plugin shape function calls the op without its attribute arguments before
# 2.13 ("instance_norm_act() is missing value for argument 'act'"), so the plugins variant cannot build.
PLUGINS_MIN_TORCH_TENSORRT = (2, 13)
PLUGINS_HINT = "pip install 'cyclestream[gpu-plugins]' (torch-tensorrt ≥ 2.13, which needs torch 2.13 and TensorRT 11)"


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise BackendError(f"the tensorrt backend needs TensorRT: {INSTALL_HINT}") from None
    return tensorrt


def plugin_library() -> Path | None:
    """The native plugin library: ``$CYCLESTREAM_TRT_PLUGINS``, else ``build/`` of the source checkout."""
    if value := os.environ.get(PLUGIN_LIBRARY_ENV):
        path = Path(value)
        if not path.is_file():
            raise BackendError(f"{PLUGIN_LIBRARY_ENV}={value} is not a file")
        return path
    if SOURCE_BUILD_DIR is None:
        return None
    path = SOURCE_BUILD_DIR / PLUGIN_LIBRARY_NAME
    return path if path.is_file() else None


def _release(text: str) -> tuple[int, ...]:
    """(2, 12, 0) from '2.12.0+cu130', '2.13.0.dev20260101' and the like."""
    parts = []
    for piece in text.split("+")[0].split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def torch_tensorrt_version() -> str | None:
    """The installed torch-tensorrt's version (without importing it), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch-tensorrt")
    except PackageNotFoundError:
        return None


def variant_unavailable(variant: str) -> str | None:
    """Why ``variant`` cannot be built in this environment, or None when it may be tried."""
    if variant == "aot":
        try:
            return None if plugin_library() is not None else f"{PLUGIN_LIBRARY_NAME} is not built (cmake)"
        except BackendError as e:
            return str(e)
    if variant == "plugins":
        installed = torch_tensorrt_version()
        if installed is None:
            return f"torch-tensorrt is not installed: {PLUGINS_HINT}"
        if _release(installed) < PLUGINS_MIN_TORCH_TENSORRT:
            return (
                f"torch-tensorrt {installed} generates plugin shape functions that omit the ops' attributes "
                f"(fixed in 2.13): {PLUGINS_HINT}"
            )
    return None


def default_variants() -> tuple[str, ...]:
    """The build variants that can work here, in order: ``aot`` (library built), ``plugins`` (torch-tensorrt
    ≥ 2.13), ``native`` (always)."""
    return tuple(v for v in VARIANTS if variant_unavailable(v) is None)


def load_plugin_library() -> Path:
    """Load ``libcyclestream_trt_plugins.so`` into the process (idempotent).

    The library registers its creator in TensorRT's global plugin registry when it is loaded, so
    libnvinfer is loaded first (``import tensorrt``) and the library is opened like trtexec's
    ``--staticPlugins`` does, not through ``IPluginRegistry.load_library``.
    """
    path = plugin_library()
    if path is None:
        raise BackendError(
            f"the aot variant needs {PLUGIN_LIBRARY_NAME}: build it with `cmake -S . -B build && cmake --build "
            f"build` (TensorRT headers via TENSORRT_ROOT) or set {PLUGIN_LIBRARY_ENV}"
        )
    import_tensorrt()
    try:
        ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise BackendError(f"cannot load the TensorRT plugin library {path}: {e}") from None
    return path


def gpu_name(device: torch.device) -> str:
    """The GPU's name and compute capability, e.g. 'NVIDIA L4 (sm_89)' — part of the engine key."""
    props = torch.cuda.get_device_properties(device)
    return f"{props.name} (sm_{props.major}{props.minor})"


def register_plugins() -> None:
    """Turn the fused instance-norm custom ops into TensorRT plugins (idempotent).

    torch-tensorrt generates, from each op's schema and fake kernel, a TensorRT Quick Deployable
    Plugin (shape function + JIT implementation calling the op on TensorRT's stream) and the
    converter that puts it into the network.  Engines holding these plugins need this to have run
    in the process before they are deserialized.
    """
    import cyclestream.kernels  # noqa: F401  (registers the cyclestream:: custom ops)

    try:
        import tensorrt.plugin  # noqa: F401  (TensorRT's Python plugin API, ≥ 10.7)
        import torch_tensorrt
    except ImportError as e:
        raise BackendError(f"TensorRT plugins need torch-tensorrt and TensorRT ≥ 10.7 ({e}): {INSTALL_HINT}") from None
    try:
        from tensorrt.plugin._lib import QDP_REGISTRY  # where TensorRT keeps registered plugins

        registered = set(QDP_REGISTRY)
    except ImportError:
        registered = set()
    for op in PLUGIN_OPS:
        if op in registered:
            continue
        try:
            torch_tensorrt.dynamo.conversion.plugins.custom_op(op, supports_dynamic_shapes=True)
        except Exception as e:
            if "already" not in str(e).lower():  # registered earlier in this process: fine
                raise


def build_with_plugins(model: LoadedModel, profile: ShapeProfile, precision: str, device: torch.device) -> bytes:
    """torch-tensorrt engine with the Triton kernels as plugins (see the module docstring)."""
    import torch_tensorrt

    from cyclestream.engine.models.fuse import fuse_kernels

    register_plugins()
    dtype = PRECISIONS[precision]
    # StarGAN's affine norms stay aten ops, which torch-tensorrt converts itself: their ops are not plugins
    generator = fuse_kernels(copy.deepcopy(model.generator), "triton", affine=False).to(device, dtype).eval()
    sizes = [c.size(model.spec) for c in model.family.conditioning]
    program = export_program(generator, profile, multiple=model.spec.size_multiple, dtype=dtype, device=device,
                             conditioning=sizes)
    specs = [torch_tensorrt.Input(min_shape=profile.min, opt_shape=profile.opt, max_shape=profile.max, dtype=dtype)]
    specs += [
        torch_tensorrt.Input(min_shape=(profile.min[0], size), opt_shape=(profile.opt[0], size),
                             max_shape=(profile.max[0], size), dtype=dtype)
        for size in sizes
    ]  # fmt: skip
    data = torch_tensorrt.dynamo.convert_exported_program_to_serialized_trt_engine(
        program,
        arg_inputs=specs,
        use_explicit_typing=True,
        require_full_compilation=True,
        min_block_size=1,
        device=device,
    )
    if not data:
        raise BackendError("torch-tensorrt returned no engine")
    return bytes(data)


class OnnxRejected(BackendError):
    """TensorRT's ONNX parser refused a graph."""


def build_native(
    model: LoadedModel, profile: ShapeProfile, *, precision: str, cache_dir: Path, workspace_gib: float = 4.0
) -> bytes:
    """Plain TensorRT from the ONNX export, native InstanceNormalization (see the module docstring).

    A cached graph the parser refuses is exported again, once (``open_cached_onnx``)."""
    return open_cached_onnx(
        model, lambda path: build_from_onnx(path, profile, workspace_gib), precision=precision, cache_dir=cache_dir,
        damaged=OnnxRejected,
    )


def build_aot(
    model: LoadedModel, profile: ShapeProfile, *, precision: str, cache_dir: Path, workspace_gib: float = 4.0
) -> bytes:
    """TensorRT from the plugin graph with the native plugin library loaded (see the module docstring)."""
    library = load_plugin_library()
    plugin_path = cached_plugin_onnx(model, precision, cache_dir)
    log.info("TensorRT plugins from %s", library)
    return build_from_onnx(plugin_path, profile, workspace_gib)


def build_from_onnx(onnx_path: Path, profile: ShapeProfile, workspace_gib: float = 4.0) -> bytes:
    """A strongly typed engine from an ONNX file over one optimization profile."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise OnnxRejected(f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if hasattr(trt.BuilderFlag, "TF32"):  # on by default; fp32 tensors must stay fp32 (the fp32 check's tolerance)
        config.clear_flag(trt.BuilderFlag.TF32)
    shapes = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        if tensor.name == INPUT_NAME:
            shapes.set_shape(INPUT_NAME, profile.min, profile.opt, profile.max)
        else:  # a conditioning input (label, z): (batch, size), its batch as the frames'
            size = tensor.shape[1]
            shapes.set_shape(tensor.name, *((dims[0], size) for dims in (profile.min, profile.opt, profile.max)))
    config.add_optimization_profile(shapes)
    data = builder.build_serialized_network(network, config)
    if data is None:
        raise BackendError("TensorRT could not build an engine for this model (see the TensorRT log above)")
    return bytes(data)


class EngineRunner:
    """One deserialized engine and its execution context; runs on the current CUDA stream.  Its inputs are
    the image, then the generator's conditioning (StarGAN's label, BicycleGAN's z), in the graph's order."""

    def __init__(self, data: bytes, variant: str, profile: ShapeProfile) -> None:
        trt = import_tensorrt()
        if variant == "plugins":
            register_plugins()  # the engine's plugin layers call back into these
        elif variant == "aot":
            load_plugin_library()  # the engine's plugin layers are this library's
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise BackendError("TensorRT could not load the cached engine (built by another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if not inputs or len(outputs) != 1:
            raise BackendError(f"expected an engine with an image input and one output, got {inputs} → {outputs}")
        self.input = INPUT_NAME if INPUT_NAME in inputs else inputs[0]
        self.conditioning = [n for n in inputs if n != self.input]
        self.output = outputs[0]
        self.input_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.input))
        self.output_dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(self.output))
        self.variant, self.profile = variant, profile

    def __call__(self, x: torch.Tensor, *conditioning: torch.Tensor) -> torch.Tensor:
        if len(conditioning) != len(self.conditioning):
            raise BackendError(f"the engine takes {len(self.conditioning)} conditioning inputs "
                               f"({', '.join(self.conditioning) or 'none'}), not {len(conditioning)}")  # fmt: skip
        feeds = [(self.input, x.to(self.input_dtype).contiguous())]
        for name, value in zip(self.conditioning, conditioning, strict=True):
            dtype = _torch_dtype(import_tensorrt(), self.engine.get_tensor_dtype(name))
            feeds.append((name, value.to(x.device, dtype).contiguous()))
        for name, value in feeds:
            if not self.context.set_input_shape(name, tuple(value.shape)):
                raise BackendError(f"input {name} of shape {tuple(value.shape)} is outside the engine's profile "
                                   f"{self.profile.to_text()}")  # fmt: skip
            self.context.set_tensor_address(name, value.data_ptr())
        y = torch.empty(tuple(self.context.get_tensor_shape(self.output)), dtype=self.output_dtype, device=x.device)
        self.context.set_tensor_address(self.output, y.data_ptr())
        if not self.context.execute_async_v3(torch.cuda.current_stream(x.device).cuda_stream):
            raise BackendError("TensorRT failed to run the engine")
        return y


def _torch_dtype(trt: Any, dtype: Any) -> torch.dtype:
    table = {trt.float32: torch.float32, trt.float16: torch.float16, trt.bfloat16: torch.bfloat16}
    if dtype not in table:
        raise BackendError(f"unexpected engine tensor type {dtype}")
    return table[dtype]


@dataclass(frozen=True)
class BuiltEngine:
    path: Path
    key: EngineKey
    seconds: float  # 0 when found in the cache


def get_engine(
    model: LoadedModel,
    profile: ShapeProfile,
    *,
    precision: str,
    device: torch.device,
    cache_dir: Path,
    variants: tuple[str, ...] | None = None,
    digest: str | None = None,
) -> BuiltEngine:
    """The cached engine for this build, else build it (aot, plugins, native: the first that works), cached.

    A variant that fails to build is reported with a warning saying why, and the next one is tried.
    """
    trt = import_tensorrt()
    variants = variants or default_variants()
    digest, gpu = digest or model_digest(model), gpu_name(device)

    def key_for(variant: str) -> EngineKey:
        return EngineKey(digest, profile, precision, gpu, str(trt.__version__), variant)

    for variant in variants:
        key = key_for(variant)
        if (path := find_engine(cache_dir, key)) is not None:
            log.info("TensorRT engine from the cache: %s", path)
            return BuiltEngine(path, key, 0.0)
    failures: list[str] = []
    for variant in variants:
        key = key_for(variant)
        if reason := variant_unavailable(variant):
            failures.append(f"{variant}: {reason}")
            log.info("TensorRT variant %s skipped: %s", variant, reason)
            continue
        log.info(
            "building a TensorRT engine (%s, %s, %s, profile %s) — first use only, this takes minutes; cached in %s",
            variant, precision, gpu, profile.to_text(), cache_dir / "engines",
        )  # fmt: skip
        t0 = time.perf_counter()
        try:
            if variant == "aot":
                data = build_aot(model, profile, precision=precision, cache_dir=cache_dir)
            elif variant == "plugins":
                data = build_with_plugins(model, profile, precision, device)
            else:
                data = build_native(model, profile, precision=precision, cache_dir=cache_dir)
        except Exception as e:
            reason = first_line(e)
            failures.append(f"{variant}: {reason}")
            if variant != variants[-1]:
                log.warning("TensorRT build with %s failed (%s); trying the next way", variant, reason)
            continue
        path = store_engine(cache_dir, key, data)
        seconds = time.perf_counter() - t0
        log.info("TensorRT engine built in %.0f s: %s", seconds, path)
        return BuiltEngine(path, key, seconds)
    raise BackendError("could not build a TensorRT engine: " + "; ".join(failures))


class TensorRTBackend(Backend):
    name = "tensorrt"
    input_channels_last = False  # the engine's input binding is contiguous NCHW

    def __init__(self, device: str = "cuda", cache_dir: Path | None = None, variants: tuple[str, ...] | None = None):
        if device == "cpu":  # the CLI's default device; TensorRT only means the GPU
            device = "cuda"
        if not device.startswith("cuda"):
            raise BackendError(f"the tensorrt backend runs on an NVIDIA GPU, not on {device!r}")
        import_tensorrt()
        if not torch.cuda.is_available():
            raise BackendError("the tensorrt backend needs an NVIDIA GPU with CUDA; PyTorch sees none here")
        variants = variants or default_variants()
        unknown = set(variants) - set(VARIANTS)
        if unknown:
            raise BackendError(f"unknown TensorRT build variants {sorted(unknown)} (use {', '.join(VARIANTS)})")
        self.device = torch.device(device)
        self.cache_dir = cache_dir or default_cache_dir()
        self.variants = variants
        self._model: LoadedModel | None = None
        self._digest = ""
        self._batch = 1
        self._runners: list[EngineRunner] = []

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"the tensorrt backend builds fp32 or fp16 engines, not {precision}")
        self.precision = precision
        self.input_dtype = PRECISIONS[precision]
        self._model, self._digest, self._batch = model, model_digest(model), shape.batch
        self._runners = []
        self._runner_for(ShapeProfile.for_frames(shape, model.spec.size_multiple, model.spec.input_nc))
        self.ready(model, shape)

    def _runner_for(self, profile: ShapeProfile) -> EngineRunner:
        for runner in self._runners:
            if runner.profile.contains(profile):
                return runner
        model = self._model
        assert model is not None

        def engine() -> BuiltEngine:
            return get_engine(model, profile, precision=self.precision, device=self.device, cache_dir=self.cache_dir,
                              variants=self.variants, digest=self._digest)

        built = engine()
        try:
            runner = self._load(built)
        except (BackendError, OSError) as e:
            if built.seconds:  # built just now: a real failure
                raise
            # a cached engine that matches its record and still does not load: built again, once
            with entry_lock(built.path):
                discard_entry(built.path, f"could not be loaded ({first_line(e)})")
            runner = self._load(engine())
        self._runners.append(runner)
        return runner

    def _load(self, built: BuiltEngine) -> EngineRunner:
        with torch.cuda.device(self.device):
            return EngineRunner(built.path.read_bytes(), built.key.variant, built.key.profile)

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        assert self._model is not None, "prepare() first"
        x = x.to(self.device)
        n, c, h, w = x.shape
        dims = (n, c, h, w)
        runner = next((r for r in self._runners if r.profile.covers(dims)), None)
        if runner is None:
            log.info("frames of %dx%d need another TensorRT engine", w, h)
            batch = max(n, self._batch)
            runner = self._runner_for(ShapeProfile((1, c, h, w), (batch, c, h, w), (batch, c, h, w)))
        return runner(x, *self.conditioning_batch(x))

    def describe(self) -> str:
        variant = self._runners[0].variant if self._runners else "?"
        return f"tensorrt ({self.device}, {self.precision}, {variant})"

    def close(self) -> None:
        super().close()
        self._runners = []
