"""``cyclestream export MODEL OUT.pth --to official``: the file loads strictly into the reference
generator (tests/engine/official_networks.py, built as the official ``define_G`` builds it) and gives
the same output as the model it came from."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cyclestream.engine.checkpoint import load_model, save_model
from cyclestream.engine.models import GeneratorSpec, build_generator
from tests.engine import official_networks as ref

CASES = [
    GeneratorSpec("resnet", 3, 3, 4, 2, "batch"),
    GeneratorSpec("resnet", 1, 1, 4, 2, "instance"),
    GeneratorSpec("unet", 3, 3, 4, 5, "batch"),
]


def _reference(spec: GeneratorSpec) -> torch.nn.Module:
    norm = ref.get_norm_layer(spec.norm)
    if spec.kind == "unet":
        return ref.UnetGenerator(spec.input_nc, spec.output_nc, spec.n_blocks, spec.ngf, norm, spec.use_dropout)
    return ref.ResnetGenerator(spec.input_nc, spec.output_nc, spec.ngf, norm, spec.use_dropout, spec.n_blocks)


def _export(tmp_path: Path, spec: GeneratorSpec, seed: int) -> tuple[Path, torch.nn.Module]:
    generator = ref.init_weights_normal(build_generator(spec), seed).eval()
    model = save_model(tmp_path / "g.safetensors", generator, spec)
    out = tmp_path / "latest_net_G_A.pth"
    done = subprocess.run(
        [sys.executable, "-m", "cyclestream", "export", str(model), str(out), "--to", "official"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert f"--netG {spec.official_name}" in done.stdout and f"--input_nc {spec.input_nc}" in done.stdout
    return out, generator


@pytest.mark.parametrize("spec", CASES, ids=lambda s: f"{s.official_name}-{s.norm}-{s.input_nc}ch")
def test_export_loads_strictly_into_the_reference(tmp_path: Path, spec: GeneratorSpec) -> None:
    out, generator = _export(tmp_path, spec, seed=3)
    state = torch.load(out, map_location="cpu", weights_only=True)
    reference = _reference(spec)
    reference.load_state_dict(state, strict=True)  # every key, every shape, nothing more
    x = torch.rand(1, spec.input_nc, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(reference.eval()(x), generator(x), rtol=0, atol=1e-6)
    assert load_model(out).spec == spec  # and cyclestream reads it back as the same generator


def test_export_refuses_a_wrong_suffix_and_writes_nothing(tmp_path: Path) -> None:
    spec = CASES[0]
    model = save_model(tmp_path / "g.safetensors", build_generator(spec), spec)
    out = tmp_path / "g.onnx"
    done = subprocess.run(
        [sys.executable, "-m", "cyclestream", "export", str(model), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and str(out) in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == [model]
