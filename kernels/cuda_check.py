"""The Triton kernels on a real CUDA device (never the interpreter) against the PyTorch references.

``python -m cyclestream.kernels.cuda_check --json PATH [--quick]`` checks every fused op (IN, IN+ReLU,
IN + skip) in fp32/fp16/bf16, NCHW and channels_last, on shapes from 1×1 rows to the 1080p trunk,
then times the ops at the trunk shapes and reports achieved GB/s next to a device-to-device copy
measured in the same run.  It writes one JSON document: ``{"status": "passed" | "failed" |
"skipped", "reason", "cases", "bandwidth"}`` and exits 0 unless a case failed.

Run it in a process of its own, through ``run_clean``: Triton decides at import whether its kernels
are interpreted, so a ``TRITON_INTERPRET=1`` inherited from a test session would silently turn the
check into a CPU-interpreter run; this module refuses to start with it set.  ``benchmarks/gpu_check.py``
(part 1) and ``tests/kernels/test_cuda_kernels.py`` (marked ``gpu``) both go through here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from cyclestream.kernels.timing import cuda_ms

# (label, shape): rows of one element, odd sizes, the single-pass limit, and the generator's trunks
# (256 channels at H/4 × W/4) for 256², 512², 720p and 1080p frames.
SHAPES: dict[str, tuple[int, int, int, int]] = {
    "1x1 rows": (2, 8, 1, 1),
    "odd 7x13": (1, 3, 7, 13),
    "odd 33x47": (2, 64, 33, 47),
    "256² trunk": (1, 256, 64, 64),
    "512² trunk": (1, 256, 128, 128),
    "720p trunk": (1, 256, 180, 320),
    "1080p trunk": (1, 256, 270, 480),
}
QUICK_SHAPES = ("1x1 rows", "odd 33x47", "256² trunk", "1080p trunk")
TIMED_SHAPES = ("256² trunk", "720p trunk", "1080p trunk")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
OPS = ("in", "in+relu", "in+skip")
# assert_close-style bounds |out - ref| ≤ atol + rtol·|ref|: statistics in fp32 on the device may sum in
# another order than ATen's var_mean, and fp16/bf16 outputs may round one ulp the other way.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "bf16": 2e-2}


@dataclass
class Case:
    shape: str
    dtype: str
    layout: str
    op: str
    max_abs_err: float
    ok: bool


def interpreter_env() -> bool:
    """True when ``TRITON_INTERPRET`` asks for Triton's CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() not in ("", "0", "false", "no", "off")


def clean_env() -> dict[str, str]:
    """This process's environment without ``TRITON_INTERPRET``: for the GPU check's own process."""
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def run_clean(module: str, args: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` in a fresh process with ``clean_env()`` (interpreter off)."""
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, env=clean_env(), capture_output=True, text=True, timeout=timeout, check=False)


def random_rows(
    shape: tuple[int, int, int, int], dtype: torch.dtype, channels_last: bool, seed: int = 0
) -> torch.Tensor:
    """CUDA activations whose every (n, c) row has its own mean and spread (as the CPU tests use)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    n, c = shape[:2]
    scale = 0.5 + 3 * torch.rand(n, c, 1, 1, generator=g, device="cuda")
    offset = 4 * torch.randn(n, c, 1, 1, generator=g, device="cuda")
    x = (torch.randn(shape, generator=g, device="cuda") * scale + offset).to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _ops(skip: torch.Tensor) -> dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], ...]]:
    """op → (kernel, reference) on an input ``x``."""
    from cyclestream import kernels as k

    return {
        "in": (lambda x: k.instance_norm_act(x, impl="triton"), lambda x: k.instance_norm_act_reference(x)),
        "in+relu": (
            lambda x: k.instance_norm_act(x, "relu", impl="triton"),
            lambda x: k.instance_norm_act_reference(x, "relu"),
        ),
        "in+skip": (
            lambda x: k.instance_norm_residual(x, skip, impl="triton"),
            lambda x: k.instance_norm_residual_reference(x, skip),
        ),
    }


def check_cases(shapes: Sequence[str]) -> list[Case]:
    """Every shape × dtype × layout × op against its reference (TF32 plays no part: no matmul)."""
    cases = []
    for label in shapes:
        for dname, dtype in DTYPES.items():
            for layout in ("nchw", "channels_last"):
                x = random_rows(SHAPES[label], dtype, layout == "channels_last")
                skip = random_rows(SHAPES[label], dtype, layout == "channels_last", seed=1)
                for op, (kernel, reference) in _ops(skip).items():
                    out = kernel(x)
                    ref = reference(x)
                    err = (out.float() - ref.float()).abs()
                    tol = TOLERANCE[dname]
                    ok = bool(torch.isfinite(out).all()) and bool((err <= tol + tol * ref.float().abs()).all())
                    ok = ok and out.is_contiguous(memory_format=x.suggest_memory_format())
                    cases.append(Case(label, dname, layout, op, float(err.max()), ok))
    return cases


def bandwidth(shapes: Sequence[str], dtypes: Sequence[str] = ("fp16", "fp32")) -> list[dict[str, object]]:
    """Achieved GB/s of each fused op (minimum traffic: read x [+ skip], write out) vs ``copy_``."""
    rows: list[dict[str, object]] = []
    for label in shapes:
        for dname in dtypes:
            for layout in ("nchw", "channels_last"):
                x = random_rows(SHAPES[label], DTYPES[dname], layout == "channels_last")
                skip = torch.empty_like(x).copy_(x)
                nbytes = x.numel() * x.element_size()
                copy_ms = cuda_ms(skip.copy_, x)
                row: dict[str, object] = {"shape": label, "dtype": dname, "layout": layout,
                                          "copy_gbps": 2 * nbytes / copy_ms / 1e6}  # fmt: skip
                for op, (kernel, _) in _ops(skip).items():
                    ms = cuda_ms(kernel, x)
                    row[f"{op}_gbps"] = (3 if op == "in+skip" else 2) * nbytes / ms / 1e6
                    row[f"{op}_ms"] = ms
                rows.append(row)
    return rows


def run(quick: bool) -> dict[str, object]:
    """The whole check as a JSON-able dict."""
    if interpreter_env():
        return {"status": "failed", "reason": "TRITON_INTERPRET is set: run this in a clean process (run_clean)"}
    if not torch.cuda.is_available():
        return {"status": "skipped", "reason": "no CUDA device"}
    from cyclestream.kernels._dispatch import triton_installed

    if not triton_installed():
        return {"status": "skipped", "reason": "triton is not installed (pip install triton)"}
    cases = check_cases(QUICK_SHAPES if quick else tuple(SHAPES))
    bad = [c for c in cases if not c.ok]
    timed = bandwidth(("1080p trunk",) if quick else TIMED_SHAPES) if not bad else []
    reason = f"{len(cases) - len(bad)}/{len(cases)} cases within tolerance"
    if bad:
        reason += "; first failure: " + ", ".join(f"{k}={v}" for k, v in asdict(bad[0]).items())
    return {
        "status": "failed" if bad else "passed",
        "reason": reason,
        "device": torch.cuda.get_device_name(0),
        "cases": [asdict(c) for c in cases],
        "bandwidth": timed,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cyclestream.kernels.cuda_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--json", type=Path, required=True, help="where to write the result")
    parser.add_argument("--quick", action="store_true", help="fewer shapes, one timed shape")
    args = parser.parse_args(argv)
    result = run(args.quick)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"cuda_check: {result['status']}: {result['reason']}")
    return 1 if result["status"] == "failed" else 0


if __name__ == "__main__":
    raise SystemExit(main())
