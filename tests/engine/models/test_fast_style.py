"""Fast neural style (pytorch/examples ``fast_neural_style``): its published state dicts load as they are —
old ones with instance-norm running statistics too —, are recognised by keys and shapes alone, and run on
pixel values through ``translate`` and every CPU backend."""

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
from tests.engine.backends.cpu_backends import CPU_BACKENDS, skip_unless_installed
from tests.engine.media_checks import decoded_frames

LOSSLESS = EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0")


# ----------------------------------------------------------------------------- the reference, written out here
# transformer_net.py of pytorch/examples, layer for layer under its attribute names: each convolution a
# reflection pad of kernel // 2 then ``conv2d``; the up-convolutions a nearest ×2 Upsample first; affine
# InstanceNorm2d; ReLU after every norm but a residual block's second; no output activation.


class RefConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, up: bool = False) -> None:
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="nearest") if up else nn.Identity()
        self.reflection_pad = nn.ReflectionPad2d(k // 2)
        self.conv2d = nn.Conv2d(cin, cout, k, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2d(self.reflection_pad(self.up(x)))


class RefBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1, self.in1 = RefConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)
        self.conv2, self.in2 = RefConv(c, c, 3), nn.InstanceNorm2d(c, affine=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.in2(self.conv2(nn.functional.relu(self.in1(self.conv1(x))))) + x


class RefTransformerNet(nn.Module):
    def __init__(self, w: int = 32) -> None:
        super().__init__()
        norm = lambda c: nn.InstanceNorm2d(c, affine=True)  # noqa: E731
        self.conv1, self.in1 = RefConv(3, w, 9), norm(w)
        self.conv2, self.in2 = RefConv(w, 2 * w, 3, 2), norm(2 * w)
        self.conv3, self.in3 = RefConv(2 * w, 4 * w, 3, 2), norm(4 * w)
        self.res1, self.res2, self.res3, self.res4, self.res5 = (RefBlock(4 * w) for _ in range(5))
        self.deconv1, self.in4 = RefConv(4 * w, 2 * w, 3, up=True), norm(2 * w)
        self.deconv2, self.in5 = RefConv(2 * w, w, 3, up=True), norm(w)
        self.deconv3 = RefConv(w, 3, 9)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = nn.functional.relu
        y = r(self.in3(self.conv3(r(self.in2(self.conv2(r(self.in1(self.conv1(x)))))))))
        y = self.res5(self.res4(self.res3(self.res2(self.res1(y)))))
        return self.deconv3(r(self.in5(self.deconv2(r(self.in4(self.deconv1(y)))))))


def reference(width: int, seed: int) -> RefTransformerNet:
    """A reference network with weights that make every layer matter (norm scales away from 1)."""
    torch.manual_seed(seed)
    net = RefTransformerNet(width)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith("in") or ".in" in name:
                p.copy_(1 + 0.3 * torch.randn_like(p) if name.endswith("weight") else 0.2 * torch.randn_like(p))
        net.deconv3.conv2d.bias.fill_(128.0)  # centred on the pixel scale
        net.deconv3.conv2d.weight.mul_(20.0)
    return net.eval()


def old_file(net: nn.Module, path: Path) -> Path:
    """The state dict as PyTorch before 0.4 saved it: every instance norm with running statistics."""
    state = dict(net.state_dict())
    for name, module in net.named_modules():
        if isinstance(module, nn.InstanceNorm2d):
            state[f"{name}.running_mean"] = torch.zeros(module.num_features)
            state[f"{name}.running_var"] = torch.ones(module.num_features)
    torch.save(state, path)
    return path


def pixels(seed: int, n: int, side: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, side, side), generator=g).float()


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[RefTransformerNet, Path]:
    net = reference(4, 5)
    return net, old_file(net, tmp_path_factory.mktemp("fast_style") / "mosaic.model")


# ----------------------------------------------------------------------------- loading


def test_published_files_load_as_they_are_and_compute_the_reference(tmp_path: Path) -> None:
    net = reference(32, 1)
    x = pixels(2, 1, 36)
    with torch.no_grad():
        expected = net(x)
    for path in (old_file(net, tmp_path / "candy.model"), tmp_path / "udnie.pth"):
        if not path.exists():
            torch.save(net.state_dict(), path)  # a newer file: no running statistics
        model = load_model(path)
        assert model.family.name == "fast_style" and model.format == "official"
        assert model.spec.to_dict() == {"kind": "fast_style", "input_nc": 3, "ngf": 32, "n_blocks": 5}
        assert model.spec.official_name == "transformer_net" and model.parameter_count == 1_679_235
        assert set(model.generator.state_dict()) == set(net.state_dict())
        assert model.family.value_range == (0.0, 255.0)
        with torch.no_grad():
            torch.testing.assert_close(model.generator(x), expected, rtol=1e-5, atol=1e-3)
    own = load_model(save_model(tmp_path / "own.safetensors", model.generator, model.spec))
    assert own.format == "cyclestream" and own.spec == model.spec


def test_info_names_the_family_and_its_pixel_scale(
    small: tuple[RefTransformerNet, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(small[1]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["family"] == "fast_style" and info["architecture"] == "transformer_net"
    assert info["value_range"] == [0.0, 255.0] and info["size_multiple"] == 4 and info["image_input"] is True


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.update({"conv1.conv2d.weight": torch.zeros(4, 3, 7, 7)}), "are 9x9"),
        (lambda s: [s.pop(k) for k in list(s) if k.startswith("res2.")], r"not res1\.\.resN"),
        (lambda s: s.pop("in4.weight"), r"weights do not fit a transformer_net_4blocks|missing"),
        (lambda s: s.update({"in1.weight": torch.zeros(5)}), "shape mismatch"),
    ],
    ids=["7x7-first", "gap-in-blocks", "norm-missing", "norm-shape"],
)
def test_damaged_layouts_are_one_line(
    small: tuple[RefTransformerNet, Path], tmp_path: Path, change: Callable[[dict], object], match: str
) -> None:
    state = dict(small[0].state_dict())
    change(state)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=match) as err:
        load_model(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_other_families_files_are_not_taken_for_it(tmp_path: Path) -> None:
    from cyclestream.engine.models import GeneratorSpec, build_generator

    path = tmp_path / "latest_net_G.pth"
    torch.save(build_generator(GeneratorSpec(ngf=4, n_blocks=2)).state_dict(), path)
    assert load_model(path).family.name == "resnet"


# ----------------------------------------------------------------------------- running


def _by_hand(net: nn.Module, frame: np.ndarray) -> np.ndarray:
    """The reference on one uint8 RGB frame: its pixel values in, rounded and clamped pixel values out,
    padded to a multiple of 4 by reflection and cropped back."""
    x = torch.from_numpy(frame).permute(2, 0, 1)[None].float()
    h, w = x.shape[2:]
    ph, pw = (-h) % 4, (-w) % 4
    x = nn.functional.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="reflect")
    with torch.no_grad():
        y = net(x)[:, :, ph // 2 : ph // 2 + h, pw // 2 : pw // 2 + w]
    return y.round().clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()


def test_translate_runs_it_on_pixel_values_frame_for_frame_and_with_temporal(
    small: tuple[RefTransformerNet, Path], make_clip: Callable[..., Path], tmp_path: Path
) -> None:
    net, path = small
    src = make_clip("in.mkv", width=38, height=30, frames=4)
    out = tmp_path / "styled.mkv"
    eager = TranslateOptions(temporal="off", run=RunOptions(backend="eager"), encode=LOSSLESS, progress=False)
    translate(src, out, path, eager)
    inputs, outputs = decoded_frames(src), decoded_frames(out)
    assert len(outputs) == len(inputs) == 4
    for i, (a, b) in enumerate(zip(inputs, outputs, strict=True)):
        diff = np.abs(b.astype(int) - _by_hand(net, a).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, f"frame {i}"  # a rounding edge, nothing more
    steady = tmp_path / "steady.mkv"
    translate(src, steady, path, TranslateOptions(run=RunOptions(backend="eager"), encode=LOSSLESS, progress=False))
    assert len(decoded_frames(steady)) == 4


BACKENDS = CPU_BACKENDS


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_every_cpu_backend_matches_eager_fp32(
    small: tuple[RefTransformerNet, Path],
    backend_name: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    skip_unless_installed(backend_name)
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "fast-style-cache"))
    model: LoadedModel = load_model(small[1])
    backend = prepare_backend(model, RunOptions(backend=backend_name, batch_size=2), 32, 32)
    x = pixels(4, 2, 32)
    with torch.no_grad():
        expected = small[0](x)
    got = backend.infer(x)
    assert float((got - expected).norm() / expected.norm()) <= 1e-4, backend.describe()
    frames = x.permute(0, 2, 3, 1).to(torch.uint8)
    eager = prepare_backend(model, RunOptions(backend="eager", batch_size=2), 32, 32)
    assert (backend.run(frames).int() - eager.run(frames).int()).abs().max() <= 1
    backend.close()
    eager.close()
