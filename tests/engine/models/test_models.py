"""The engine's generators against a reconstruction of the official ones: keys, shapes, outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.models import GeneratorSpec, build_generator
from tests.engine import official_networks as official

RESNETS = [
    GeneratorSpec("resnet", ngf=64, n_blocks=9),
    GeneratorSpec("resnet", ngf=64, n_blocks=6),
    GeneratorSpec("resnet", ngf=8, n_blocks=3, use_dropout=True),
    GeneratorSpec("resnet", ngf=8, n_blocks=2, padding_type="zero"),
    GeneratorSpec("resnet", ngf=8, n_blocks=2, padding_type="zero", use_dropout=True),
    GeneratorSpec("resnet", ngf=8, n_blocks=2, norm="batch"),
    GeneratorSpec("resnet", input_nc=1, output_nc=3, ngf=12, n_blocks=1),
]
UNETS = [
    GeneratorSpec("unet", ngf=4, n_blocks=7, norm="batch"),
    GeneratorSpec("unet", ngf=4, n_blocks=8, norm="instance"),
    GeneratorSpec("unet", ngf=64, n_blocks=8, norm="batch"),
]


def build_official(spec: GeneratorSpec) -> torch.nn.Module:
    norm = official.get_norm_layer(spec.norm)
    if spec.kind == "resnet":
        return official.ResnetGenerator(
            spec.input_nc, spec.output_nc, spec.ngf, norm, spec.use_dropout, spec.n_blocks, spec.padding_type
        )
    return official.UnetGenerator(spec.input_nc, spec.output_nc, spec.n_blocks, spec.ngf, norm, spec.use_dropout)


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    "spec",
    RESNETS + UNETS,
    ids=lambda s: f"{s.official_name}-{s.ngf}-{s.norm}-{s.padding_type}" + ("-dropout" if s.use_dropout else ""),
)
def test_state_dict_matches_official_key_for_key(spec: GeneratorSpec) -> None:
    ours, theirs = build_generator(spec), build_official(spec)
    assert list(shapes(ours)) == list(shapes(theirs))  # same keys, same order
    assert shapes(ours) == shapes(theirs)


def test_official_resnet9_parameter_count() -> None:
    # The official resnet_9blocks generator has 11,378,179 parameters.
    assert sum(p.numel() for p in build_generator(GeneratorSpec()).parameters()) == 11_378_179


SMALL = [s for s in RESNETS if s.ngf <= 12] + [s for s in UNETS if s.ngf <= 4]


@pytest.mark.parametrize(
    "spec", SMALL, ids=lambda s: f"{s.official_name}-{s.norm}-{s.padding_type}" + ("-dropout" if s.use_dropout else "")
)
@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_checkpoint_loads_as_is_and_matches_outputs(spec: GeneratorSpec, prefix: str, tmp_path: Path) -> None:
    net = official.init_weights_normal(build_official(spec), seed=7).eval()
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(official.zoo_style_state_dict(net, prefix), path)

    loaded = load_model(path)

    assert loaded.format == "official"
    assert loaded.spec == spec  # inferred from keys and shapes alone
    side = 2**spec.n_blocks if spec.kind == "unet" else 20
    width = side if spec.kind == "unet" else side + 8
    x = torch.randn(2, spec.input_nc, side, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator(x), net(x), rtol=1e-5, atol=1e-5)


def test_zoo_extra_keys_do_not_hide_a_wrong_architecture(tmp_path: Path) -> None:
    # An official generator whose last block lost a conv: the loader must refuse, not load partially.
    net = build_official(GeneratorSpec(ngf=8, n_blocks=2))
    state = official.zoo_style_state_dict(net)
    del state["model.11.conv_block.5.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(Exception, match=r"do not fit|layout"):
        load_model(tmp_path / "broken.pth")


def test_instance_norm_statistics_stay_fp32_under_bf16() -> None:
    from cyclestream.engine.models.norm import InstanceNorm2d

    x = (torch.randn(1, 4, 64, 64) * 3 + 100).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = InstanceNorm2d(4)(x)
    reference = torch.nn.functional.instance_norm(x.float())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), reference, rtol=1e-2, atol=1e-2)
