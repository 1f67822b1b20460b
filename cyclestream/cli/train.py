"""The `cyclestream` commands data, evaluate, train, distill: building data and models.

Their options are the dataclasses of ``trainer/options.py`` (the groups of a training run),
``trainer/distill_options.py``, ``trainer/evaluate_options.py`` and ``trainer/datasets/options.py``;
the flags are generated from those fields (``flags.py``), each task's defaults said in --help from its
declaration (``trainer/tasks.py``).  ``python -m cyclestream.trainer`` (what torchrun starts) builds its
parser with :func:`trainer_parser`.  Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEMO_CLIP
from cyclestream.cli.flags import add_options, from_args
from cyclestream.engine.options import field_default, nested_options, options_fields, spec_of

log = logging.getLogger("cyclestream")


def _add_data(sub: Any) -> None:
    from cyclestream.trainer.datasets.options import DemoClipOptions, EmojiDatasetOptions, EmojiDomainsOptions

    p = sub.add_parser("data", help="build data: emoji datasets, the demo clip")
    kinds = p.add_subparsers(dest="data_command", required=True, metavar="KIND")
    e = kinds.add_parser("emoji", help="unpaired emoji dataset in two styles (trainA/B shuffled, testA/B paired)")
    e.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    add_options(e, EmojiDatasetOptions)
    e.set_defaults(func=_cmd_data_emoji)
    m = kinds.add_parser("emoji-domains", help="emoji in several styles, one folder each (StarGAN's domains; "
                         "train/STYLE shuffled, test/STYLE paired)")
    m.add_argument("--out", type=Path, required=True, help="dataset folder to create")
    add_options(m, EmojiDomainsOptions)
    m.set_defaults(func=_cmd_data_emoji_domains)
    c = kinds.add_parser("demo-clip", help="render the demo clip: moving emoji with a sound track")
    c.add_argument("--out", type=Path, default=DEMO_CLIP, help=f"output .mp4 (default {DEMO_CLIP})")
    add_options(c, DemoClipOptions)
    c.set_defaults(func=_cmd_data_demo_clip)


def _cmd_data_emoji(args: argparse.Namespace) -> int:
    from cyclestream.trainer.datasets.emoji import build_emoji_dataset
    from cyclestream.trainer.datasets.options import EmojiDatasetOptions

    options = from_args(EmojiDatasetOptions, args, progress=not args.quiet)
    _print_dataset(build_emoji_dataset(args.out, options), f"{options.source} → {options.target}", options.size)
    return 0


def _cmd_data_emoji_domains(args: argparse.Namespace) -> int:
    from cyclestream.trainer.datasets.emoji import build_emoji_domains
    from cyclestream.trainer.datasets.options import EmojiDomainsOptions

    options = from_args(EmojiDomainsOptions, args, progress=not args.quiet)
    _print_dataset(build_emoji_domains(args.out, options), ", ".join(options.styles), options.size)
    return 0


def _print_dataset(report: Any, styles: str, size: int) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in report.counts.items())
    print(f"wrote {report.out} ({styles}, {size}x{size}: {counts}; {report.skipped_skin_tones} skin-tone variants "
          f"skipped; {report.seconds:.1f} s)")


def _cmd_data_demo_clip(args: argparse.Namespace) -> int:
    from cyclestream.trainer.datasets.demo_clip import make_demo_clip
    from cyclestream.trainer.datasets.options import DemoClipOptions

    report = make_demo_clip(args.out, from_args(DemoClipOptions, args))
    print(f"wrote {report.path} ({report.size[0]}x{report.size[1]}, {report.frames} frames at {report.fps} fps, "
          f"{report.seconds:.1f} s, {report.bytes / 1024:.0f} KiB)")
    return 0


def _add_evaluate(sub: Any) -> None:
    from cyclestream.trainer.evaluate_options import EvaluateOptions

    p = sub.add_parser("evaluate", help="score a model on a dataset's held-out pairs (PSNR, SSIM vs identity)")
    p.add_argument("model", type=Path, help="generator: an official *_net_G.pth or a cyclestream .safetensors")
    p.add_argument("--data", dest="dataset", metavar="DATA", type=Path, required=True,
                   help="dataset folder with testA/ and testB/ (or test/DOMAIN/ for a StarGAN)")
    p.add_argument("--out", type=Path, help="comparison grid PNG (default out/MODEL_eval.png)")
    p.add_argument("--no-grid", action="store_true", help="do not write the grid")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_options(p, EvaluateOptions)
    p.set_defaults(func=_cmd_evaluate)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from cyclestream.trainer.evaluate import evaluate, format_report
    from cyclestream.trainer.evaluate_domains import evaluate_domains, format_domains_report, is_domains_dataset
    from cyclestream.trainer.evaluate_options import EvaluateOptions

    grid = None if args.no_grid else (args.out or Path("out") / f"{args.model.stem}_eval.png")
    options = from_args(EvaluateOptions, args, grid=grid, progress=not (args.quiet or args.json))
    if is_domains_dataset(args.dataset):  # `data emoji-domains`: a StarGAN scored per target domain
        domains = evaluate_domains(args.model, args.dataset, options)
        print(json.dumps(domains.to_dict(), indent=2) if args.json else format_domains_report(domains))
        return 0
    report = evaluate(args.model, args.dataset, options)
    print(json.dumps(report.to_dict(), indent=2) if args.json else format_report(report))
    return 0


# ----------------------------------------------------------------------------- training

# The TrainOptions groups each command has flags for, and which of their fields (None: all).  `distill`
# trains one task with its own group (the teacher, the student, its losses) and needs fewer of train's.
COMMAND_FIELDS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "train": {"data": None, "model": None, "optim": None, "run": None},
    "distill": {
        "data": ("data", "load_size", "crop_size", "flip", "workers"),
        "model": ("ngf", "n_blocks", "ndf", "n_layers_d"),
        "optim": ("lr", "epochs", "epochs_decay", "batch_size"),
        "run": ("out", "resume", "save_every_iters", "max_iters", "seed", "threads", "device", "deterministic",
                "nproc", "ddp_recipe", "samples"),
        "distill": None,
    },
}
REQUIRED: dict[str, tuple[str, ...]] = {"train": ("out",), "distill": ("out", "data")}
EVALUATION_TITLE = "evaluation after training"


def _groups(command: str) -> list[tuple[str, Any, str]]:
    """(field name, options class, title) of each TrainOptions group ``command`` has flags for."""
    from cyclestream.trainer.options import TrainOptions

    return [(f.name, nested_options(hint), spec.help if spec else f.name)
            for f, hint, spec in options_fields(TrainOptions) if f.name in COMMAND_FIELDS[command]]


def add_train_options(p: Any, command: str = "train") -> None:
    """The flags of ``cyclestream train`` (and ``python -m cyclestream.trainer``) or ``distill``: one per
    field of the TrainOptions groups the command has (``COMMAND_FIELDS``), the task-decided defaults said
    from the tasks' declarations; ``--model`` where the command trains several tasks; ``distill``'s
    evaluation."""
    from cyclestream.trainer.distill_options import DistillEvalOptions
    from cyclestream.trainer.options import ModelOptions
    from cyclestream.trainer.tasks import default_texts, tasks_of

    tasks = tasks_of(command)
    if len(tasks) > 1:
        declared = next(f for f in dataclasses.fields(ModelOptions) if f.name == "model")
        default = field_default(declared)
        spec = spec_of(declared)
        assert spec is not None
        listing = ", ".join(f"{task.name} ({task.help})" for task in tasks)
        p.add_argument("--model", choices=[task.name for task in tasks], default=default,
                       help=f"{spec.help.split(':')[0]}: {listing} (default {default})")
    texts = default_texts(command)
    for name, cls, title in _groups(command):
        add_options(p, cls, only=COMMAND_FIELDS[command][name], title=title, required=REQUIRED[command],
                    default_texts=texts)
    if command == "distill":
        add_options(p, DistillEvalOptions, title=EVALUATION_TITLE)


def train_options(args: argparse.Namespace, command: str = "train") -> Any:
    """The TrainOptions of parsed :func:`add_train_options` flags (task defaults still unresolved); progress
    bars unless ``--quiet``."""
    from cyclestream.trainer.options import TrainOptions
    from cyclestream.trainer.tasks import tasks_of

    tasks = tasks_of(command)
    given = {"model": {"model": args.model if len(tasks) > 1 else tasks[0].name},
             "run": {"progress": not getattr(args, "quiet", False)}}
    return TrainOptions(**{name: from_args(cls, args, only=COMMAND_FIELDS[command][name], **given.get(name, {}))
                           for name, cls, _title in _groups(command)})


def trainer_parser(prog: str, description: str | None = None) -> argparse.ArgumentParser:
    """``python -m cyclestream.trainer``'s parser: ``cyclestream train``'s flags and ``-q``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    add_train_options(parser)
    return parser


def _add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="train CycleGAN (unpaired A/B folders), pix2pix or DCGAN; --resume continues",
                       description="Train a model; the run folder (--out) gets G_A/G_B.safetensors (what translate "
                                   "--model loads), state.pt (for --resume), samples/, log.jsonl and losses.png. "
                                   "It trains on CUDA when torch sees a GPU (--device), and says so. "
                                   "Several processes: --nproc N, or torchrun --standalone --nproc_per_node=N "
                                   "-m cyclestream.trainer ... (see --ddp-recipe for how --batch-size is shared)")
    add_train_options(p)
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from cyclestream.engine.signals import exit_code, interrupted
    from cyclestream.trainer.loop import train

    options = train_options(args)
    try:
        result = train(options)
    except KeyboardInterrupt as e:
        print(f"cyclestream: {interrupted(e)}; continue from the last checkpoint with --resume --out "
              f"{options.run.out}", file=sys.stderr)
        return exit_code(e)
    state = "finished" if result.finished else f"stopped (continue with --resume --out {result.run_dir})"
    print(f"{state} at epoch {result.position.epoch}, iteration {result.position.iteration}: "
          f"{', '.join(str(f) for f in result.files) or result.run_dir}")
    return 0


def _add_distill(sub: Any) -> None:
    p = sub.add_parser("distill", help="distil a generator into a small, fast student (GAN Compression); "
                       "--resume continues")
    add_train_options(p, "distill")
    p.set_defaults(func=_cmd_distill)


def _cmd_distill(args: argparse.Namespace) -> int:
    from cyclestream.trainer.distill_eval import distill_and_evaluate, format_evaluation
    from cyclestream.trainer.distill_options import DistillEvalOptions

    out = distill_and_evaluate(train_options(args, "distill"), from_args(DistillEvalOptions, args))
    result = out["result"]
    state = "finished" if result.finished else f"stopped (continue with --resume --out {result.run_dir})"
    print(f"{state} at epoch {result.position.epoch}, iteration {result.position.iteration}: {out['student']}")
    if out["evaluation"] is not None:
        print(format_evaluation(out["evaluation"]))
    return 0


# ----------------------------------------------------------------------------- entry point


def register(sub: Any) -> None:
    _add_data(sub)
    _add_evaluate(sub)
    _add_train(sub)
    _add_distill(sub)
