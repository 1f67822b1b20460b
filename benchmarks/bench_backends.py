"""CPU backends against eager fp32: throughput and relative L2 error (pytest-benchmark suite and a table).

    python benchmarks/bench_backends.py                         # table: official 9-block, 256², batch 1
    python benchmarks/bench_backends.py --size 512 --batch 2 --rounds 7
    python -m pytest benchmarks/bench_backends.py --benchmark-only   # the same runs under pytest-benchmark

Weights are the official random init (N(0, 0.02)); frames come from the bundled demo clip.  Backends
are timed interleaved (one round of each, repeated) so that load from other processes spreads over
all of them; the table reports medians.  The error is measured on the float output, before uint8.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch

from cyclestream.engine.backends import Backend, FrameShape, create_backend
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.verify import (
    backend_output,
    eager_output,
    model_input,
    random_model,
    relative_l2,
    sample_frames,
)
from cyclestream.engine.measure import time_calls
from cyclestream.engine.models import GeneratorSpec

CONFIGS: list[tuple[str, str]] = [
    ("eager", "fp32"),
    ("eager", "bf16"),
    ("onnxruntime", "fp32"),
    ("openvino", "fp32"),
    ("openvino", "bf16"),
    ("compile", "fp32"),
    ("compile", "bf16"),
]


@dataclass
class Row:
    backend: str
    precision: str
    prepare_s: float = 0.0
    images_per_s: float = 0.0
    rel_l2: float = float("nan")
    note: str = ""


def _own_copy(model: LoadedModel) -> LoadedModel:
    """Each backend gets its own generator (eager and compile change memory formats in place)."""
    return dataclasses.replace(model, generator=copy.deepcopy(model.generator))


def measure(
    configs: list[tuple[str, str]],
    spec: GeneratorSpec,
    height: int,
    width: int,
    batch: int = 1,
    rounds: int = 5,
    runs: int = 2,
    say: Callable[[str], None] = print,
) -> list[Row]:
    """Prepare every backend, check it against eager fp32, then time them interleaved."""
    model = random_model(spec)
    frames = sample_frames(batch, height, width)
    x = model_input(model, frames)
    reference = eager_output(model, x)
    rows: list[Row] = []
    live: list[tuple[Row, Backend]] = []
    for name, precision in configs:
        row = Row(name, precision)
        rows.append(row)
        try:
            backend = create_backend(name, "cpu")
            mine = _own_copy(model)
            t0 = time.perf_counter()
            backend.prepare(mine, FrameShape(batch, height, width), precision)  # type: ignore[arg-type]
            row.prepare_s = time.perf_counter() - t0
            row.rel_l2 = relative_l2(backend_output(backend, mine, x), reference)
        except CycleStreamError as e:
            row.note = f"skipped: {e}"
            say(f"{name} {precision}: {row.note}")
            continue
        live.append((row, backend))
        say(f"{name} {precision}: prepared in {row.prepare_s:.1f} s, rel. L2 {row.rel_l2:.2e}")
    times: dict[int, list[float]] = {id(row): [] for row, _ in live}
    for r in range(rounds):
        for row, backend in live:
            # one untimed call settles caches after switching backends
            times[id(row)] += time_calls(lambda b=backend: b.run(frames), warmup=1, repeats=runs)
        say(f"round {r + 1}/{rounds} done")
    for row, backend in live:
        row.images_per_s = batch / statistics.median(times[id(row)])
        backend.close()
    return rows


def format_table(rows: list[Row]) -> str:
    base = next((r.images_per_s for r in rows if (r.backend, r.precision) == ("eager", "fp32")), 0.0)
    lines = [
        "| backend | precision | images/s | × eager fp32 | rel. L2 vs eager fp32 | prepare s | note |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        speedup = f"{r.images_per_s / base:.2f}" if base and r.images_per_s else ""
        ips = f"{r.images_per_s:.2f}" if r.images_per_s else ""
        err = f"{r.rel_l2:.1e}" if r.rel_l2 == r.rel_l2 else ""
        lines.append(f"| {r.backend} | {r.precision} | {ips} | {speedup} | {err} | {r.prepare_s:.1f} | {r.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=256, help="square frame side (default 256)")
    p.add_argument("--height", type=int, help="frame height (overrides --size)")
    p.add_argument("--width", type=int, help="frame width (overrides --size)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--ngf", type=int, default=64)
    p.add_argument("--blocks", type=int, default=9)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--runs", type=int, default=2, help="runs per backend per round")
    p.add_argument("--only", nargs="*", help="backend[:precision] to run, e.g. openvino:bf16 eager")
    p.add_argument("--threads", type=int, help="intra-op threads for every backend (default: torch's)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = CONFIGS
    if args.only:
        wanted = [tuple(o.split(":")) if ":" in o else (o, None) for o in args.only]
        configs = [c for c in CONFIGS if any(c[0] == b and p in (None, c[1]) for b, p in wanted)]
    spec = GeneratorSpec(ngf=args.ngf, n_blocks=args.blocks)
    h, w = args.height or args.size, args.width or args.size
    print(f"{spec.official_name} ngf={spec.ngf}, {w}x{h}, batch {args.batch}, {torch.get_num_threads()} threads")
    rows = measure(configs, spec, h, w, args.batch, args.rounds, args.runs)
    print(format_table(rows))
    return 0


# ----------------------------------------------------------------------------- pytest-benchmark

BENCH_SPEC = GeneratorSpec(ngf=64, n_blocks=9)
BENCH_SIZE = 256


@pytest.fixture(scope="module")
def bench_model() -> LoadedModel:
    return random_model(BENCH_SPEC)


@pytest.mark.parametrize(("name", "precision"), CONFIGS, ids=[f"{n}-{p}" for n, p in CONFIGS])
def test_backend_throughput(benchmark: object, bench_model: LoadedModel, name: str, precision: str) -> None:
    frames = sample_frames(1, BENCH_SIZE, BENCH_SIZE)
    try:
        backend = create_backend(name, "cpu")
        backend.prepare(_own_copy(bench_model), FrameShape(1, BENCH_SIZE, BENCH_SIZE), precision)  # type: ignore[arg-type]
    except CycleStreamError as e:
        pytest.skip(str(e))
    benchmark.pedantic(backend.run, args=(frames,), rounds=5, warmup_rounds=1)  # type: ignore[attr-defined]
    backend.close()


if __name__ == "__main__":
    sys.exit(main())
