"""AnimeGANv2 (bryandlee/animegan2-pytorch): its published ``*.pt`` state dicts load as they are, are told
apart from every other family by keys and shapes alone, and run on (-1, 1) through ``translate`` and every
CPU backend as the port's ``test.py`` runs them."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model, save_model
from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.models import GeneratorSpec, families
from cyclestream.engine.models import animegan2 as family_module
from cyclestream.engine.models.animegan2 import AnimeGAN2Spec
from tests.engine.backends.cpu_backends import CPU_BACKENDS, skip_unless_installed
from tests.engine.media_checks import decoded_frames

LOSSLESS = EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0")


# ----------------------------------------------------------------------------- the reference, written out here
# model.py of the port, layer for layer under its attribute names (at width w; the published files have
# w = 32).  "cnl": Sequential(pad, conv without bias, GroupNorm(1, C), LeakyReLU(0.2)), the pad half the
# kernel by reflection, or (0, 1, 0, 1) for the stride-2 ones.  An inverted residual block: Sequential
# ``layers`` = cnl 1x1 to 2*cin, depthwise cnl 3x3 with bias, conv 1x1 without bias, GroupNorm(1, cout);
# the input added when cin == cout.  forward(x, align_corners): a, b, c, upsample, d, upsample, e, out.


def cnl(
    cin: int, cout: int, k: int = 3, stride: int = 1, padding: int | tuple = 1, groups: int = 1, bias: bool = False
):
    return nn.Sequential(
        nn.ReflectionPad2d(padding),
        nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=0, groups=groups, bias=bias),
        nn.GroupNorm(num_groups=1, num_channels=cout, affine=True),
        nn.LeakyReLU(0.2),
    )


class RefInvertedRes(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = 2 * cin
        self.use_res = cin == cout
        self.layers = nn.Sequential(
            cnl(cin, mid, k=1, padding=0),
            cnl(mid, mid, groups=mid, bias=True),
            nn.Conv2d(mid, cout, kernel_size=1, padding=0, bias=False),
            nn.GroupNorm(num_groups=1, num_channels=cout, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.layers(x) if self.use_res else self.layers(x)


class RefGenerator(nn.Module):
    def __init__(self, w: int = 32) -> None:
        super().__init__()
        down = (0, 1, 0, 1)
        self.block_a = nn.Sequential(
            cnl(3, w, k=7, padding=3), cnl(w, 2 * w, stride=2, padding=down), cnl(2 * w, 2 * w)
        )
        self.block_b = nn.Sequential(cnl(2 * w, 4 * w, stride=2, padding=down), cnl(4 * w, 4 * w))
        self.block_c = nn.Sequential(
            cnl(4 * w, 4 * w),
            RefInvertedRes(4 * w, 8 * w),
            RefInvertedRes(8 * w, 8 * w),
            RefInvertedRes(8 * w, 8 * w),
            RefInvertedRes(8 * w, 8 * w),
            cnl(8 * w, 4 * w),
        )
        self.block_d = nn.Sequential(cnl(4 * w, 4 * w), cnl(4 * w, 4 * w))
        self.block_e = nn.Sequential(cnl(4 * w, 2 * w), cnl(2 * w, 2 * w), cnl(2 * w, w, k=7, padding=3))
        self.out_layer = nn.Sequential(nn.Conv2d(w, 3, kernel_size=1, stride=1, padding=0, bias=False), nn.Tanh())

    def forward(self, x: torch.Tensor, align_corners: bool = True) -> torch.Tensor:
        f = nn.functional.interpolate
        out = self.block_a(x)
        half = out.size()[-2:]
        out = self.block_c(self.block_b(out))
        if align_corners:
            out = f(out, half, mode="bilinear", align_corners=True)
        else:
            out = f(out, scale_factor=2, mode="bilinear", align_corners=False)
        out = self.block_d(out)
        if align_corners:
            out = f(out, x.size()[-2:], mode="bilinear", align_corners=True)
        else:
            out = f(out, scale_factor=2, mode="bilinear", align_corners=False)
        return self.out_layer(self.block_e(out))


def reference(width: int, seed: int) -> RefGenerator:
    """A reference network whose every layer matters: norm scales and shifts away from 1 and 0."""
    torch.manual_seed(seed)
    net = RefGenerator(width)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.GroupNorm):
                m.weight.copy_(1 + 0.3 * torch.randn_like(m.weight))
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
            elif isinstance(m, nn.Conv2d) and m.bias is not None:
                m.bias.copy_(0.2 * torch.randn_like(m.bias))
    return net.eval()


def as_test_py(net: RefGenerator, frame: np.ndarray, upsample_align: bool = False) -> np.ndarray:
    """The port's test.py on one uint8 RGB image (no --x32): to_tensor * 2 - 1, the net with align_corners
    ``--upsample_align``, clip(-1, 1) * 0.5 + 0.5, to_pil_image (× 255, truncated to a byte)."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float().div(255) * 2 - 1
    with torch.no_grad():
        out = net(x, upsample_align).squeeze(0).clip(-1, 1) * 0.5 + 0.5
    return out.mul(255).byte().permute(1, 2, 0).numpy()


def unit(seed: int, n: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 3, h, w), generator=g) * 2 - 1


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[RefGenerator, Path]:
    net = reference(4, 5)
    path = tmp_path_factory.mktemp("animegan2") / "paprika.pt"
    torch.save(net.state_dict(), path)
    return net, path


# ----------------------------------------------------------------------------- loading


def test_published_files_load_as_they_are_and_compute_the_reference(tmp_path: Path) -> None:
    net = reference(32, 1)
    path = tmp_path / "face_paint_512_v2.pt"
    torch.save(net.state_dict(), path)
    model = load_model(path)
    assert model.family.name == "animegan2" and model.format == "official"
    assert model.metadata == {"source": "bryandlee/animegan2-pytorch"}
    assert model.spec.to_dict() == {
        "kind": "animegan2", "input_nc": 3, "width": 32, "n_blocks": 4, "upsample_align": False,
    }  # fmt: skip
    assert model.spec.official_name == "animegan2" and model.parameter_count == 2_143_552
    assert set(model.generator.state_dict()) == set(net.state_dict())
    assert model.family.value_range == (-1.0, 1.0)
    x = unit(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model.generator(x), net(x, False), rtol=0, atol=1e-4)
        aligned = load_model(save_model(tmp_path / "aligned.safetensors", model.generator,
                                        AnimeGAN2Spec(upsample_align=True)))  # fmt: skip
        assert aligned.spec.official_name == "animegan2_aligned"
        torch.testing.assert_close(aligned.generator(x), net(x, True), rtol=0, atol=1e-4)
    own = load_model(save_model(tmp_path / "own.safetensors", model.generator, model.spec))
    assert own.format == "cyclestream" and own.spec == model.spec


def test_info_names_the_family(small: tuple[RefGenerator, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(small[1]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "animegan2" and info["architecture"] == "animegan2_w4_4blocks"
    assert info["value_range"] == [-1.0, 1.0] and info["size_multiple"] == 4 and info["image_input"] is True
    assert info["runs"].startswith("upsampling ×2 without aligned corners (test.py's default; --upsample align")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.update({"block_a.0.1.weight": torch.zeros(4, 3, 5, 5)}), "is 7x7"),
        (lambda s: s.update({"out_layer.0.weight": torch.zeros(3, 5, 1, 1)}), "to RGB at out_layer.0"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("block_c.2.")], r"not block_c\.1\.\.N"),
        (lambda s: s.pop("block_d.1.2.weight"), r"weights do not fit a animegan2_w4_4blocks generator \(missing"),
        (lambda s: s.update({"block_e.0.2.bias": torch.zeros(5)}), "shape mismatch"),
    ],
    ids=["5x5-first", "out-width", "gap-in-blocks", "norm-missing", "norm-shape"],
)
def test_damaged_layouts_are_one_line(
    small: tuple[RefGenerator, Path], tmp_path: Path, change: Callable[[dict], object], match: str
) -> None:
    state = dict(small[0].state_dict())
    change(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_no_other_family_claims_it_and_it_claims_no_other() -> None:
    ours = _shapes(reference(4, 0))
    specs = [f.spec_type() for f in families() if f.name != "animegan2" and f.spec_type is not GeneratorSpec]
    specs += [GeneratorSpec("resnet", ngf=4, n_blocks=2), GeneratorSpec("unet", n_blocks=7), GeneratorSpec("mobile")]
    for spec in specs:
        family = spec.family
        if family.recognise is not None:
            assert family.recognise(ours) is None, family.name
        with torch.device("meta"):
            theirs = _shapes(family.build(spec))
        assert family_module.recognise(theirs) is None, family.name
    assert {s.family.name for s in specs} == {f.name for f in families()} - {"animegan2"}


# ----------------------------------------------------------------------------- running


def test_translate_runs_it_as_test_py_does(
    small: tuple[RefGenerator, Path], make_clip: Callable[..., Path], tmp_path: Path
) -> None:
    net, path = small
    src = make_clip("in.mkv", width=36, height=28, frames=3)  # sides of a multiple of 4: test.py runs them as they are
    out = tmp_path / "anime.mkv"
    translate(src, out, path, TranslateOptions(temporal="off", run=RunOptions(backend="eager"), encode=LOSSLESS,
                                               progress=False))  # fmt: skip
    inputs, outputs = decoded_frames(src), decoded_frames(out)
    assert len(outputs) == len(inputs) == 3
    for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
        expected = as_test_py(net, a)
        assert b.shape == expected.shape == a.shape, f"frame {i}"
        # test.py truncates to a byte where the engine rounds: one level at most
        assert np.abs(b.astype(int) - expected.astype(int)).max() <= 1, f"frame {i}"
    odd = make_clip("odd.mkv", width=38, height=30, frames=2)  # padded to 40x32 and cropped back
    translate(odd, tmp_path / "odd_anime.mkv", path, TranslateOptions(temporal="off", run=RunOptions(backend="eager"),
                                                                encode=LOSSLESS, progress=False))  # fmt: skip
    assert [f.shape for f in decoded_frames(tmp_path / "odd_anime.mkv")] == [(30, 38, 3)] * 2


BACKENDS = CPU_BACKENDS


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_every_cpu_backend_matches_eager_fp32(
    small: tuple[RefGenerator, Path],
    backend_name: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skip_unless_installed(backend_name)
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "animegan2-cache"))
    model: LoadedModel = load_model(small[1])
    backend = prepare_backend(model, RunOptions(backend=backend_name, batch_size=2), 32, 32)
    x = unit(4, 2, 32, 32)
    with torch.no_grad():
        expected = small[0](x, False)
    got = backend.infer(x)
    assert float((got - expected).norm() / expected.norm()) <= 1e-4, backend.describe()
    frames = ((x + 1) * 127.5).round().permute(0, 2, 3, 1).to(torch.uint8)
    eager = prepare_backend(model, RunOptions(backend="eager", batch_size=2), 32, 32)
    assert (backend.run(frames).int() - eager.run(frames).int()).abs().max() <= 1
    backend.close()
    eager.close()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_upsample_align_runs_it_as_test_py_upsample_align_true(
    small: tuple[RefGenerator, Path],
    backend_name: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--upsample align: test.py's --upsample_align True, on a frame of sides that are no multiple of 4 (run
    unpadded, as test.py runs it) through every backend; the ×2 way is far from it."""
    skip_unless_installed(backend_name)
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "animegan2-cache"))
    net, path = small
    model = load_model(path)
    frames = torch.randint(0, 256, (2, 30, 38, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(8))
    backend = prepare_backend(model, RunOptions(backend=backend_name, batch_size=2, upsample="align"), 30, 38)
    got = backend.run(frames).numpy()
    backend.close()
    for i, frame in enumerate(frames.numpy()):
        want = as_test_py(net, frame, upsample_align=True)
        assert np.abs(got[i].astype(int) - want).max() <= 1, f"{backend.describe()}, frame {i}"
        crop = frame[:28, :36]  # where test.py's ×2 runs: the choice matters there
        assert np.abs(as_test_py(net, crop).astype(int) - as_test_py(net, crop, upsample_align=True)).max() > 8


def test_upsample_from_the_command_line_and_refused_elsewhere(
    small: tuple[RefGenerator, Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    net, path = small
    rgb = np.random.default_rng(3).integers(0, 256, (26, 34, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    aligned = save_model(tmp_path / "aligned.safetensors", load_model(path).generator, AnimeGAN2Spec(width=4,
                         upsample_align=True))  # fmt: skip
    for model, flags, align in ((path, ["--upsample", "align"], True), (aligned, [], True),
                                (aligned, ["--upsample", "scale"], False), (path, [], False)):  # fmt: skip
        out = tmp_path / "out.png"
        assert main(["translate", str(tmp_path / "in.png"), str(out), "--model", str(model), "--no-preview",
                     *flags]) == 0, flags  # fmt: skip
        got = np.asarray(Image.open(out).convert("RGB"))
        if align:
            assert np.abs(got.astype(int) - as_test_py(net, rgb, upsample_align=True)).max() <= 1, (model, flags)
        else:  # test.py's ×2 runs on sides of a multiple of 4: the frame's padded copy, cropped back
            assert got.shape == rgb.shape and np.abs(got.astype(int) - as_test_py(net, rgb, True)).max() > 8
    capsys.readouterr()
    assert main(["translate", str(tmp_path / "in.png"), str(tmp_path / "x.png"), "--model", str(tiny_model),
                 "--upsample", "align"]) != 0  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert "--upsample align" in err and str(tiny_model) in err and "AnimeGANv2" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()
