"""Seconds per training iteration and peak memory of several model systems on the same data, side by side.

    python benchmarks/train_models.py --dataroot data/emoji_openmoji_twemoji --models cyclegan,cut,fastcut \
        --crop-size 96 --ngf 32 --n-blocks 6 --ndf 32 --modes eager-fp32,eager-bf16 --rounds 3 --threads 2

Each (round, model) is one ``cyclestream bench train`` measurement (every mode in a fresh process, the
median of its timed iterations), the models taken in turns within a round so that drift in the machine
falls on all of them; the table gives the median over rounds and each model's ratio to the first model
in the same mode.  The machine is named above the table.  Nothing is recorded for ``train --precision
auto`` (``record=False``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from cyclestream.engine.machine import describe_machine, one_line
from cyclestream.trainer.bench import bench_train
from cyclestream.trainer.bench_options import TrainBenchOptions, parse_mode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataroot", type=Path, required=True, help="trainA/ and trainB/ (every model reads them)")
    p.add_argument("--models", default="cyclegan,cut,fastcut", help="model systems; ratios are to the first")
    p.add_argument("--modes", default="eager-fp32", help="modes each model is timed in (bench train --modes)")
    p.add_argument("--crop-size", type=int, default=96)
    p.add_argument("--ngf", type=int, default=32)
    p.add_argument("--n-blocks", type=int, default=6)
    p.add_argument("--ndf", type=int, default=32)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    modes = tuple(parse_mode(m) for m in args.modes.split(","))
    seconds: dict[tuple[str, str], list[float]] = {}
    memory: dict[tuple[str, str], float] = {}
    for r in range(args.rounds):
        for model in models:
            report = bench_train(TrainBenchOptions(
                model=model, dataroot=args.dataroot, crop_size=args.crop_size, ngf=args.ngf, n_blocks=args.n_blocks,
                ndf=args.ndf, modes=modes, iterations=args.iterations, threads=args.threads, record=False,
                progress=False,
            ))
            for result in report.results:
                if result.speed.name not in modes:
                    continue
                key = (model, result.speed.name)
                seconds.setdefault(key, []).append(result.seconds)
                memory[key] = max(memory.get(key, 0.0), result.peak_rss_mb)
                print(f"round {r + 1}: {model} {result.speed.name}: {result.seconds:.3f} s/iteration, "
                      f"{result.peak_rss_mb:.0f} MiB", flush=True)
    print(f"\n{one_line(describe_machine())}; crop {args.crop_size}, ngf {args.ngf}, {args.n_blocks} blocks, "
          f"ndf {args.ndf}, batch 1, {args.threads or 'default'} threads, median of {args.rounds} rounds\n")
    print(f"| model | mode | s/iteration | × {models[0]} | peak RSS (MiB) |")
    print("|---|---|---:|---:|---:|")
    for mode in modes:
        base = statistics.median(seconds[(models[0], mode)])
        for model in models:
            s = statistics.median(seconds[(model, mode)])
            print(f"| {model} | {mode} | {s:.3f} | {s / base:.2f} | {memory[(model, mode)]:.0f} |")


if __name__ == "__main__":
    main()
