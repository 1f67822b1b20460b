"""The `cyclestream` commands info and compile: describe a model file; export and check it for a backend."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from cyclestream.bundled import DEMO_CLIP
from cyclestream.cli.flags import add_options, from_args
from cyclestream.cli.options import add_model_argument

log = logging.getLogger("cyclestream")


def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a model file (family, architecture, inputs, domains, provenance)")
    add_model_argument(p, positional=True)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)


def _range_text(value_range: tuple[float, float]) -> str:
    return "[" + ", ".join(f"{v:g}" for v in value_range) + "] (its images' scale; pixels 0..255 map onto it)"


def _cmd_info(args: argparse.Namespace) -> int:
    from cyclestream.engine.backends.options import RunOptions, run_description
    from cyclestream.engine.checkpoint import load_model

    model = load_model(args.model)
    family, spec = model.family, model.spec
    runs = run_description(model, RunOptions())
    info = {
        "path": str(model.path),
        "format": model.format,
        "family": family.name,
        "description": family.description,
        "architecture": spec.official_name,
        "generator": spec.to_dict(),
        "parameters": model.parameter_count,
        "value_range": list(family.value_range),
        "image_input": family.image_input,
        "conditioning": [c.describe(spec) for c in family.conditioning],
        "size_multiple": spec.size_multiple if family.image_input else None,
        "metadata": {k: v for k, v in model.metadata.items() if k != "generator"},
        "runs": runs,
    }
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"{model.path}: {model.format} model, {spec.official_name}, {model.parameter_count / 1e6:.2f} M parameters")
    print(f"  {'family':13} {family.name}: {family.description}")
    print(f"  {'inputs':13} {family.inputs_text(spec)}")
    for c in family.conditioning:
        print(f"  {c.name:13} {c.kind}, {c.size(spec)} values: {c.help}")
    print(f"  {'value range':13} {_range_text(family.value_range)}")
    for key, value in spec.to_dict().items():
        print(f"  {key:13} {value}")
    if family.image_input:
        print(f"  {'frame sides':13} padded to a multiple of {spec.size_multiple}")
    else:
        print(f"  {'translate':13} not possible: it has no image input")
    if runs is not None:
        print(f"  {'runs with':13} {runs}")
    for key, value in info["metadata"].items():
        print(f"  {key:13} {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


def _add_compile(sub: Any) -> None:
    from cyclestream.engine.jobs.options import CompileOptions

    p = sub.add_parser("compile", help="export a model for a backend (ONNX, OpenVINO IR, TensorRT engine) and check it")
    add_model_argument(p, positional=True)
    add_options(p, CompileOptions)
    p.set_defaults(func=_cmd_compile)


def _cmd_compile(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.compile import compile_model
    from cyclestream.engine.jobs.options import CompileOptions

    report = compile_model(args.model, from_args(CompileOptions, args, check_clip=DEMO_CLIP))
    print(f"wrote {report.path} ({report.target}, {report.seconds:.1f} s)")
    for line in report.details:
        print(f"  {line}")
    return 0


def _add_export(sub: Any) -> None:
    from cyclestream.engine.jobs.export_options import ExportOptions

    p = sub.add_parser("export", help="write a model in another project's file layout (--to official: a *_net_G.pth)")
    add_model_argument(p, positional=True)
    p.add_argument("out", type=Path, help="the file to write (e.g. latest_net_G_A.pth)")
    add_options(p, ExportOptions)
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.export_options import ExportOptions
    from cyclestream.engine.official_export import export_model

    settings = export_model(args.model, args.out, from_args(ExportOptions, args))
    print(
        f"wrote {args.out} ({args.to} layout); load it with "
        + " ".join(f"--{k} {v}" for k, v in settings.items() if k != "no_dropout")
        + (" --no_dropout" if settings["no_dropout"] else "")
    )
    return 0


def register(sub: Any) -> None:
    _add_info(sub)
    _add_compile(sub)
    _add_export(sub)
