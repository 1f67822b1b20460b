"""How much work a generator does per frame, and how much this machine can do per second.

MACs are counted from the graph itself (forward hooks on every convolution), bytes as the minimum a
frame must move (uint8 frame in and out, plus the weights once per batch); the peaks are measured
here: a large matmul (fp32, and bf16 where the CPU has bf16 instructions) and a large copy, in a few
seconds at most on any CPU, and kept per machine in the cache folder so later runs read them back.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cyclestream.engine.backends.tensors import padded_size

log = logging.getLogger("cyclestream")

PEAK_BUDGET_S = 3.0  # the most the peak measurements take (each is cut short once it is used up)


def count_macs(generator: nn.Module, height: int, width: int, multiple: int) -> int:
    """Multiply-accumulates of one forward pass on one frame padded to ``multiple``."""
    h, w = padded_size(height, width, multiple)
    total = 0

    def conv_hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d | nn.ConvTranspose2d)
        kh, kw = module.kernel_size
        per_output = module.in_channels // module.groups * kh * kw
        if isinstance(module, nn.ConvTranspose2d):  # every input element meets every kernel tap once
            total += inputs[0].numel() * module.out_channels // module.groups * kh * kw
        else:
            total += output.numel() * per_output

    hooks = [
        m.register_forward_hook(conv_hook) for m in generator.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)
    ]
    try:
        with torch.inference_mode():
            generator(torch.zeros(1, 3, h, w, device=next(generator.parameters()).device))
    finally:
        for hook in hooks:
            hook.remove()
    return total


def min_bytes_per_frame(generator: nn.Module, height: int, width: int, *, batch: int, weight_bytes: int = 4) -> float:
    """Frame in and out as uint8, weights read once per batch."""
    weights = sum(p.numel() for p in generator.parameters()) * weight_bytes
    return 2 * 3 * height * width + weights / batch


@dataclass(frozen=True)
class Peaks:
    fp32_gflops: float
    bf16_gflops: float
    copy_gbps: float


def _best_seconds(fn: object, repeats: int = 5, deadline: float | None = None) -> float:
    """The fastest of ``repeats`` calls (at least one; fewer once ``deadline`` has passed)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
        if deadline is not None and time.perf_counter() > deadline:
            break
    return best


def _conv_gflops(dtype: torch.dtype, side: int, deadline: float | None = None) -> float:
    """A 256-channel 3x3 convolution, the generator's own hot loop (oneDNN often beats sgemm here)."""
    conv = nn.Conv2d(256, 256, 3, padding=1, bias=False).to(dtype=dtype, memory_format=torch.channels_last)
    x = torch.randn(1, 256, side, side, dtype=dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        conv(x)
        seconds = _best_seconds(lambda: conv(x), deadline=deadline)
    return 2 * 256 * 256 * 9 * side * side / seconds / 1e9


def _matmul_gflops(dtype: torch.dtype, n: int, deadline: float) -> float:
    """A square matmul as large as ``n`` or as one call of under a tenth of a second allows."""
    side = 256
    while True:
        a, b = torch.randn(side, side, dtype=dtype), torch.randn(side, side, dtype=dtype)
        a.mm(b)
        seconds = _best_seconds(lambda: a.mm(b), deadline=deadline)  # noqa: B023 - called at once
        if side >= n or seconds > 0.1 or time.perf_counter() > deadline:
            return 2 * side**3 / seconds / 1e9
        side *= 2


def _peaks_file(n: int, copy_mb: int) -> Path:
    from cyclestream.engine.backends.cache import default_cache_dir, key_digest
    from cyclestream.engine.machine import cpu_flags, cpu_model

    key = {"cpu": cpu_model(), "flags": sorted(cpu_flags()), "threads": torch.get_num_threads(),
           "torch": torch.__version__, "n": n, "copy_mb": copy_mb}
    return default_cache_dir() / "peaks" / f"{key_digest(key)}.json"


def measure_peaks(n: int = 2048, copy_mb: int = 256, *, budget: float = PEAK_BUDGET_S, cached: bool = True) -> Peaks:
    """This machine's compute peak (the best of a large matmul and a large 3x3 convolution, in fp32, and in
    bf16 where the CPU has bf16 instructions — where it has none, bf16 is emulated and its "peak" is the
    fp32 one) and copy bandwidth, best of a few runs each, within ``budget`` seconds; read back from the
    cache when this machine measured them before."""
    from cyclestream.engine.machine import cpu_has_bf16

    path = _peaks_file(n, copy_mb)
    if cached:
        try:
            return Peaks(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            pass  # not measured here yet, or damaged: measure again
    deadline = time.perf_counter() + budget
    side = 64 if n >= 2048 else 32
    fp32 = max(_matmul_gflops(torch.float32, n, deadline), _conv_gflops(torch.float32, side, deadline))
    if cpu_has_bf16():
        bf16 = max(_matmul_gflops(torch.bfloat16, n, deadline), _conv_gflops(torch.bfloat16, side, deadline))
    else:
        bf16 = fp32
    src = torch.empty(copy_mb * 2**20 // 4)
    dst = torch.empty_like(src)
    dst.copy_(src)
    copy = 2 * src.numel() * 4 / _best_seconds(lambda: dst.copy_(src), deadline=deadline) / 1e9  # read + write
    peaks = Peaks(round(fp32, 1), round(bf16, 1), round(copy, 1))
    if cached:
        _store(path, peaks)
    return peaks


def _store(path: Path, peaks: Peaks) -> None:
    from cyclestream.engine.atomic import atomic_output
    from cyclestream.engine.backends.cache import private_folder

    try:
        private_folder(path.parent)
        with atomic_output(path) as tmp:
            tmp.write_text(json.dumps(dataclasses.asdict(peaks)))
    except (OSError, ValueError) as e:  # a read-only or foreign cache: measured again next time
        log.debug("peaks not cached at %s: %s", path, e)
