"""One command for anyone with an NVIDIA GPU: build every GPU backend, check it, time it.

    python benchmarks/gpu_check.py            # official 9-block generator at 256², 512², 720p, 1080p
    python benchmarks/gpu_check.py --quick    # tiny generator, small frames (also runs on a CPU-only box)

What it does, in order:

1. reports the environment (torch, CUDA device, TensorRT, torch-tensorrt, Triton);
2. runs the kernel tests on the GPU (``pytest tests/kernels``);
3. builds the native side for this GPU's architecture (``cmake -S . -B build``: Triton AOT kernels
   and, with TensorRT headers found through ``TENSORRT_ROOT``, ``libcyclestream_trt_plugins.so``);
4. builds every GPU backend — eager fp32/fp16, eager fp16 with the fused Triton kernels,
   torch.compile fp16, TensorRT with the AOT plugin library (fp16, fp32), TensorRT with the Triton
   plugins through torch-tensorrt (fp16), plain TensorRT (fp16 and fp32) — and checks each against
   eager fp32 (TF32 off) by relative L2 error on real-ish frames;
5. prints a table of images/s per backend and frame size.

Without CUDA every GPU part is reported as skipped and only the CPU baseline runs, so the script
itself is tested on CPU machines (``--quick``).  Exit status 1 when a check or the kernel tests fail.
Engines are built into a temporary cache unless ``--cache-dir`` is given.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import importlib.metadata
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cyclestream.engine.backends import Backend, FrameShape, create_backend
from cyclestream.engine.backends.check import model_input, random_model, relative_l2, sample_frames
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.models import GeneratorSpec

ROOT = Path(__file__).resolve().parents[1]
FULL_SIZES = {"256²": (256, 256), "512²": (512, 512), "720p": (720, 1280), "1080p": (1080, 1920)}
QUICK_SIZES = {"64²": (64, 64), "96x128": (96, 128)}
# Relative L2 bounds against eager fp32 (TF32 off) on random N(0, 0.02) weights.  fp32 TensorRT and
# cuDNN may use TF32 convolutions (≈1e-3).
GPU_TOLERANCE = {"fp32": 5e-3, "fp16": 2e-2, "bf16": 3e-2}
SKIP_MARKERS = ("pip install", "libcyclestream_trt_plugins.so")  # a missing library or build: skipped, not failed


@dataclass
class Config:
    label: str
    precision: str
    make: Callable[[str, Path], Backend]
    fuse: bool = False  # swap in the fused Triton kernels before preparing
    gpu: bool = True


@dataclass
class Result:
    config: Config
    speeds: dict[str, float] = field(default_factory=dict)  # size label → images/s
    errors: dict[str, float] = field(default_factory=dict)
    status: str = "ok"


def _tensorrt(variant: str) -> Callable[[str, Path], Backend]:
    def make(device: str, cache: Path) -> Backend:
        from cyclestream.engine.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(device, cache, variants=(variant,))

    return make


def _named(name: str) -> Callable[[str, Path], Backend]:
    return lambda device, cache: create_backend(name, device)


def configs() -> list[Config]:
    return [
        Config("eager", "fp32", _named("eager"), gpu=False),  # the baseline; on the GPU when there is one
        Config("eager", "fp16", _named("eager")),
        Config("eager + Triton kernels", "fp16", _named("eager"), fuse=True),
        Config("compile (inductor)", "fp16", _named("compile")),
        Config("tensorrt (AOT plugin library)", "fp16", _tensorrt("aot")),
        Config("tensorrt (AOT plugin library)", "fp32", _tensorrt("aot")),
        Config("tensorrt (Triton plugins)", "fp16", _tensorrt("plugins")),
        Config("tensorrt (native IN)", "fp16", _tensorrt("native")),
        Config("tensorrt (native IN)", "fp32", _tensorrt("native")),
    ]


def environment() -> list[str]:
    lines = [f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        lines.append(f"CUDA device: {props.name} (sm_{props.major}{props.minor}), CUDA {torch.version.cuda}")
    else:
        lines.append("CUDA: not available — every GPU part below is skipped")
    for package in ("tensorrt", "torch-tensorrt", "triton", "onnxruntime", "openvino"):
        try:
            lines.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            lines.append(f"{package}: not installed")
    return lines


def kernel_tests(quick: bool) -> tuple[bool, str]:
    """``pytest tests/kernels`` on the GPU; (passed, summary line)."""
    if not torch.cuda.is_available():
        return True, "kernel tests: skipped (no CUDA device)"
    tests = ROOT / "tests" / "kernels"
    cmd = [sys.executable, "-m", "pytest", str(tests), "-q", "-p", "no:cacheprovider"]
    if quick:
        cmd += ["-m", "not slow"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    tail = [line for line in proc.stdout.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
    passed = proc.returncode in (0, 5)  # 5: no tests collected
    return passed, f"kernel tests (pytest tests/kernels): {'passed' if passed else 'FAILED'} — {tail[0]}"


def native_build() -> tuple[bool, str]:
    """``cmake`` configure + build into ``build/`` for this GPU; (ok, summary line)."""
    if not torch.cuda.is_available():
        return True, "native build: skipped (no CUDA device)"
    major, minor = torch.cuda.get_device_capability(0)
    build = ROOT / "build"
    steps = [
        ["cmake", "-S", str(ROOT), "-B", str(build), f"-DCYCLESTREAM_CUDA_ARCHS={major}{minor}",
         f"-DPython3_EXECUTABLE={sys.executable}"],
        ["cmake", "--build", str(build), "-j"],
    ]  # fmt: skip
    log = ""
    for cmd in steps:
        try:
            proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        except FileNotFoundError:
            return True, "native build: skipped (cmake is not installed)"
        log += proc.stdout
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            return False, f"native build: FAILED ({' '.join(cmd[:2])}): {tail[0]}"
    notes = [line.removeprefix("-- cyclestream: ") for line in log.splitlines() if "cyclestream: skipping" in line]
    library = build / "libcyclestream_trt_plugins.so"
    built = "TensorRT plugin library built" if library.exists() else "no plugin library"
    return True, f"native build (sm_{major}{minor}): {built}" + "".join(f"; {n}" for n in notes)


@torch.inference_mode()
def reference(model: LoadedModel, x: torch.Tensor, device: str) -> torch.Tensor:
    """Eager fp32 on ``device`` with TF32 off: what every backend is checked against."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        generator = copy.deepcopy(model.generator).to(device).float().eval()
        return generator(x.to(device)).float().cpu()
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def float_output(backend: Backend, model: LoadedModel, x: torch.Tensor, precision: str, device: str) -> torch.Tensor:
    """The backend's float output: ``infer`` where it has one, else the eager math it runs."""
    infer = getattr(backend, "infer", None)
    if infer is not None:
        with torch.inference_mode():
            return infer(x).float().cpu()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None):
        return model.generator.to(device)(x.to(device)).float().cpu()


def time_backend(backend: Backend, frames: torch.Tensor, seconds: float) -> float:
    """images/s: run until ``seconds`` have passed (at least 3 runs), median per-run time."""
    backend.run(frames)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        backend.run(frames)
        times.append(time.perf_counter() - t0)
    return frames.shape[0] / statistics.median(times)


def check_config(
    config: Config, model: LoadedModel, sizes: dict[str, tuple[int, int]], batch: int, device: str, cache: Path,
    seconds: float, say: Callable[[str], None],
) -> Result:  # fmt: skip
    result = Result(config)
    if config.gpu and device == "cpu":
        result.status = "skipped: no CUDA device"
        return result
    for label, (h, w) in sizes.items():
        mine = dataclasses.replace(model, generator=copy.deepcopy(model.generator))
        if config.fuse:
            from cyclestream.kernels import fuse_kernels

            fuse_kernels(mine.generator, "triton")
        frames = sample_frames(batch, h, w)
        x = model_input(mine, frames)
        try:
            backend = config.make(device, cache)
            t0 = time.perf_counter()
            backend.prepare(mine, FrameShape(batch, h, w), config.precision)  # type: ignore[arg-type]
            built = time.perf_counter() - t0
            out = float_output(backend, mine, x, config.precision, device)
        except Exception as e:  # a missing library is a skip; anything else is a failure to report
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            missing = isinstance(e, ImportError) or (
                isinstance(e, CycleStreamError) and any(m in reason for m in SKIP_MARKERS)
            )
            result.status = f"{'skipped' if missing else 'FAILED'}: {reason}"
            return result
        result.errors[label] = relative_l2(out, reference(model, x, device))
        result.speeds[label] = time_backend(backend, frames, seconds)
        backend.close()
        say(
            f"  {config.label} {config.precision} {label}: prepared in {built:.1f} s, "
            f"rel. L2 {result.errors[label]:.1e}, {result.speeds[label]:.2f} images/s"
        )
    worst = max(result.errors.values(), default=0.0)
    if worst > GPU_TOLERANCE.get(config.precision, 1e-3):
        result.status = f"FAILED: rel. L2 {worst:.1e} > {GPU_TOLERANCE[config.precision]:.0e}"
    return result


def table(results: list[Result], sizes: list[str]) -> str:
    head = "| backend | precision | " + " | ".join(f"{s} img/s" for s in sizes) + " | max rel. L2 | status |"
    lines = [head, "| --- | --- | " + " | ".join("---:" for _ in sizes) + " | ---: | --- |"]
    for r in results:
        cells = [f"{r.speeds[s]:.2f}" if s in r.speeds else "—" for s in sizes]
        err = f"{max(r.errors.values()):.1e}" if r.errors else "—"
        lines.append(f"| {r.config.label} | {r.config.precision} | " + " | ".join(cells) + f" | {err} | {r.status} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny generator and small frames, a few seconds per backend")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--seconds", type=float, help="timing per backend and size (default 3, quick 0.2)")
    p.add_argument("--cache-dir", type=Path, help="engine cache to build into (default: a temporary folder)")
    p.add_argument("--no-kernel-tests", action="store_true", help="skip pytest tests/kernels")
    p.add_argument("--no-native", action="store_true", help="skip the cmake build of the native plugin library")
    args = p.parse_args(argv)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = GeneratorSpec(ngf=8, n_blocks=2) if args.quick else GeneratorSpec()
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    seconds = args.seconds if args.seconds is not None else (0.2 if args.quick else 3.0)
    for line in environment():
        print(line)
    ok = True
    if not args.no_kernel_tests:
        passed, line = kernel_tests(args.quick)
        ok &= passed
        print(line)
    if not args.no_native:
        passed, line = native_build()
        ok &= passed
        print(line)
    print(f"backends: {spec.official_name} ngf={spec.ngf} (random N(0, 0.02) weights), batch {args.batch}, {device}")
    model = random_model(spec)
    with tempfile.TemporaryDirectory(prefix="cyclestream-gpu-check-") as tmp:
        cache = args.cache_dir or Path(tmp)
        results = [check_config(c, model, sizes, args.batch, device, cache, seconds, print) for c in configs()]
    print(table(results, list(sizes)))
    ok &= not any(r.status.startswith("FAILED") for r in results)
    print("gpu_check: all checks passed" if ok else "gpu_check: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
