"""The ahead-of-time kernels through the C launcher on a real CUDA device, against the Triton JIT.

``python -m cyclestream.kernels.aot_check --library build/libcyclestream_instance_norm.so --json PATH``
loads the kernel library that ``cmake`` built (launcher + images for this GPU) with ctypes, runs
``cs_instance_norm_enqueue`` on CUDA tensors (fp32/fp16, every epilogue, NCHW; aligned and deliberately
misaligned pointers so that both image sets run), compares each output with the Triton JIT result of
``instance_norm_triton``, and times the launcher at the trunk shapes (GB/s next to a copy).  Writes the
same JSON verdict as ``cuda_check``; run it through ``cuda_check.run_clean``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from cyclestream.kernels.cuda_check import SHAPES, TOLERANCE, interpreter_env, random_rows
from cyclestream.kernels.timing import cuda_ms

DTYPES = {"fp32": (torch.float32, 0), "fp16": (torch.float16, 1)}  # torch dtype, cs_dtype
CHECKED = ("1x1 rows", "odd 33x47", "256² trunk", "1080p trunk")
TIMED = ("256² trunk", "1080p trunk")


class Desc(ctypes.Structure):
    _fields_ = [("n", ctypes.c_int64), ("c", ctypes.c_int64), ("hw", ctypes.c_int64), ("dtype", ctypes.c_int),
                ("act", ctypes.c_int), ("has_skip", ctypes.c_int), ("eps", ctypes.c_float)]  # fmt: skip


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    lib.cs_instance_norm_workspace_size.restype = ctypes.c_size_t
    lib.cs_instance_norm_workspace_size.argtypes = [ctypes.POINTER(Desc)]
    lib.cs_instance_norm_enqueue.restype = ctypes.c_int
    lib.cs_instance_norm_enqueue.argtypes = [ctypes.POINTER(Desc), *([ctypes.c_uint64] * 4), ctypes.c_void_p]
    lib.cs_instance_norm_last_error.restype = ctypes.c_char_p
    return lib


def _shifted(x: torch.Tensor, shift: int) -> torch.Tensor:
    """A copy of ``x`` whose data starts ``shift`` elements into a larger buffer (misaligned when > 0)."""
    flat = torch.empty(x.numel() + shift, dtype=x.dtype, device=x.device)
    view = flat[shift:].view(x.shape)
    view.copy_(x)
    return view


@dataclass
class Launch:
    """Everything one ``cs_instance_norm_enqueue`` call takes, allocated once so that timing sees only it."""

    desc: Desc
    x: torch.Tensor
    skip: torch.Tensor | None
    out: torch.Tensor
    workspace: torch.Tensor


def prepare(lib: ctypes.CDLL, x: torch.Tensor, act: int, skip: torch.Tensor | None, shift: int = 0) -> Launch:
    """Buffers for ``skip + act(IN(x))``; ``shift`` > 0 misaligns every tensor pointer."""
    n, c, h, w = x.shape
    desc = Desc(n, c, h * w, 1 if x.dtype == torch.float16 else 0, act, int(skip is not None), 1e-5)
    size = lib.cs_instance_norm_workspace_size(ctypes.byref(desc))
    workspace = torch.empty(size, dtype=torch.uint8, device="cuda")
    out = _shifted(torch.empty_like(x), shift)
    return Launch(desc, _shifted(x, shift), None if skip is None else _shifted(skip, shift), out, workspace)


def enqueue(lib: ctypes.CDLL, b: Launch) -> torch.Tensor:
    """Launch the C launcher's three kernels on the current stream; ``b.out``."""
    skip = b.skip.data_ptr() if b.skip is not None else 0
    stream = torch.cuda.current_stream().cuda_stream
    rc = lib.cs_instance_norm_enqueue(ctypes.byref(b.desc), b.x.data_ptr(), skip, b.out.data_ptr(),
                                      b.workspace.data_ptr(), stream)  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"cs_instance_norm_enqueue: {rc}: {lib.cs_instance_norm_last_error().decode()}")
    return b.out


def jit(x: torch.Tensor, act: int, skip: torch.Tensor | None) -> torch.Tensor:
    from cyclestream.kernels import instance_norm_triton

    return instance_norm_triton.normalize(x, 1e-5, "relu" if act else "none", skip)[0]


def check(lib: ctypes.CDLL) -> list[dict[str, object]]:
    cases: list[dict[str, object]] = []
    for label in CHECKED:
        for dname, (dtype, _) in DTYPES.items():
            x = random_rows(SHAPES[label], dtype, False)
            skip = random_rows(SHAPES[label], dtype, False, seed=1)
            for act, has_skip in ((0, False), (1, False), (0, True), (1, True)):
                for shift in (0, 1):
                    s = skip if has_skip else None
                    out, ref = enqueue(lib, prepare(lib, x, act, s, shift)).float(), jit(x, act, s).float()
                    err = float((out - ref).abs().max())
                    tol = TOLERANCE[dname]
                    ok = bool((out - ref).abs().le(tol + tol * ref.abs()).all())
                    cases.append({"shape": label, "dtype": dname, "act": act, "skip": has_skip,
                                  "aligned": shift == 0, "max_abs_err": err, "ok": ok})  # fmt: skip
    return cases


def bandwidth(lib: ctypes.CDLL) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for label in TIMED:
        for dname, (dtype, _) in DTYPES.items():
            x = random_rows(SHAPES[label], dtype, False)
            y = torch.empty_like(x)
            nbytes = x.numel() * x.element_size()
            row: dict[str, object] = {
                "shape": label,
                "dtype": dname,
                "copy_gbps": 2 * nbytes / cuda_ms(y.copy_, x) / 1e6,
            }
            for shift in (0, 1):
                launch = prepare(lib, x, 1, None, shift)
                ms = cuda_ms(enqueue, lib, launch)
                row[f"aot_{'aligned' if shift == 0 else 'unaligned'}_gbps"] = 2 * nbytes / ms / 1e6
            row["jit_gbps"] = 2 * nbytes / cuda_ms(jit, x, 1, None) / 1e6
            rows.append(row)
    return rows


def run(library: Path) -> dict[str, object]:
    if interpreter_env():
        return {"status": "failed", "reason": "TRITON_INTERPRET is set: run this in a clean process (run_clean)"}
    if not torch.cuda.is_available():
        return {"status": "skipped", "reason": "no CUDA device"}
    if not library.exists():
        return {"status": "skipped", "reason": f"{library} was not built"}
    lib = load(library)
    torch.zeros(1, device="cuda")  # make the primary context current for the driver calls
    cases = check(lib)
    bad = [c for c in cases if not c["ok"]]
    reason = f"{len(cases) - len(bad)}/{len(cases)} launcher outputs match the JIT"
    if bad:
        reason += f"; first failure: {bad[0]}"
    return {"status": "failed" if bad else "passed", "reason": reason, "cases": cases,
            "bandwidth": [] if bad else bandwidth(lib)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cyclestream.kernels.aot_check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--library", type=Path, required=True, help="libcyclestream_instance_norm.so from cmake")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--quick", action="store_true", help="accepted for symmetry with cuda_check")
    args = parser.parse_args(argv)
    result = run(args.library)
    args.json.write_text(json.dumps(result, indent=1))
    print(f"aot_check: {result['status']}: {result['reason']}")
    return 1 if result["status"] == "failed" else 0


if __name__ == "__main__":
    raise SystemExit(main())
