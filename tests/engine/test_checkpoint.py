"""Model files: the project's safetensors format round trip, and every kind of wrong file."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from cyclestream.cli import main
from cyclestream.engine.checkpoint import load_model, read_metadata, save_model
from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models import GeneratorSpec, build_generator


def test_own_format_round_trip_keeps_weights_and_metadata(tmp_path: Path) -> None:
    spec = GeneratorSpec(ngf=6, n_blocks=2, padding_type="replicate")
    net = build_generator(spec)
    meta = {"domains": {"A": "twemoji", "B": "noto"}, "training": {"epochs": 3}}
    path = save_model(tmp_path / "g.safetensors", net, spec, meta)

    loaded = load_model(path)
    assert loaded.format == "cyclestream"
    assert loaded.spec == spec  # replicate padding survives, unlike in an official .pth
    assert loaded.metadata["domains"] == meta["domains"]
    assert read_metadata(path)["generator"] == spec.to_dict()
    for key, value in net.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[key], value), key
    assert not list(tmp_path.glob(".*partial*"))  # the temporary file was renamed away


def test_format_is_told_by_content_not_name(tmp_path: Path) -> None:
    spec = GeneratorSpec(ngf=4, n_blocks=1)
    path = save_model(tmp_path / "weights.pth", build_generator(spec), spec)
    assert load_model(path).format == "cyclestream"


def test_info_command_prints_architecture_and_metadata(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = GeneratorSpec(ngf=4, n_blocks=2)
    path = save_model(tmp_path / "g.safetensors", build_generator(spec), spec, {"domains": {"A": "x", "B": "y"}})
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["architecture"] == "resnet_2blocks"
    assert info["generator"]["ngf"] == 4
    assert info["metadata"]["domains"] == {"A": "x", "B": "y"}
    assert main(["info", str(path)]) == 0
    assert "resnet_2blocks" in capsys.readouterr().out


class NotWeights:
    """A class a pickle needs code for; weights_only loading must refuse it."""

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this would run code",))


def _discriminator_state() -> dict[str, torch.Tensor]:
    # The official 70x70 PatchGAN (NLayerDiscriminator, n_layers=3, instance norm): model.0 is a 4x4 conv.
    return {
        "model.0.weight": torch.zeros(64, 3, 4, 4),
        "model.0.bias": torch.zeros(64),
        "model.2.weight": torch.zeros(128, 64, 4, 4),
        "model.11.weight": torch.zeros(1, 512, 4, 4),
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: torch.save(_discriminator_state(), p), "discriminator"),
        (lambda p: p.write_bytes(bytes(range(256)) * 40), "not a model file"),
        (lambda p: p.write_bytes(b"\x80\x04" + b"garbage" * 50), "not a readable PyTorch checkpoint"),
        (lambda p: p.write_bytes(pickle.dumps({"w": NotWeights()}, protocol=2)), "pickled Python objects"),
        (lambda p: torch.save(torch.nn.Linear(2, 2), p), "pickled Python objects"),
        (lambda p: torch.save({"G_A": {"model.1.weight": torch.zeros(1)}, "D_A": {}}, p), "training state"),
        (lambda p: torch.save({"fc.weight": torch.zeros(2, 2)}, p), "not a CycleGAN/pix2pix generator"),
        (lambda p: torch.save([1, 2, 3], p), "does not hold a state dict"),
    ],
    ids=[
        "discriminator",
        "random-bytes",
        "damaged-pickle",
        "pickled-code",
        "pickled-module",
        "train-state",
        "other-net",
        "list",
    ],
)
def test_wrong_checkpoints_fail_with_one_clear_line(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "model.pth"
    make(path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_truncated_official_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "latest_net_G.pth"
    torch.save(build_generator(GeneratorSpec(ngf=4, n_blocks=1)).state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(path)


def test_missing_model_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pth")
    with pytest.raises(CheckpointError, match="folder"):
        load_model(tmp_path)


def test_cli_prints_one_line_and_exits_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a model at all, just text")
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cyclestream: error:") and "\n" not in err
