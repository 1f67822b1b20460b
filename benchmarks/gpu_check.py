"""One command that proves the GPU half in one short run, part by part, in order of value.

    python benchmarks/gpu_check.py --out DIR            # ≤ 8 min on one H200 from a cold start
    python benchmarks/gpu_check.py --out DIR --quick    # a couple of minutes: fewer shapes and sizes

1. kernels   — the Triton kernels on CUDA (a clean process: no ``TRITON_INTERPRET``) against the
               references, fp32/fp16/bf16, 1×1 rows to 1080p trunks, NCHW and channels_last; then
               achieved GB/s vs a device-to-device copy of the same run (``cyclestream.kernels.cuda_check``);
2. aot       — ``cmake`` build for this GPU's architecture, then the C launcher through ctypes on CUDA
               tensors vs the Triton JIT result, and its GB/s (``cyclestream.kernels.aot_check``);
3. generator — eager with kernels off (the baseline) vs eager + fused kernels vs torch.compile (with
               and without CUDA graphs), fp32/fp16/bf16, 256²/720p/1080p, official 9-block (random
               weights) and the bundled model: ms/frame, fps, relative L2 vs eager fp32 (TF32 off);
4. pipeline  — decode → translate → encode of a generated 1080p clip (PyAV), x264 and NVENC;
5. tensorrt  — the TensorRT variants, only where ``tensorrt`` imports (256² and 720p).

Each part is passed, failed, or skipped with a reason (no CUDA, a missing package, the time budget):
a skip is never a failure.  Writes ``DIR/gpu_check.json`` and ``DIR/gpu_check.md``; exit status 1 when a
part failed.  On a CPU-only machine every part is skipped in seconds.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.jobs.verify import model_input, random_model, relative_l2, sample_frames
from cyclestream.engine.measure import cuda_ms
from cyclestream.engine.models import GeneratorSpec
from cyclestream.kernels.cuda_check import clean_env, run_clean

ROOT = Path(__file__).resolve().parents[1]
BUNDLED_MODEL = ROOT / "cyclestream" / "assets" / "default_model.safetensors"
SIZES = {"256²": (256, 256), "720p": (720, 1280), "1080p": (1080, 1920)}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Relative L2 bounds against eager fp32 (TF32 off) on random N(0, 0.02) weights of the 9-block generator.
GPU_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "bf16": 5e-2}
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class Part:
    name: str
    status: str = SKIPPED
    reason: str = ""
    seconds: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Context:
    out: Path
    quick: bool
    deadline: float  # time.monotonic() after which remaining work is skipped
    cuda: bool
    reserve: float = 0.0  # seconds the generator part leaves for the parts after it
    cmake: Future[tuple[Path | None, str]] | None = None  # part 2's build, started beside part 1

    def left(self) -> float:
        return self.deadline - time.monotonic()


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": platform.node(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["device"] = f"{props.name} (sm_{props.major}{props.minor}), CUDA {torch.version.cuda}"
    else:
        env["device"] = "no CUDA device"
    for package in ("triton", "av", "tensorrt", "torch-tensorrt", "onnxruntime"):
        env[package] = package_version(package) or "not installed"
    return env


# ----------------------------------------------------------------------------------------------------
# Parts 1 and 2: their own clean processes


def _clean_part(name: str, module: str, args: list[str], ctx: Context) -> Part:
    """Run ``module --json FILE args`` in a process without TRITON_INTERPRET and read its verdict."""
    result = ctx.out / f"{name}.json"
    try:
        timeout = max(60.0, ctx.left() - 2 * ctx.reserve)  # the later parts keep some time
        proc = run_clean(module, ["--json", str(result), *args, *(["--quick"] if ctx.quick else [])], timeout)
    except subprocess.TimeoutExpired:
        return Part(name, FAILED, "timed out (time budget)")
    if not result.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return Part(name, FAILED, f"exit {proc.returncode}: {tail[0]}")
    data = json.loads(result.read_text())
    return Part(name, data["status"], data.get("reason", ""), rows=data.get("bandwidth", []))


def part_kernels(ctx: Context) -> Part:
    if not ctx.cuda:
        return Part("kernels", SKIPPED, "no CUDA device")
    if importlib.util.find_spec("triton") is None:
        return Part("kernels", SKIPPED, "triton is not installed")
    return _clean_part("kernels", "cyclestream.kernels.cuda_check", [], ctx)


def cmake_build(build: Path) -> tuple[Path | None, str]:
    """``cmake`` configure + build for this GPU; (the ctypes kernel library or None, why not)."""
    major, minor = torch.cuda.get_device_capability(0)
    steps = [
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DCYCLESTREAM_CUDA_ARCHS={major}{minor}",
         f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"],
        ["cmake", "--build", str(build), "-j", str(max(1, (os.cpu_count() or 2) // 2))],  # half: part 1 runs
    ]  # fmt: skip
    log = ""
    for cmd in steps:
        proc = subprocess.run(cmd, cwd=ROOT, env=clean_env(), capture_output=True, text=True, check=False)
        log += proc.stdout
        (build.parent / "cmake.log").write_text(log + proc.stderr)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise RuntimeError(f"{' '.join(cmd[:2])} failed: {tail[0]}")
    library = build / "libcyclestream_instance_norm.so"
    notes = "; ".join(
        line.split("cyclestream: ", 1)[1].removeprefix("skipping ").split(";")[0]
        for line in log.splitlines()
        if "cyclestream: skipping" in line or "cyclestream: libcuda not found" in line
    )
    return (library if library.exists() else None), notes


def aot_unavailable(ctx: Context) -> str | None:
    if not ctx.cuda:
        return "no CUDA device"
    if not _which("cmake") or importlib.util.find_spec("triton") is None:
        return f"not installed: {'cmake' if not _which('cmake') else 'triton'}"
    return None


def start_cmake(ctx: Context) -> None:
    """Start part 2's build (CPU only: Triton AOT + C) in a thread, so that it overlaps part 1."""
    if aot_unavailable(ctx) is None:
        ctx.cmake = ThreadPoolExecutor(1, thread_name_prefix="cmake").submit(cmake_build, ctx.out / "build")


def part_aot(ctx: Context) -> Part:
    if reason := aot_unavailable(ctx):
        return Part("aot", SKIPPED, reason)
    try:
        library, notes = ctx.cmake.result() if ctx.cmake else cmake_build(ctx.out / "build")
    except RuntimeError as e:
        return Part("aot", FAILED, str(e))
    if library is None:
        return Part("aot", SKIPPED, f"no kernel library was built ({notes or 'see cmake.log'})")
    part = _clean_part("aot", "cyclestream.kernels.aot_check", ["--library", str(library)], ctx)
    part.reason += f" (cmake: {notes})" if notes else ""
    return part


def _which(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


# ----------------------------------------------------------------------------------------------------
# Part 3: the generator


def generator_variants(quick: bool) -> list[tuple[str, str, tuple[str, ...]]]:
    """(variant, precision, sizes), cheapest first.  torch.compile compiles once per size (tens of seconds
    each), so it runs fp16 at fewer sizes, on the official model only, last."""
    sizes = ("256²", "1080p") if quick else tuple(SIZES)
    compiled = ("256²",) if quick else ("256²", "1080p")
    rows = [(v, p, sizes) for v in ("eager", "eager+kernels") for p in PRECISIONS]
    rows += [(v, "fp16", compiled) for v in ("compile", "compile+cudagraphs")]
    return rows


def prepare_generator(model: LoadedModel, variant: str, device: str = "cuda") -> torch.nn.Module:
    """A copy of the generator for ``variant``: "eager" is the plain layers (kernels off: the baseline),
    "eager+kernels" has the fused Triton kernels, "compile[+cudagraphs]" is torch.compile of the plain one."""
    generator = copy.deepcopy(model.generator).to(device).eval()
    if variant == "eager+kernels":
        from cyclestream.engine.models.fuse import fuse_kernels

        generator = fuse_kernels(generator, mode="triton")
    generator = generator.to(memory_format=torch.channels_last)
    if variant.startswith("compile"):
        mode = "reduce-overhead" if variant.endswith("cudagraphs") else None
        generator = torch.compile(generator, dynamic=False, mode=mode)  # type: ignore[assignment]
    return generator


def build_runner(model: LoadedModel, variant: str, precision: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The generator as a callable on a CUDA NCHW float input (channels_last, autocast below fp32)."""
    generator = prepare_generator(model, variant)
    dtype = PRECISIONS[precision]

    @torch.inference_mode()
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cuda", dtype=dtype, enabled=precision != "fp32"):
            return generator(x.contiguous(memory_format=torch.channels_last)).clone()

    return run


def _models() -> dict[str, LoadedModel]:
    from cyclestream.engine.checkpoint import load_model

    official = GeneratorSpec()
    models = {f"official {official.official_name} (random)": random_model(official)}
    if BUNDLED_MODEL.exists():
        models["bundled"] = load_model(BUNDLED_MODEL)
    return models


def part_generator(ctx: Context) -> Part:
    if not ctx.cuda:
        return Part("generator", SKIPPED, "no CUDA device")
    part, failures, skipped = Part("generator", PASSED), [], []
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # fp32 is compared
    models = _models()
    inputs: dict[tuple[str, str], torch.Tensor] = {}  # (model, size) → input, and its eager fp32 output
    refs: dict[tuple[str, str], torch.Tensor] = {}
    official = next(iter(models))
    for variant, precision, sizes in generator_variants(ctx.quick):
        for name, model in models.items():
            if variant.startswith("compile") and name != official:
                continue
            for size in sizes:
                label = f"{name} {variant} {precision} {size}"
                if ctx.left() < ctx.reserve + 30:  # leave the pipeline and TensorRT parts their time
                    skipped.append(label)
                    continue
                t0 = time.monotonic()
                try:
                    if (name, size) not in refs:
                        inputs[name, size] = model_input(model, sample_frames(1, *SIZES[size])).cuda()
                        refs[name, size] = build_runner(model, "eager", "fp32")(inputs[name, size]).float()
                    x = inputs[name, size]
                    run = build_runner(model, variant, precision)
                    out = run(x).float()
                    ms = cuda_ms(run, x, reps=5 if ctx.quick else 10, warmup=2)
                except Exception as e:  # one broken variant must not hide the others
                    failures.append(f"{label}: {_line(e)}")
                    continue
                err = relative_l2(out, refs[name, size])
                ok = err <= GPU_TOLERANCE[precision]
                if not ok:
                    failures.append(f"{label}: rel. L2 {err:.1e}")
                part.rows.append({"model": name, "variant": variant, "precision": precision, "size": size,
                                  "ms/frame": round(ms, 3), "fps": round(1000 / ms, 1), "rel_l2": f"{err:.1e}",
                                  "ok": ok, "prepare_s": round(time.monotonic() - t0, 1)})  # fmt: skip
    part.reason = f"{len(part.rows)} measurements"
    if skipped:
        part.reason += f"; {len(skipped)} skipped for the time budget (first: {skipped[0]})"
    if failures:
        part.status, part.reason = FAILED, f"{len(failures)} failed, first: {failures[0]}; " + part.reason
    return part


def _line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


# ----------------------------------------------------------------------------------------------------
# Part 4: the whole pipeline


def make_clip(path: Path, frames: int, width: int = 1920, height: int = 1080) -> None:
    """A synthetic H.264 clip (PyAV, libx264 ultrafast)."""
    import av

    from cyclestream.engine.media.synthetic import synthetic_frame

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(synthetic_frame(i, width, height), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def translate_clip(clip: Path, out: Path, codec: str, timeout: float) -> tuple[float | None, str]:
    """``cyclestream translate`` (eager, CUDA, fp16) in a clean process; (its frames/s or None, why not)."""
    cmd = [sys.executable, "-m", "cyclestream", "translate", str(clip), str(out),
           "--backend", "eager", "--device", "cuda", "--precision", "fp16", "--codec", codec]  # fmt: skip
    proc = subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False)
    fps = re.search(r"([\d.]+) frames/s", proc.stdout)
    if proc.returncode == 0 and fps:
        return float(fps.group(1)), ""
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return None, f"exit {proc.returncode}: {tail[0]}"


def part_pipeline(ctx: Context) -> Part:
    """Decode → translate → encode of a generated 1080p clip.  x264 must work; NVENC is reported, and a
    PyAV build or machine without it is a skip (NVDEC decoding is not attempted)."""
    if not ctx.cuda:
        return Part("pipeline", SKIPPED, "no CUDA device")
    if importlib.util.find_spec("av") is None:
        return Part("pipeline", SKIPPED, "PyAV is not installed (bring its wheel)")
    import av

    frames = 60 if ctx.quick else 150
    clip = ctx.out / "clip_1080p.mp4"
    make_clip(clip, frames)
    part, notes = Part("pipeline", PASSED), ["NVDEC decode not attempted"]
    for codec in ("libx264", "h264_nvenc"):
        row: dict[str, Any] = {"codec": codec, "frames": frames}
        if codec not in av.codecs_available:
            row["status"] = f"skipped: {codec} is not in this PyAV build"
        elif ctx.left() < 60:
            row["status"] = "skipped: time budget"
        else:
            t0 = time.monotonic()
            fps, why = translate_clip(clip, ctx.out / f"out_{codec}.mp4", codec, ctx.left())
            row |= {"fps": fps, "wall_s": round(time.monotonic() - t0, 1), "status": "passed" if fps else why}
            if fps is None and codec == "libx264":
                part.status = FAILED
            elif fps is None:
                row["status"] = f"skipped: NVENC did not run here ({why})"
        part.rows.append(row)
        notes.append(f"{codec}: {row['status']}")
    part.reason = "; ".join(notes)
    return part


# ----------------------------------------------------------------------------------------------------
# Part 5: TensorRT


def part_tensorrt(ctx: Context) -> Part:
    if not ctx.cuda:
        return Part("tensorrt", SKIPPED, "no CUDA device")
    if importlib.util.find_spec("tensorrt") is None:
        return Part("tensorrt", SKIPPED, "tensorrt is not installed")
    import tempfile

    from cyclestream.engine.backends import FrameShape
    from cyclestream.engine.backends.tensorrt import TensorRTBackend, variant_unavailable
    from cyclestream.engine.errors import CycleStreamError

    model = random_model(GeneratorSpec())
    part, failures = Part("tensorrt", PASSED), []
    with tempfile.TemporaryDirectory(prefix="cyclestream-trt-") as cache:
        for variant in ("aot", "native", "plugins"):
            if reason := variant_unavailable(variant):
                part.rows.append({"variant": variant, "status": f"skipped: {reason}"})
                continue
            for precision in ("fp16", "fp32"):
                for size in ("256²",) if ctx.quick else ("256²", "720p"):
                    if ctx.left() < 60:
                        part.rows.append({"variant": variant, "precision": precision, "size": size,
                                          "status": "skipped: time budget"})  # fmt: skip
                        continue
                    h, w = SIZES[size]
                    x = model_input(model, sample_frames(1, h, w))
                    try:
                        backend = TensorRTBackend("cuda", Path(cache), variants=(variant,))
                        backend.prepare(model, FrameShape(1, h, w), precision)  # type: ignore[arg-type]
                        out = backend.infer(x).float()
                        ms = cuda_ms(backend.infer, x, reps=10, warmup=2)
                        backend.close()
                    except (CycleStreamError, RuntimeError) as e:
                        failures.append(f"{variant} {precision} {size}: {_line(e)}")
                        continue
                    ref = build_runner(model, "eager", "fp32")(x.cuda()).float()
                    err = relative_l2(out, ref)
                    ok = err <= GPU_TOLERANCE[precision]
                    if not ok:
                        failures.append(f"{variant} {precision} {size}: rel. L2 {err:.1e}")
                    part.rows.append({"variant": variant, "precision": precision, "size": size,
                                      "ms/frame": round(ms, 3), "rel_l2": f"{err:.1e}", "ok": ok})  # fmt: skip
        failures += _stargan_rows(ctx, part, Path(cache))
    if failures:
        part.status, part.reason = FAILED, f"{len(failures)} failed, first: {failures[0]}"
    return part


def _stargan_rows(ctx: Context, part: Part, cache: Path) -> list[str]:
    """A StarGAN engine per variant, its label an input: two targets through one engine, each against eager."""
    from cyclestream.engine.backends import FrameShape
    from cyclestream.engine.backends.tensorrt import TensorRTBackend, variant_unavailable
    from cyclestream.engine.checkpoint import LoadedModel
    from cyclestream.engine.errors import CycleStreamError
    from cyclestream.engine.models import build_generator
    from cyclestream.engine.models.stargan import StarGANSpec

    spec = StarGANSpec(c_dim=3)
    torch.manual_seed(0)
    model = LoadedModel(generator=build_generator(spec).eval(), spec=spec, path=Path("stargan (random)"),
                        format="cyclestream")  # fmt: skip
    h, w = SIZES["256²"]
    x = model_input(model, sample_frames(1, h, w))
    failures = []
    for variant in ("aot", "native", "plugins"):
        if variant_unavailable(variant) or ctx.left() < 60:
            continue
        errors = []
        try:
            backend = TensorRTBackend("cuda", cache, variants=(variant,))
            backend.conditioning = (torch.tensor([[1.0, 0.0, 0.0]]),)
            backend.prepare(model, FrameShape(1, h, w), "fp32")
            for label in ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0]):
                backend.conditioning = (torch.tensor([label]),)
                out = backend.infer(x).float()
                with torch.no_grad():
                    ref = model.generator.cuda()(x.cuda(), backend.conditioning[0].cuda()).float()
                errors.append(relative_l2(out, ref))
            backend.close()
        except (CycleStreamError, RuntimeError) as e:
            failures.append(f"stargan {variant}: {_line(e)}")
            continue
        ok = max(errors) <= GPU_TOLERANCE["fp32"]
        if not ok:
            failures.append(f"stargan {variant}: rel. L2 {max(errors):.1e}")
        part.rows.append({"variant": f"{variant} (stargan, label input)", "precision": "fp32", "size": "256²",
                          "rel_l2": f"{max(errors):.1e}", "ok": ok})  # fmt: skip
    return failures


# ----------------------------------------------------------------------------------------------------
# Report

PARTS: list[Callable[[Context], Part]] = [part_kernels, part_aot, part_generator, part_pipeline, part_tensorrt]


def markdown(env: dict[str, Any], parts: list[Part]) -> str:
    lines = [f"gpu_check, {env['date']}, {env['device']}, torch {env['torch']}, triton {env['triton']}", "",
             "| part | status | seconds | reason |", "| --- | --- | ---: | --- |"]  # fmt: skip
    lines += [f"| {p.name} | {p.status} | {p.seconds:.0f} | {p.reason} |" for p in parts]
    for p in parts:
        if p.rows:
            keys = list(dict.fromkeys(k for row in p.rows for k in row))
            lines += ["", f"**{p.name}**", "", "| " + " | ".join(keys) + " |", "|" + " --- |" * len(keys)]
            lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in p.rows]
    return "\n".join(lines) + "\n"


def run_parts(ctx: Context) -> list[Part]:
    parts = []
    start_cmake(ctx)
    for make in PARTS:
        t0 = time.monotonic()
        try:
            part = make(ctx)
        except Exception as e:  # a crash in one part is that part's failure, the others still run
            part = Part(make.__name__.removeprefix("part_"), FAILED, _line(e))
        part.seconds = time.monotonic() - t0
        print(f"gpu_check: {part.name}: {part.status}: {part.reason} ({part.seconds:.0f} s)", flush=True)
        parts.append(part)
    return parts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.md and builds")
    p.add_argument("--quick", action="store_true", help="fewer shapes, sizes and variants")
    p.add_argument("--budget", type=float, help="seconds before the remaining work is skipped (default 420, quick 240)")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    budget = args.budget if args.budget is not None else (240.0 if args.quick else 420.0)
    ctx = Context(args.out, args.quick, time.monotonic() + budget, torch.cuda.is_available(), budget / 4)
    env = environment()
    print(" · ".join(f"{k} {v}" for k, v in env.items()), flush=True)
    parts = run_parts(ctx)
    (args.out / "gpu_check.json").write_text(
        json.dumps({"environment": env, "quick": args.quick, "parts": [dataclasses.asdict(p) for p in parts]}, indent=1)
    )
    table = markdown(env, parts)
    (args.out / "gpu_check.md").write_text(table)
    print(table)
    failed = [p.name for p in parts if p.status == FAILED]
    print(f"gpu_check: FAILED: {', '.join(failed)}" if failed else "gpu_check: no part failed")
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.pop("TRITON_INTERPRET", None)  # this process runs Triton on the GPU (eager+kernels)
    sys.exit(main())
