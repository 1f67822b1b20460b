"""Held-out translation quality of each training mode, over several seeds (a plain script, not a timing).

    python benchmarks/train_quality.py --out runs/train-quality                  # fp32 and bf16, 4 seeds each
    python benchmarks/train_quality.py --out runs/train-quality --seeds 3 --markdown

The set-up of ``tests/trainer/test_train_quality.py``: a twemoji → noto emoji dataset (32 px, 16 emoji, a
quarter held out as pairs), a tiny CycleGAN (ngf 4, one residual block, ndf 4, a 2-layer discriminator)
trained for ``--iters`` iterations per mode and seed, eager and contiguous (compile and channels-last are
off: they keep fp32 arithmetic up to rounding, so the modes that differ in arithmetic are the
precisions).  Each run's G_A is scored with ``cyclestream.trainer.evaluate`` (eager fp32 inference) on
the held-out pairs: PSNR and SSIM of translated testA against testB.

The table gives each mode's per-seed scores, their mean ± sample std over seeds, and the difference of
its mean from fp32's in units of the fp32 seed std: how far a mode moves the result compared with what
the seed alone moves it.  bf16 is skipped on a CPU without bf16 instructions (emulated bf16 is not the
arithmetic a user would train in).  Runs go to ``--out/MODE-seedN``; a run whose ``scores.json`` matches
the asked iterations is reused, so an interrupted measurement continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODES = ("fp32", "bf16")
REFERENCE_MODE = "fp32"


@dataclass(frozen=True, kw_only=True)
class RunScore:
    mode: str
    seed: int
    psnr: float
    ssim: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per mode, 0..N-1 (default 4)")
    parser.add_argument("--iters", type=int, default=200, help="training iterations per run (default 200)")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated precisions (default fp32,bf16)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    parser.add_argument("--out", type=Path, required=True, help="folder for the dataset, the runs and results.json")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"--modes: unknown {', '.join(unknown)}; choose from {', '.join(MODES)}")
    if args.seeds < 1 or args.iters < 1 or args.threads < 1:
        parser.error("--seeds, --iters and --threads must be at least 1")
    return args


def machine_line() -> str:
    import torch

    from cyclestream.engine.machine import cpu_model

    return (
        f"{cpu_model()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}); torch {torch.__version__}"
    )


def build_dataset(out: Path) -> Path | None:
    """The quality test's emoji dataset under ``out``; None (with a message) where a font is missing."""
    from cyclestream.trainer.datasets import DatasetError
    from cyclestream.trainer.datasets.emoji import EmojiDatasetOptions, build_emoji_dataset, make_style

    try:
        make_style("twemoji"), make_style("noto")
    except DatasetError as e:
        print(f"skipped: an emoji style is unavailable: {e}")
        return None
    data = out / "data" / "twemoji2noto"
    build_emoji_dataset(
        data,
        EmojiDatasetOptions(
            source="twemoji",
            target="noto",
            size=32,
            test_fraction=0.25,
            seed=0,
            limit=16,
            overwrite=True,
            progress=False,
        ),
    )
    return data


def train_and_score(data: Path, run_dir: Path, mode: str, seed: int, iters: int, threads: int) -> RunScore:
    """One training run of ``mode`` from ``seed``, its G_A scored on the held-out pairs (reused if done)."""
    from cyclestream.engine.backends.options import RunOptions
    from cyclestream.trainer.evaluate import EvaluateOptions, evaluate
    from cyclestream.trainer.loop import train
    from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainOptions, TrainRunOptions

    record = run_dir / "scores.json"
    if record.exists():
        saved = json.loads(record.read_text())
        if saved.get("iters") == iters:
            return RunScore(mode=mode, seed=seed, psnr=saved["psnr"], ssim=saved["ssim"])
    shutil.rmtree(run_dir, ignore_errors=True)
    options = TrainOptions(
        data=DataOptions(dataroot=data, load_size=32, crop_size=32),
        model=ModelOptions(ngf=4, n_blocks=1, ndf=4, n_layers_d=2),
        optim=OptimOptions(epochs=100_000, epochs_decay=0),  # max_iters ends the run, before any decay
        run=TrainRunOptions(
            out=run_dir,
            device="cpu",
            progress=False,
            threads=threads,
            samples=0,
            max_iters=iters,
            seed=seed,
            precision=mode,
            compile="off",
            channels_last="off",
        ),
    )
    result = train(options)
    if result.position.iteration < iters:
        raise SystemExit(f"{run_dir}: the run stopped at iteration {result.position.iteration} of {iters}")
    report = evaluate(
        run_dir / "G_A.safetensors",
        data,
        EvaluateOptions(run=RunOptions(backend="eager", device="cpu", precision="fp32", tune=False), progress=False),
    )
    score = RunScore(mode=mode, seed=seed, psnr=report.translated.psnr, ssim=report.translated.ssim)
    record.write_text(
        json.dumps(
            {
                "iters": iters,
                "psnr": score.psnr,
                "ssim": score.ssim,
                "identity": report.to_dict()["identity"],
                "mean_target": report.to_dict()["mean_target"],
            },
            indent=1,
        )
        + "\n"
    )
    return score


def summary(scores: list[RunScore], reference: list[RunScore]) -> dict[str, Any]:
    """Mean, sample std and the difference from the reference mode's mean (also in its std's units)."""
    out: dict[str, Any] = {}
    for metric in ("psnr", "ssim"):
        values, ref = [getattr(s, metric) for s in scores], [getattr(s, metric) for s in reference]
        mean, ref_mean = statistics.fmean(values), statistics.fmean(ref)
        ref_std = statistics.stdev(ref) if len(ref) > 1 else float("nan")
        out[metric] = {
            "values": values,
            "mean": mean,
            "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
            "delta": mean - ref_mean,
            "delta_in_ref_std": (mean - ref_mean) / ref_std if ref_std > 0 else float("nan"),
        }
    return out


def table(results: dict[str, dict[str, Any]], seeds: int, markdown: bool) -> str:
    header = [
        "mode",
        *(f"seed {i}" for i in range(seeds)),
        "mean ± std",
        f"Δ vs {REFERENCE_MODE}",
        f"Δ / {REFERENCE_MODE} std",
    ]
    rows = []
    for mode, s in results.items():
        p, q = s["psnr"], s["ssim"]
        rows.append(
            [
                mode,
                *(f"{a:.2f} / {b:.3f}" for a, b in zip(p["values"], q["values"], strict=True)),
                f"{p['mean']:.2f} ± {p['std']:.2f} / {q['mean']:.3f} ± {q['std']:.3f}",
                "—" if mode == REFERENCE_MODE else f"{p['delta']:+.2f} / {q['delta']:+.3f}",
                "—" if mode == REFERENCE_MODE else f"{p['delta_in_ref_std']:+.1f} / {q['delta_in_ref_std']:+.1f}",
            ]
        )
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # before torch is imported
    import torch

    from cyclestream.trainer.speed import has_bf16

    torch.set_num_threads(args.threads)
    modes = list(args.modes)
    if REFERENCE_MODE not in modes:
        modes.insert(0, REFERENCE_MODE)  # the yardstick
    if "bf16" in modes and not has_bf16(torch.device("cpu")):
        print("bf16 skipped: this CPU has no AVX-512-BF16 or AMX (bf16 would be emulated)")
        modes.remove("bf16")
    args.out.mkdir(parents=True, exist_ok=True)
    data = build_dataset(args.out)
    if data is None:
        return 0
    machine = machine_line()
    print(f"machine: {machine}", flush=True)
    scores: dict[str, list[RunScore]] = {}
    for mode in modes:
        for seed in range(args.seeds):
            s = train_and_score(data, args.out / f"{mode}-seed{seed}", mode, seed, args.iters, args.threads)
            print(f"{mode} seed {seed}: PSNR {s.psnr:.2f} dB, SSIM {s.ssim:.4f}", flush=True)
            scores.setdefault(mode, []).append(s)
    results = {mode: summary(runs, scores[REFERENCE_MODE]) for mode, runs in scores.items()}
    baseline = json.loads((args.out / f"{REFERENCE_MODE}-seed0" / "scores.json").read_text())
    (args.out / "results.json").write_text(
        json.dumps(
            {"machine": machine, "iters": args.iters, "seeds": args.seeds, "baseline": baseline, "modes": results},
            indent=1,
        )
        + "\n"
    )
    print(
        f"\nG_A (twemoji → noto) on the held-out pairs after {args.iters} iterations, PSNR (dB) / SSIM; "
        f"std over {args.seeds} seeds; {machine}"
    )
    shown = {"identity (input)": baseline["identity"], "mean target image": baseline["mean_target"]}
    print("baselines: " + ", ".join(f"{k} {v['psnr']:.2f} / {v['ssim']:.3f}" for k, v in shown.items() if v))
    print(table(results, args.seeds, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
