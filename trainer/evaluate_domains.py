"""Score a multi-domain generator (StarGAN) on a dataset of one folder per style: every held-out image
translated to every other domain and compared with that domain's own drawing of it.

``cyclestream data emoji-domains`` writes ``test/STYLE/NAME.png``, the same emoji NAME in each style.  For
each target domain T, every ``test/S/NAME.png`` with S ≠ T is translated with ``--target T`` and scored
against ``test/T/NAME.png`` (PSNR and SSIM as in ``trainer/evaluate.py``), beside the identity baseline
(the untranslated ``test/S/NAME.png`` against it).  The grid shows a few emoji of the first domain
(first column), each translated to every other domain (``to T``) beside that domain's true drawing (``T``).
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.conditioning import domain_names
from cyclestream.engine.media.images import load_rgb, save_rgb
from cyclestream.engine.media.probe import is_image
from cyclestream.trainer.datasets import DatasetError
from cyclestream.trainer.datasets.emoji import read_dataset_info
from cyclestream.trainer.evaluate import Scores, _label_font, _scores, _translate_all
from cyclestream.trainer.evaluate_options import EvaluateOptions


def is_domains_dataset(data: str | os.PathLike[str]) -> bool:
    """A folder of ``test/STYLE/`` folders (``data emoji-domains``) rather than ``testA``/``testB``."""
    test = Path(data) / "test"
    return test.is_dir() and not (Path(data) / "testA").is_dir() and any(p.is_dir() for p in test.iterdir())


@dataclass(frozen=True)
class TargetScores:
    target: str
    pairs: int  # translations scored: held-out images of the other domains
    translated: Scores
    identity: Scores


@dataclass
class DomainsReport:
    model: Path
    data: Path
    names: int  # held-out emoji drawn in every domain
    size: tuple[int, int]
    backend: str
    targets: list[TargetScores]
    seconds: float
    grid: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        def scores(s: Scores) -> dict[str, float]:
            return {"psnr": round(s.psnr, 4), "ssim": round(s.ssim, 5)}

        return {
            "model": str(self.model), "data": str(self.data), "names": self.names, "size": list(self.size),
            "backend": self.backend, "seconds": round(self.seconds, 3), "grid": str(self.grid) if self.grid else None,
            "targets": {t.target: {"pairs": t.pairs, "translated": scores(t.translated),
                                   "identity": scores(t.identity)} for t in self.targets},
        }


def held_out_names(test: Path, domains: list[str]) -> list[str]:
    """The image names present in every ``test/DOMAIN`` folder, sorted."""
    found = []
    for domain in domains:
        folder = test / domain
        if not folder.is_dir():
            raise DatasetError(f"{test} has no {domain} folder (the model's domains: {', '.join(domains)})")
        found.append({p.stem for p in folder.iterdir() if p.is_file() and is_image(p)})
    names = sorted(set.intersection(*found))
    if not names:
        raise DatasetError(f"no image name is in every one of {', '.join(str(test / d) for d in domains)}")
    return names


def evaluate_domains(model_path: str | os.PathLike[str], data: str | os.PathLike[str],
                     options: EvaluateOptions | None = None) -> DomainsReport:
    """Translate each domain's held-out images to every other domain and score them (module docstring)."""
    options = options or EvaluateOptions()
    t0 = time.perf_counter()
    model = load_model(model_path)
    domains = domain_names(model)
    if not domains:
        raise DatasetError(f"{model_path} names no domains in its metadata: evaluate needs a StarGAN trained here "
                           "(or one whose metadata lists them)")
    test = Path(data) / "test"
    names = held_out_names(test, domains)[: options.limit]
    images = {d: [load_rgb(test / d / f"{n}.png", options.run.size) for n in names] for d in domains}
    order = [d for d in read_dataset_info(data).get("domains", []) if d in domains] or domains
    results, describe = [], ""
    translated_first: dict[str, list[np.ndarray]] = {}  # the grid's: the first domain's images to each other
    for target in domains:
        inputs = [x for d in domains if d != target for x in images[d]]
        truths = [y for d in domains if d != target for y in images[target]]
        run = dataclasses.replace(options.run, target=target)
        outputs, describe = _translate_all(model, inputs, run, options.progress)
        results.append(TargetScores(target, len(inputs), _scores(outputs, truths), _scores(inputs, truths)))
        if target != order[0]:
            start = [d for d in domains if d != target].index(order[0]) * len(names)
            translated_first[target] = outputs[start : start + len(names)]
    first = images[order[0]][0]
    report = DomainsReport(Path(model_path), Path(data), len(names), (first.shape[1], first.shape[0]), describe,
                           results, 0.0)
    if options.grid is not None and options.grid_examples > 0:
        picks = sorted(set(np.linspace(0, len(names) - 1, min(options.grid_examples, len(names))).round().astype(int)))
        columns = [(order[0], [images[order[0]][i] for i in picks])]
        for target in order[1:]:
            columns += [(f"to {target}", [translated_first[target][i] for i in picks]),
                        (target, [images[target][i] for i in picks])]
        report.grid = save_columns(columns, options.grid)
    report.seconds = time.perf_counter() - t0
    return report


MIN_CELL = 96  # pixels: smaller images are shown enlarged (nearest neighbour, so no pixel is invented)


def save_columns(columns: list[tuple[str, list[np.ndarray]]], path: str | os.PathLike[str], gap: int = 4) -> Path:
    """A PNG of labelled columns of equally sized images (one row per example)."""
    h0, w0 = columns[0][1][0].shape[:2]
    scale = -(-MIN_CELL // min(h0, w0))
    h, w = h0 * scale, w0 * scale
    font = _label_font(72)
    label_h = 22
    grid = Image.new("RGB", (gap + len(columns) * (w + gap), label_h + len(columns[0][1]) * (h + gap) + gap),
                     (200, 200, 200))
    draw = ImageDraw.Draw(grid)
    for col, (label, cells) in enumerate(columns):
        left = gap + col * (w + gap)
        draw.text((left + w // 2, label_h // 2 + 2), label, fill=(0, 0, 0), font=font, anchor="mm")
        for row, image in enumerate(cells):
            cell = Image.fromarray(image).resize((w, h), Image.Resampling.NEAREST)
            grid.paste(cell, (left, label_h + row * (h + gap)))
    return save_rgb(np.asarray(grid), path)


def format_domains_report(report: DomainsReport) -> str:
    """One line per target domain for the terminal."""
    lines = [
        f"{report.model.name} on {report.names} held-out emoji of {report.data}, each domain's translated to every "
        f"other, {report.size[0]}x{report.size[1]}, {report.backend}, {report.seconds:.1f} s",
        f"  {'target':12}{'pairs':>7}{'PSNR (dB)':>11}{'identity':>10}{'SSIM':>8}{'identity':>10}",
    ]
    for t in report.targets:
        lines.append(f"  {t.target:12}{t.pairs:>7}{t.translated.psnr:>11.2f}{t.identity.psnr:>10.2f}"
                     f"{t.translated.ssim:>8.4f}{t.identity.ssim:>10.4f}")
    if report.grid:
        lines.append(f"grid {report.grid} (columns: input, then each target translated | its true drawing)")
    return "\n".join(lines)
