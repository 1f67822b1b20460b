"""Model families plug in as one module each: found without a list, read by the loader, info, the
backends and the jobs; DCGAN is one of them, described but never translated."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.checkpoint import load_model, save_model
from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.jobs.translate import TranslateOptions, translate, translate_video
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.models import GeneratorSpec, families, family_named
from cyclestream.engine.models.registry import family_names
from tests.engine.media_checks import decoded_frames

LOSSLESS = EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0")  # decoded output == model output
EAGER = TranslateOptions(temporal="off", run=RunOptions(backend="eager"), encode=LOSSLESS, progress=False)

# A family as a contributor would add one: a module of its own, dropped into engine/models/, that edits
# nothing else.  Its generator works on pixel values (0..255, as fast neural style does): a 1x1
# convolution; its published files are recognised by their two keys.
INVERT_MODULE = textwrap.dedent('''
    from dataclasses import dataclass

    from torch import nn

    from cyclestream.engine.models.family import Family, FamilySpec


    @dataclass(frozen=True)
    class InvertSpec(FamilySpec):
        kind: str = "invert255"
        input_nc: int = 3
        ngf: int = 3


    class Invert(nn.Module):
        def __init__(self, spec):
            super().__init__()
            self.conv = nn.Conv2d(spec.input_nc, spec.input_nc, 1)

        def forward(self, x):
            return self.conv(x)


    def recognise(shapes):
        if set(shapes) != {"conv.weight", "conv.bias"}:
            return None
        return InvertSpec(input_nc=shapes["conv.weight"][0], ngf=shapes["conv.weight"][0])


    FAMILY = Family(
        name="invert255",
        description="a 1x1 convolution on pixel values",
        spec_type=InvertSpec,
        build=Invert,
        official_name=lambda spec: "invert255",
        recognise=recognise,
        published_by="the tests",
        value_range=(0.0, 255.0),
        size_multiple=lambda spec: 4,
    )
''')


@pytest.fixture
def invert_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """engine/models/ with one more module in it, as its package path sees it."""
    folder = tmp_path / "more_models"
    folder.mkdir()
    (folder / "invert255.py").write_text(INVERT_MODULE)
    package = importlib.import_module("cyclestream.engine.models")
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    families.cache_clear()
    yield
    families.cache_clear()
    sys.modules.pop("cyclestream.engine.models.invert255", None)


def _invert_weights() -> dict[str, torch.Tensor]:
    # y = 200.25 - 0.75 x + 0.125 x' (x' another channel): 9..233, and with weights of few binary digits every
    # sum is exact in float32, so the rounding is the same however the convolution adds up.
    weight = -0.75 * torch.eye(3) + 0.125 * torch.tensor([[0, 1, 0], [0, 0, 1], [1, 0, 0]])
    return {"conv.weight": weight.reshape(3, 3, 1, 1), "conv.bias": torch.full((3,), 200.25)}


def _by_hand(weights: dict[str, torch.Tensor], frame: np.ndarray) -> np.ndarray:
    """The generator on one uint8 RGB frame at its own scale (pixel values in, pixel values out)."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].double()
    y = nn.functional.conv2d(x, weights["conv.weight"].double(), weights["conv.bias"].double())
    return y.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def test_a_new_family_module_is_found_loaded_described_and_translated(
    invert_family: None, make_clip: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "invert255" in family_names()
    weights = _invert_weights()
    published = tmp_path / "invert.pth"
    torch.save(weights, published)  # a plain state dict: recognised by the family's keys
    model = load_model(published)
    assert model.family.name == "invert255" and model.format == "official"
    assert model.metadata == {"source": "the tests"}
    own = save_model(tmp_path / "invert.safetensors", model.generator, model.spec)  # the spec in the metadata

    assert main(["info", str(own), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "invert255" and info["value_range"] == [0.0, 255.0]
    assert info["description"] == "a 1x1 convolution on pixel values"
    assert info["image_input"] is True and info["conditioning"] == [] and info["size_multiple"] == 4

    src = make_clip("in.mkv", width=38, height=30, frames=4)  # 38x30: padded to 40x32 and cropped back
    for path, out in ((published, tmp_path / "a.mkv"), (own, tmp_path / "b.mkv")):
        translate(src, out, path, EAGER)
        inputs, outputs = decoded_frames(src), decoded_frames(out)
        assert len(outputs) == len(inputs) == 4
        for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
            assert np.array_equal(b, _by_hand(weights, a)), f"{path.name} frame {i}"


def test_the_families_of_the_tree_are_all_found_each_in_its_module() -> None:
    from cyclestream.engine.models import animegan2, dcgan, mobile, resnet, unet

    found = families()
    assert list(found) == sorted(found, key=lambda f: (f.priority, f.name))  # by priority, then by name
    for module in (animegan2, dcgan, mobile, resnet, unet):
        assert family_named(module.FAMILY.name) is module.FAMILY
    assert GeneratorSpec("unet", n_blocks=7).official_name == "unet_128"
    assert GeneratorSpec("unet", n_blocks=7).size_multiple == 128
    assert GeneratorSpec("mobile", n_blocks=3).official_name == "mobile_resnet_3blocks"
    assert (GeneratorSpec().size_multiple, GeneratorSpec().min_side) == (4, 5)
    with pytest.raises(CheckpointError, match="unknown generator kind 'nosuchgan'"):
        family_named("nosuchgan")


# ----------------------------------------------------------------------------- DCGAN


class ExampleGenerator(nn.Module):
    """PyTorch's examples/dcgan/main.py ``Generator`` for 64 px images, written out as it is there."""

    def __init__(self, nz: int, ngf: int, nc: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh(),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.main(z)


@pytest.fixture
def example_dcgan() -> ExampleGenerator:
    torch.manual_seed(3)
    net = ExampleGenerator(nz=8, ngf=4, nc=3)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):  # statistics that matter in eval mode
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _dcgan_files(net: nn.Module, folder: Path) -> list[Path]:
    """The example's own ``netG_epoch_N.pth``, and the run file ``cyclestream train --model dcgan`` writes:
    safetensors weights with ``dcgan`` metadata (made with safetensors and json here)."""
    pth = folder / "netG_epoch_24.pth"
    torch.save(net.state_dict(), pth)
    run_file = folder / "G.safetensors"
    state = {k: v.contiguous() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    meta = {"dcgan": {"nz": 8, "ngf": 4, "image_size": 64}, "network": "G", "model": "dcgan", "epoch": 25}
    save_file(state, str(run_file), metadata={"cyclestream": json.dumps(meta)})
    return [pth, run_file]


def test_dcgan_files_load_and_info_describes_their_latent_input(
    example_dcgan: ExampleGenerator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    z = torch.randn(2, 8, 1, 1, generator=torch.Generator().manual_seed(1))
    for path in _dcgan_files(example_dcgan, tmp_path):
        model = load_model(path)
        assert model.family.name == "dcgan" and not model.family.image_input
        assert model.spec.to_dict() == {"kind": "dcgan", "nz": 8, "ngf": 4, "image_size": 64, "output_nc": 3}
        with torch.no_grad():
            torch.testing.assert_close(model.generator(z), example_dcgan(z))
        assert main(["info", str(path), "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["family"] == "dcgan" and info["architecture"] == "dcgan_64px"
        assert info["image_input"] is False and info["size_multiple"] is None
        assert [(c["name"], c["kind"], c["size"]) for c in info["conditioning"]] == [("z", "latent", 8)]
        assert main(["info", str(path)]) == 0
        text = capsys.readouterr().out
        assert "a latent z of 8 values" in text and "no image input" in text


def test_translate_refuses_a_dcgan_in_one_line_before_any_work(
    example_dcgan: ExampleGenerator, make_clip: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_clip("in.mp4", frames=2)
    pth, run_file = _dcgan_files(example_dcgan, tmp_path)
    out = tmp_path / "out.mp4"
    with pytest.raises(CheckpointError, match=r"generates images from a latent z.*no image input to translate") as err:
        translate(src, out, run_file, EAGER)
    assert str(run_file) in str(err.value) and "\n" not in str(err.value)
    # A job handed the loaded model (the library, batch, stream, serve) is refused before a backend exists.
    from cyclestream.engine.backends import eager

    def prepared(*args: object) -> None:
        pytest.fail("a backend was prepared for a model without an image input")

    monkeypatch.setattr(eager.EagerBackend, "prepare", prepared)
    with pytest.raises(CheckpointError, match="no image input to translate") as err:
        translate_video(src, out, load_model(pth), EAGER)
    assert "\n" not in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


@pytest.mark.parametrize(
    ("generator", "match"),
    [
        ({"kind": "nosuchgan", "c_dim": 5}, r"unknown generator kind 'nosuchgan' \(known families: .*dcgan"),
        ({"kind": ["dcgan"]}, "damaged generator metadata"),
        ({"kind": "dcgan", "nz": 8, "ngf": 4, "image_size": 24}, "power of two"),
        ({"kind": "dcgan", "nz": 8, "ngf": 4, "image_size": 1 << 40}, "declares 39 blocks for 4 tensors"),
        ({"kind": "dcgan", "n_blocks": 9}, r"unknown generator fields .*n_blocks"),
        ({"kind": "dcgan", "nz": 8, "ngf": 4, "image_size": 16}, "weights do not fit a dcgan_16px"),
    ],
    ids=["unknown-family", "kind-not-a-name", "odd-size", "huge-size", "other-family-fields", "wrong-weights"],
)
def test_hostile_family_metadata_is_one_line_naming_the_file(tmp_path: Path, generator: dict, match: str) -> None:
    path = tmp_path / "g.safetensors"
    weights = {f"main.{i}.weight": torch.zeros(8, 16, 4, 4) for i in (0, 3, 6, 9)}
    save_file(weights, str(path), metadata={"cyclestream": json.dumps({"generator": generator})})
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"main.0.weight": (8, 32, 4, 4), "main.1.weight": (32,), "main.4.weight": (32, 3, 4, 4)},
         "unrecognised DCGAN generator layout"),
        ({"main.0.weight": (8, 32, 3, 3), "main.1.weight": (32,), "main.3.weight": (32, 16, 3, 3),
          "main.6.weight": (16, 3, 3, 3)}, "are 4x4"),
        ({"main.0.weight": (4, 3, 4, 4), "main.2.weight": (8, 4, 4, 4), "main.5.weight": (1, 8, 4, 4)},
         "not a CycleGAN/pix2pix generator state dict"),  # the example's discriminator
        ({"model.model.0.weight": (4,)}, "no outer 4x4 convolution pair"),
    ],
    ids=["dcgan-gaps", "dcgan-3x3", "dcgan-discriminator", "unet-without-its-outer-layer"],
)  # fmt: skip
def test_damaged_published_layouts_are_one_line(tmp_path: Path, state: dict, match: str) -> None:
    path = tmp_path / "net.pth"
    torch.save({k: torch.zeros(shape) for k, shape in state.items()}, path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
