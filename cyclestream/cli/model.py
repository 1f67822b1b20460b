"""The `cyclestream` commands info and compile: describe a model file; export and check it for a backend."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("cyclestream")


def _add_info(sub: Any) -> None:
    p = sub.add_parser("info", help="describe a model file (architecture, domains, provenance)")
    p.add_argument("model", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    from cyclestream.engine.checkpoint import load_model

    model = load_model(args.model)
    info = {
        "path": str(model.path),
        "format": model.format,
        "architecture": model.spec.official_name,
        "generator": model.spec.to_dict(),
        "parameters": model.parameter_count,
        "size_multiple": model.spec.size_multiple,
        "metadata": {k: v for k, v in model.metadata.items() if k != "generator"},
    }
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(
        f"{model.path}: {model.format} model, {model.spec.official_name}, "
        f"{model.parameter_count / 1e6:.2f} M parameters"
    )
    for key, value in model.spec.to_dict().items():
        print(f"  {key:13} {value}")
    print(f"  {'frame sides':13} padded to a multiple of {model.spec.size_multiple}")
    for key, value in info["metadata"].items():
        print(f"  {key:13} {json.dumps(value) if isinstance(value, dict | list) else value}")
    return 0


def _add_compile(sub: Any) -> None:
    p = sub.add_parser("compile", help="export a model for a backend (ONNX, OpenVINO IR, TensorRT engine) and check it")
    p.add_argument("model", type=Path, help="generator: an official *_net_G.pth or a cyclestream .safetensors")
    p.add_argument("--target", required=True, choices=["onnx", "openvino", "tensorrt"])
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"],
                   help="onnx: fp32/fp16; openvino: fp32/fp16 (weights)/bf16 (run time); tensorrt: fp32/fp16")
    p.add_argument("--shape", default="1x3x256x256",
                   help="NxCxHxW[:MAX] or MIN:OPT:MAX — the TensorRT profile (batches 1..N; sides up to MAX) "
                   "and the size the result is checked at (default 1x3x256x256)")
    p.add_argument("--out", type=Path, help="output file (default: MODEL.onnx / MODEL.xml / MODEL.engine here)")
    p.add_argument("--device", default="cuda", help="GPU for --target tensorrt (default cuda)")
    p.add_argument("--exporter", default="auto", choices=["auto", "dynamo", "torchscript"],
                   help="ONNX exporter (default auto: dynamo, then TorchScript if it fails)")
    p.set_defaults(func=_cmd_compile)


def _cmd_compile(args: argparse.Namespace) -> int:
    from cyclestream.engine.jobs.compile import CompileOptions, compile_model

    options = CompileOptions(args.target, args.precision, args.shape, args.out, args.device, args.exporter)
    report = compile_model(args.model, options)
    print(f"wrote {report.path} ({report.target}, {report.seconds:.1f} s)")
    for line in report.details:
        print(f"  {line}")
    return 0


# ----------------------------------------------------------------------------- data and evaluation



def register(sub: Any) -> None:
    _add_info(sub)
    _add_compile(sub)
