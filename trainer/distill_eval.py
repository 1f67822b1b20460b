"""How good and how fast a distilled student is: ``RUN/evaluation.json``.

- fidelity: PSNR and SSIM (trainer/evaluate.py's metrics) of the student's output against the
  teacher's on held-out frames (a video's frames, or a folder of images), both run the same way;
  ``held_out`` says whether the frames were kept out of training (no video or image of the same
  bytes in the data folder);
- cost: multiply-accumulates per frame at the frames' size and parameters, student and teacher;
- speed: images/s per backend at that size (engine/jobs/bench.py's ``bench_model``, fp32, batch 1), the
  student's own eager fp32 row first.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import MediaError
from cyclestream.engine.jobs.roofline import count_macs
from cyclestream.engine.media.images import find_images, load_rgb
from cyclestream.engine.paths import file_sha256
from cyclestream.trainer.distill_data import VIDEO_EXTENSIONS, _visible
from cyclestream.trainer.distill_options import DistillEvalOptions
from cyclestream.trainer.evaluate import _translate_all, psnr, ssim
from cyclestream.trainer.options import TrainingError, TrainOptions

log = logging.getLogger("cyclestream")

EVALUATION_FILE = "evaluation.json"


def holdout_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    """The frames of a video (every one, up to ``limit``) or the images of a folder, as RGB uint8."""
    if not path.exists():
        raise TrainingError(f"held-out frames not found: {path}")
    if path.is_dir():
        return [load_rgb(p) for p in find_images(path)[:limit]]
    from cyclestream.engine.media.sources import VideoFileSource

    try:
        source = VideoFileSource(path, audio=False)
        try:
            frames = []
            for frame in source.frames():
                frames.append(frame.image)
                if limit and len(frames) >= limit:
                    break
            return frames
        finally:
            source.close()
    except MediaError as e:
        raise TrainingError(f"held-out frames: {e}") from None


def was_trained_on(holdout: Path, data: Path) -> bool:
    """Whether a file with the bytes of ``holdout`` (or of an image in it) lies in the data folder."""
    if not data.is_dir():
        return False
    held = [holdout] if holdout.is_file() else find_images(holdout)
    sizes = {p.stat().st_size for p in held}
    candidates = [p for p in _visible(data, VIDEO_EXTENSIONS | {".png", ".jpg", ".jpeg"}) if p.stat().st_size in sizes]
    digests = {file_sha256(p) for p in held}
    return any(file_sha256(p) in digests for p in candidates)


def fidelity(student: LoadedModel, teacher: LoadedModel, frames: list[np.ndarray],
             run: RunOptions | None = None) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM of the student's outputs against the teacher's, frame by frame."""
    run = run or RunOptions(backend="eager")
    ours, _ = _translate_all(student, frames, run, progress=False)
    theirs, _ = _translate_all(teacher, frames, run, progress=False)
    return {"psnr_db": round(float(np.mean([psnr(a, b) for a, b in zip(ours, theirs, strict=True)])), 3),
            "ssim": round(float(np.mean([ssim(a, b) for a, b in zip(ours, theirs, strict=True)])), 4),
            "frames": len(frames), "backend": run.backend, "precision": run.precision}


def cost(model: LoadedModel, width: int, height: int) -> dict[str, Any]:
    return {"architecture": model.spec.official_name, "parameters": model.parameter_count,
            "macs_per_frame": count_macs(model.generator, height, width, model.spec.size_multiple)}


def speed(model: LoadedModel, backends: list[str], *, width: int, height: int, min_time: float = 1.0,
          ) -> tuple[list[dict[str, Any]], dict[str, float] | None]:
    """images/s per backend (fp32, batch 1; a backend that cannot run here has ``skipped``), and for a
    distilled student the official resnet_9blocks in eager fp32 measured in the same run."""
    from cyclestream.engine.jobs.bench import bench_model
    from cyclestream.engine.jobs.bench_options import ModelBenchOptions

    options = ModelBenchOptions(backends=tuple(backends), precisions=("fp32",), batches=(1,),
                                sizes=((width, height),), repeats=3, min_time=min_time, progress=False)
    report = bench_model(model, options=options)
    rows = [{"backend": r.backend, "precision": r.precision, "images_per_s": round(r.images_per_s, 2),
             "gflops": r.gflops, "peak_fraction": r.peak_fraction, "skipped": r.skipped} for r in report.rows]
    return rows, report.model.get("official_baseline", {}).get(f"{width}x{height}")


def evaluate_student(student_path: str | os.PathLike[str], teacher_path: str | os.PathLike[str],
                     *, holdout: Path, data: Path | None = None, backends: list[str] | None = None,
                     limit: int | None = None, min_time: float = 1.0) -> dict[str, Any]:
    """The whole evaluation of a student against its teacher (see the module's docstring)."""
    student, teacher = load_model(student_path), load_model(teacher_path)
    frames = holdout_frames(Path(holdout), limit)
    if not frames:
        raise TrainingError(f"no held-out frames in {holdout}")
    height, width = frames[0].shape[:2]
    out: dict[str, Any] = {
        "student": str(student_path), "teacher": str(teacher_path), "holdout": str(holdout),
        "held_out": data is None or not was_trained_on(Path(holdout), Path(data)),
        "size": f"{width}x{height}",
        "fidelity": fidelity(student, teacher, frames),
        "student_cost": cost(student, width, height), "teacher_cost": cost(teacher, width, height),
    }
    out["compression"] = round(out["teacher_cost"]["macs_per_frame"] / max(1, out["student_cost"]["macs_per_frame"]), 2)
    if backends:
        out["speed"], out["official_resnet_9blocks_eager_fp32"] = speed(student, list(backends), width=width,
                                                                        height=height,
                                                                          min_time=min_time)
    return out


def distill_and_evaluate(options: TrainOptions, evaluation: DistillEvalOptions) -> dict[str, Any]:
    """Distil (a Ctrl-C stops after the iteration with a checkpoint and the student written), then evaluate
    the student.  Returns what ``distill`` reports: the training result, the student's file and the
    evaluation (None when skipped or when no student was written)."""
    from cyclestream.trainer.distill import STUDENT_FILE
    from cyclestream.trainer.loop import train

    result = train(options, finish_on_interrupt=True)
    student = result.run_dir / STUDENT_FILE
    report = None
    if evaluation.eval and student.exists():
        assert options.distill.teacher is not None
        log.info("evaluating %s against the teacher on %s", student, evaluation.holdout)
        report = evaluate_student(student, options.distill.teacher, holdout=evaluation.holdout, data=options.data.data,
                                  backends=list(evaluation.eval_backends), min_time=evaluation.eval_seconds)
        write_evaluation(result.run_dir, report)
    return {"result": result, "student": student, "evaluation": report}


def write_evaluation(run_dir: Path, evaluation: dict[str, Any]) -> Path:
    path = run_dir / EVALUATION_FILE
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(evaluation, indent=2) + "\n")
    return path


def format_evaluation(e: dict[str, Any]) -> str:
    f, s, t = e["fidelity"], e["student_cost"], e["teacher_cost"]
    lines = [
        f"student {s['architecture']}: {s['parameters'] / 1e3:.1f} k parameters, {s['macs_per_frame'] / 1e9:.3f} GMAC "
        f"per {e['size']} frame ({e['compression']}x fewer than the teacher {t['architecture']}, "
        f"{t['macs_per_frame'] / 1e9:.2f} GMAC)",
        f"vs the teacher on {f['frames']} {'held-out' if e['held_out'] else 'TRAINING (not held-out)'} frames of "
        f"{e['holdout']}: PSNR {f['psnr_db']:.2f} dB, SSIM {f['ssim']:.4f}",
    ]
    for row in e.get("speed", []):
        what = f"skipped ({row['skipped']})" if row["skipped"] else f"{row['images_per_s']:.1f} images/s"
        lines.append(f"  {row['backend']:<12} {row['precision']}: {what}")
    official = e.get("official_resnet_9blocks_eager_fp32")
    if official:
        lines.append(f"  official resnet_9blocks, eager fp32: {official['images_per_s']:.2f} images/s "
                     f"(the student's fastest: {official['speedup']:.1f}x)")
    return "\n".join(lines)

