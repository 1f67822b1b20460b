"""StarGAN (a target label) and BicycleGAN (a latent z): their published files load by keys and shapes
alone, equal to reconstructions of the reference generators, are never taken for CycleGAN/pix2pix
files or for one another, and ``info`` names their conditioning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cyclestream.cli import main
from cyclestream.engine.checkpoint import infer_spec, load_model
from cyclestream.engine.errors import CheckpointError
from tests.engine.official_conditioned import BicycleAddAll, BicycleAddInput, StarGenerator, randomised
from tests.engine.official_networks import UnetGenerator, get_norm_layer


def _saved(net: nn.Module, path: Path) -> Path:
    torch.save(net.state_dict(), path)
    return path


def _info(path: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["info", str(path), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_stargan_ckpt_loads_with_c_inferred_and_per_image_statistics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = randomised(StarGenerator(conv_dim=4, c_dim=5, repeat_num=2), seed=1)
    path = _saved(ref, tmp_path / "200000-G.ckpt")  # running statistics and all, as the reference saves
    model = load_model(path)
    assert model.family.name == "stargan" and model.format == "official"
    assert model.spec.to_dict() == {"kind": "stargan", "c_dim": 5, "ngf": 4, "repeat_num": 2, "input_nc": 3}
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    c = torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 1, 0]], dtype=torch.float32)
    with torch.no_grad():
        expected = ref.train()(x, c)  # the reference never calls eval(): each image's own statistics
        torch.testing.assert_close(model.generator(x, c), expected, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(ref.eval()(x, c), expected, atol=1e-2)  # the running stats would differ
    info = _info(path, capsys)
    assert info["family"] == "stargan" and info["metadata"]["source"] == "yunjey/stargan"
    assert [(k["name"], k["kind"], k["size"]) for k in info["conditioning"]] == [("target", "label", 5)]
    assert main(["info", str(path)]) == 0
    assert "a label target of 5 values" in capsys.readouterr().out


@pytest.mark.parametrize("where_add", ["all", "input"])
def test_a_bicyclegan_net_g_loads_with_nz_and_its_layout_from_the_shapes(
    where_add: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    net = BicycleAddAll if where_add == "all" else BicycleAddInput
    ref = randomised(net(input_nc=3, output_nc=3, nz=8, num_downs=6, ngf=4), seed=3).eval()
    path = _saved(ref, tmp_path / "latest_net_G.pth")
    model = load_model(path)
    assert model.family.name == "bicyclegan"
    assert model.spec.to_dict() == {
        "kind": "bicyclegan",
        "input_nc": 3,
        "output_nc": 3,
        "nz": 8,
        "ngf": 4,
        "n_blocks": 6,
        "where_add": where_add,
    }
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(model.generator(x, z), ref(x, z), rtol=1e-5, atol=1e-5)
        assert not torch.allclose(model.generator(x, z), model.generator(x, z.flip(0)), atol=1e-3)  # z matters
    info = _info(path, capsys)
    assert [(k["name"], k["kind"], k["size"]) for k in info["conditioning"]] == [("z", "latent", 8)]
    assert info["architecture"] == f"bicyclegan_unet_64_add_{where_add}"


def test_an_edges_model_splits_its_first_convolution_into_one_channel_and_z(tmp_path: Path) -> None:
    ref = BicycleAddAll(input_nc=1, output_nc=3, nz=8, num_downs=7, ngf=2)  # edges2shoes: --input_nc 1
    spec = load_model(_saved(ref, tmp_path / "edges2shoes_net_G.pth")).spec
    assert (spec.input_nc, spec.nz, spec.n_blocks) == (1, 8, 7)
    spec = infer_spec(BicycleAddInput(input_nc=1, output_nc=3, nz=8, num_downs=7, ngf=2).state_dict())
    assert (spec.kind, spec.input_nc, spec.where_add) == ("bicyclegan", 1, "input")


def test_pix2pix_unets_stay_pix2pix_and_stargan_stays_apart_from_dcgan() -> None:
    for input_nc in (1, 3, 4):
        unet = UnetGenerator(input_nc, 3, 6, ngf=4, norm_layer=get_norm_layer("instance"))
        assert infer_spec(unet.state_dict()).kind == "unet"
    batch = UnetGenerator(11, 3, 6, ngf=4, norm_layer=get_norm_layer("batch"))
    assert infer_spec(batch.state_dict()).kind == "unet"
    assert infer_spec(StarGenerator(conv_dim=4, c_dim=3, repeat_num=1).state_dict()).kind == "stargan"
    add_all, add_input = (infer_spec(n(3, 3, 8, 6, 4).state_dict()) for n in (BicycleAddAll, BicycleAddInput))
    assert (add_all.kind, add_all.where_add, add_input.kind, add_input.where_add) == (
        "bicyclegan",
        "all",
        "bicyclegan",
        "input",
    )


STAR_D = {
    "main.0.weight": (4, 3, 4, 4),
    "main.0.bias": (4,),
    "main.2.weight": (8, 4, 4, 4),
    "conv1.weight": (1, 8, 3, 3),
    "conv2.weight": (5, 8, 8, 8),
}


@pytest.mark.parametrize(
    ("state", "match"),
    [
        ({"main.0.weight": (4, 8, 7, 7), "main.1.weight": (4,), "main.9.main.0.weight": (16, 16, 3, 3),
          "main.11.main.0.weight": (16, 16, 3, 3)}, r"StarGAN generator layout \(residual blocks at main.\[9, 11\]"),
        ({"main.0.weight": (4, 8, 7, 7), "main.1.weight": (4,), "main.9.main.0.weight": (16, 16, 3, 3)},
         "no 7x7 convolution from 4 channels to RGB at main.16"),
        ({"model.down.0.weight": (4, 11, 4, 4), "model.up.1.weight": (8, 3, 4, 4)},
         "second level of a BicycleGAN generator takes no z planes"),
        ({"model.down.0.weight": (4, 11, 4, 4), "model.up.1.weight": (8, 3, 4, 4),
          "model.submodule.down.1.weight": (8, 12, 4, 4), "model.submodule.down.2.weight": (8,)},
         "batch norm or bilinear"),
        (STAR_D, "not a CycleGAN/pix2pix generator state dict, nor one of another known family"),
    ],
    ids=["stargan-gaps", "stargan-no-output", "bicyclegan-no-z", "bicyclegan-batchnorm", "stargan-discriminator"],
)  # fmt: skip
def test_damaged_conditioned_layouts_are_one_line_naming_the_file(tmp_path: Path, state: dict, match: str) -> None:
    path = tmp_path / "net.pth"
    torch.save({k: torch.zeros(shape) for k, shape in state.items()}, path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_cyclestream_file_of_each_family_reads_back(tmp_path: Path) -> None:
    from cyclestream.engine.checkpoint import save_model
    from cyclestream.engine.models import build_generator
    from cyclestream.engine.models.bicyclegan import BicycleGANSpec
    from cyclestream.engine.models.stargan import StarGANSpec

    for spec in (StarGANSpec(c_dim=3, ngf=4, repeat_num=1), BicycleGANSpec(ngf=2, n_blocks=6, where_add="input")):
        path = save_model(tmp_path / f"{spec.kind}.safetensors", build_generator(spec), spec, {"domains": ["a"]})
        assert load_model(path).spec == spec
