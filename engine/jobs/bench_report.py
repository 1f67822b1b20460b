"""Benchmark results for people: a terminal table, a Markdown table, a PNG bar chart."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, ImageDraw

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.jobs.bench import ModelBench, ModelRow, PipelineBench
from cyclestream.engine.machine import one_line

COLUMNS = (
    "backend",
    "precision",
    "batch",
    "size",
    "images/s",
    "x baseline",
    "p50 ms",
    "p99 ms",
    "rel L2",
    "GFLOP/s",
    "of peak",
)


def _cells(row: ModelRow) -> list[str]:
    if row.skipped:
        return [row.backend, row.precision, str(row.batch), row.size, "skipped", "", "", "", "", "", ""]
    return [
        row.backend,
        row.precision,
        str(row.batch),
        row.size,
        f"{row.images_per_s:.2f}",
        f"{row.speedup:.2f}" if row.speedup is not None else "",
        f"{row.p50_ms:.1f}",
        f"{row.p99_ms:.1f}",
        f"{row.rel_l2:.1e}" if row.rel_l2 else ("0" if row.rel_l2 == 0 else ""),
        f"{row.gflops:.0f}",
        f"{100 * row.peak_fraction:.0f}%" if row.peak_fraction is not None else "",
    ]


def model_table(report: ModelBench) -> str:
    rows = [list(COLUMNS)] + [_cells(r) for r in report.rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(c.rjust(w) if i >= 2 else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    p = report.peaks
    head = [
        f"machine: {one_line(report.machine)}",
        f"peaks: fp32 {p.fp32_gflops} GFLOP/s, bf16 {p.bf16_gflops} GFLOP/s, copy {p.copy_gbps} GB/s",
        f"model: {report.model['architecture']}, {report.model['parameters'] / 1e6:.2f} M parameters",
    ]
    for size, ref in report.model.get("official_baseline", {}).items():  # a distilled student's
        head.append(f"official resnet_9blocks, eager fp32 batch 1, {size}: {ref['images_per_s']:.2f} images/s; "
                    f"this student's fastest row: {ref['best_student']:.2f} images/s = {ref['speedup']:.1f}x")
    skipped = list(dict.fromkeys(f"  {r.backend} {r.precision}: {r.skipped}" for r in report.rows if r.skipped))
    return "\n".join(head + ["", *lines] + (["", "skipped:", *skipped] if skipped else []))


def model_markdown(report: ModelBench) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in report.rows if not r.skipped]
    return f"Machine: {one_line(report.machine)}\n\n" + "\n".join(lines)


def pipeline_table(report: PipelineBench) -> str:
    stages = ", ".join(f"{k} {v:.1f}" for k, v in report.stage_fps.items())
    return (
        f"machine: {one_line(report.machine)}\n"
        f"input: {report.input} ({report.frames} frames, {report.width}x{report.height}), {report.backend}\n"
        f"each stage alone (frames/s): {stages}\n"
        f"pipeline (decode | model | encode overlapped): {report.pipeline_fps:.2f} frames/s, "
        f"efficiency {100 * report.efficiency:.0f}% of the slowest stage"
    )


def model_plot(report: ModelBench, path: str | os.PathLike[str]) -> Path:
    """Horizontal bars of images/s, one group per frame size, labelled with each row's configuration."""
    rows = [r for r in report.rows if not r.skipped]
    bar_h, gap, left, right, top = 18, 4, 260, 120, 40
    width = 900
    height = top + len(rows) * (bar_h + gap) + 20 * len({r.size for r in rows}) + 30
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((10, 10), f"{report.model['architecture']} on {one_line(report.machine)}"[:140], fill="black")
    best = max((r.images_per_s for r in rows), default=1.0) or 1.0
    y = top
    size = None
    palette = {"fp32": (70, 110, 180), "bf16": (220, 130, 40), "fp16": (60, 160, 90), "int8": (170, 70, 160)}
    for row in rows:
        if row.size != size:
            size = row.size
            draw.text((10, y), f"{size}", fill="black")
            y += 20
        label = f"{row.backend} {row.precision} b{row.batch}"
        draw.text((20, y + 3), label, fill="black")
        length = int((width - left - right) * row.images_per_s / best)
        draw.rectangle([left, y, left + max(1, length), y + bar_h], fill=palette.get(row.precision, (120, 120, 120)))
        ratio = f" x{row.speedup:.2f}" if row.speedup else ""
        draw.text((left + length + 6, y + 3), f"{row.images_per_s:.2f}/s{ratio}", fill="black")
        y += bar_h + gap
    draw.text((10, height - 18), "images/s (higher is better); x = speed-up over eager fp32 batch 1", fill="gray")
    target = Path(path)
    with atomic_output(target) as tmp:
        image.save(tmp, format="PNG")
    return target
