"""``cyclestream compile``: turn a model file into an artifact a backend runs, and check it.

- ``onnx``: the ONNX graph (dynamic batch/height/width; fp32, or fp16 with fp32 instance norms),
  checked under ONNX Runtime on the CPU against eager fp32.  It is also put in the cache, where
  ``--backend onnxruntime`` / ``openvino`` find it, so translating afterwards exports nothing.
  Beside it, ``NAME.plugins.onnx``: the same graph with each norm (+ ReLU / residual add) as one
  ``CycleStreamInstanceNorm`` node, for TensorRT with the native plugin library (``trtexec``).
- ``openvino``: OpenVINO IR (.xml + .bin) converted from that graph, checked with OpenVINO on the
  CPU (fp16 compresses the weights; bf16 is chosen at run time, so its IR is the fp32 one).
- ``tensorrt``: a TensorRT engine for the ``--shape`` profile, built into the engine cache (where
  ``--backend tensorrt`` finds it for any job inside the profile) and copied to ``--out``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.cache import ShapeProfile, default_cache_dir
from cyclestream.engine.backends.export import OPSET, export_onnx, store_cached_onnx
from cyclestream.engine.backends.onnx_plugins import plugin_onnx_path, write_plugin_onnx
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.conditioning import require_image_only
from cyclestream.engine.errors import BackendError
from cyclestream.engine.jobs.options import CompileOptions
from cyclestream.engine.jobs.verify import eager_output, model_input, relative_l2, sample_frames

SUFFIXES = {"onnx": ".onnx", "openvino": ".xml", "tensorrt": ".engine"}


@dataclass
class CompileReport:
    target: str
    path: Path
    seconds: float
    details: list[str] = field(default_factory=list)


def default_output(model_path: Path, target: str) -> Path:
    return Path(model_path.stem + SUFFIXES[target])


def compile_model(model_path: str | Path, options: CompileOptions) -> CompileReport:
    """Load ``model_path`` and build ``options.target`` from it (see the module docstring)."""
    model = load_model(model_path)
    model.require_image_input()
    require_image_only(model, "compile")
    profile = ShapeProfile.parse(options.shape)
    if profile.opt[1] != model.spec.input_nc:
        raise BackendError(f"--shape has {profile.opt[1]} channels; this generator takes {model.spec.input_nc}")
    out = options.out or default_output(Path(model_path), options.target)
    cache_dir = options.cache_dir or default_cache_dir()
    t0 = time.perf_counter()
    if options.target == "onnx":
        details = _onnx(model, out, options, profile, cache_dir)
    elif options.target == "openvino":
        details = _openvino(model, out, options, profile, cache_dir)
    else:
        details = _tensorrt(model, out, options, profile, cache_dir)
    return CompileReport(options.target, out, time.perf_counter() - t0, details)


def _check_input(model: LoadedModel, profile: ShapeProfile, clip: Path | None) -> torch.Tensor:
    """One real-ish frame at the profile's opt size (padded), for checking against eager fp32."""
    return model_input(model, sample_frames(1, profile.opt[2], profile.opt[3], clip=clip))


def _onnx(model: LoadedModel, out: Path, options: CompileOptions, profile: ShapeProfile, cache_dir: Path) -> list[str]:
    if options.precision not in ("fp32", "fp16"):
        raise BackendError("--target onnx writes fp32 or fp16 graphs (bf16 is an OpenVINO/eager run-time choice)")
    report = export_onnx(model, out, precision=options.precision, exporter=options.exporter)
    cached = store_cached_onnx(model, out, options.precision, cache_dir)
    details = [
        f"{report.exporter} exporter, opset {OPSET}, {report.precision}, dynamic batch/height/width",
        f"{report.instance_norms} InstanceNormalization nodes; ops: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.op_counts.items())),
    ]
    from cyclestream.engine.backends.onnxruntime import make_session

    x = _check_input(model, profile, options.check_clip)
    feed = x.half() if options.precision == "fp16" else x
    (y,) = make_session(out).run(None, {"input": feed.numpy()})
    error = relative_l2(torch.from_numpy(y).float(), eager_output(model, x))
    details.append(f"ONNX Runtime (CPU) vs eager fp32 at {x.shape[3]}x{x.shape[2]}: relative L2 error {error:.1e}")
    details.append(f"cached for --backend onnxruntime/openvino: {cached}")
    plugins = write_plugin_onnx(out, plugin_onnx_path(out))
    details.append(
        f"plugin graph ({sum(plugins.fused.values())} fused norms) for TensorRT without Python: {plugins.path} — "
        f"trtexec --onnx={plugins.path} --staticPlugins=build/libcyclestream_trt_plugins.so --stronglyTyped"
    )
    return details


def _openvino(
    model: LoadedModel, out: Path, options: CompileOptions, profile: ShapeProfile, cache_dir: Path
) -> list[str]:
    from cyclestream.engine.backends.export import cached_onnx
    from cyclestream.engine.backends.openvino import import_openvino

    if options.precision not in ("fp32", "fp16", "bf16"):
        raise BackendError(f"--target openvino takes fp32, fp16 or bf16, not {options.precision}")
    ov = import_openvino()
    onnx_path = cached_onnx(model, "fp32", cache_dir)
    core = ov.Core()
    ir = core.read_model(str(onnx_path))
    if out.suffix != ".xml":
        raise BackendError(f"OpenVINO IR is written as NAME.xml (+ NAME.bin); got --out {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ir, str(out), compress_to_fp16=options.precision == "fp16")
    hint = {"fp32": "f32", "fp16": "f32", "bf16": "bf16"}[options.precision]
    compiled = core.compile_model(core.read_model(str(out)), "CPU", {"INFERENCE_PRECISION_HINT": hint})
    x = _check_input(model, profile, options.check_clip)
    y = torch.from_numpy(compiled({0: x.numpy()})[0])
    error = relative_l2(y, eager_output(model, x))
    weights = "fp16" if options.precision == "fp16" else "fp32"
    return [
        f"OpenVINO IR {out} + {out.with_suffix('.bin').name} ({weights} weights)",
        f"OpenVINO (CPU, {hint}) vs eager fp32 at {x.shape[3]}x{x.shape[2]}: relative L2 error {error:.1e}",
    ]


def _tensorrt(
    model: LoadedModel, out: Path, options: CompileOptions, profile: ShapeProfile, cache_dir: Path
) -> list[str]:
    from cyclestream.engine.backends.tensorrt import PRECISIONS, TensorRTBackend, get_engine

    if options.precision not in PRECISIONS:
        raise BackendError(f"--target tensorrt builds fp32 or fp16 engines, not {options.precision}")
    backend = TensorRTBackend(options.device, cache_dir)  # checks TensorRT and CUDA with clear messages
    built = get_engine(model, profile.padded(model.spec.size_multiple), precision=options.precision,
                       device=backend.device, cache_dir=cache_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.resolve() != built.path.resolve():
        with atomic_output(out) as tmp:
            shutil.copyfile(built.path, tmp)
    key = built.key
    return [
        f"{key.variant} engine, {key.precision}, profile {key.profile.to_text()}, {key.gpu}, TensorRT {key.tensorrt}",
        f"built in {built.seconds:.0f} s" if built.seconds else "found in the engine cache",
        f"cached for --backend tensorrt: {built.path}",
    ]
