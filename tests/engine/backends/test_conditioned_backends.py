"""A StarGAN label and a BicycleGAN z reach every backend that runs them as an input of the generator —
eager, compile, ONNX Runtime (through the cached ONNX export) and OpenVINO — not baked in: one prepared backend
follows a change of the value, and each matches the generator run by hand within 1e-4."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import LoadedModel, load_model, save_model
from cyclestream.engine.conditioning import conditioning_inputs
from cyclestream.engine.errors import BackendError, CheckpointError
from cyclestream.engine.models import build_generator
from cyclestream.engine.models.bicyclegan import BicycleGANSpec
from cyclestream.engine.models.stargan import StarGANSpec

pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'cyclestream[onnx]')")
pytest.importorskip("onnxscript", reason="the dynamo ONNX exporter needs onnxscript")

BACKENDS = ["eager", "compile", "onnxruntime", "openvino"]  # tensorrt: tests/engine/backends/test_backends_tensorrt.py
DOMAINS = ["openmoji", "twemoji", "noto"]


def _randomised(spec: object, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = build_generator(spec)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return net


@pytest.fixture(scope="module")
def stargan(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    spec = StarGANSpec(c_dim=3, ngf=4, repeat_num=1)
    path = tmp_path_factory.mktemp("stargan") / "star.safetensors"
    return load_model(save_model(path, _randomised(spec, 1), spec, {"domains": DOMAINS}))


@pytest.fixture(scope="module")
def bicyclegan(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    spec = BicycleGANSpec(ngf=2, n_blocks=6, where_add="all")
    path = tmp_path_factory.mktemp("bicyclegan") / "bicycle.safetensors"
    return load_model(save_model(path, _randomised(spec, 2), spec))


def _frame(seed: int, side: int) -> torch.Tensor:
    return torch.randint(0, 256, (2, side, side, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _checked(
    model: LoadedModel, backend_name: str, cache: Path, monkeypatch: pytest.MonkeyPatch, **keywords: object
) -> None:
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(cache))
    if backend_name == "openvino":
        pytest.importorskip("openvino", reason="OpenVINO is not installed")
    if backend_name == "compile" and shutil.which("g++") is None:
        pytest.skip("torch.compile on the CPU needs a C++ compiler (g++)")
    run = RunOptions(backend=backend_name, batch_size=2, **keywords)  # type: ignore[arg-type]
    side = max(32, model.spec.size_multiple)
    backend = prepare_backend(model, run, side, side)
    x = _frame(3, side).permute(0, 3, 1, 2).float() / 127.5 - 1
    for value in conditioning_inputs(model, run.target, run.z_seed), None:
        if value is not None:
            backend.conditioning = value
        else:  # another value into the same prepared backend: an input, not a constant
            backend.conditioning = tuple(torch.rand_like(c) for c in backend.conditioning)
        with torch.no_grad():
            expected = model.generator(x, *(c.expand(2, -1) for c in backend.conditioning))
        got = backend.infer(x)
        assert _relative(got, expected) <= 1e-4, backend.describe()
        with torch.no_grad():  # a shorter last batch (compile pads it to the prepared batch) keeps its rows
            assert _relative(backend.infer(x[:1]), expected[:1]) <= 1e-4, backend.describe()
    backend.close()


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_stargan_label_is_an_input_of_every_backend(
    stargan: LoadedModel,
    backend_name: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _checked(stargan, backend_name, tmp_path_factory.getbasetemp() / "cond-cache", monkeypatch, target="twemoji")


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_a_bicyclegan_z_is_an_input_of_every_backend(
    bicyclegan: LoadedModel,
    backend_name: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _checked(bicyclegan, backend_name, tmp_path_factory.getbasetemp() / "cond-cache", monkeypatch, z_seed=7)


def test_the_exported_graph_takes_the_label_as_an_input(stargan: LoadedModel, tmp_path: Path) -> None:
    from cyclestream.engine.backends.export import export_onnx

    export_onnx(stargan, tmp_path / "star.onnx")
    graph = onnx.load(str(tmp_path / "star.onnx")).graph
    assert [i.name for i in graph.input] == ["input", "target"]


def test_targets_are_read_as_names_indices_or_vectors(stargan: LoadedModel, bicyclegan: LoadedModel) -> None:
    def label(target: str) -> list[float]:
        return conditioning_inputs(stargan, target, None)[0][0].tolist()

    assert label("twemoji") == label("1") == label("0,1,0") == [0.0, 1.0, 0.0]
    assert label("0.5,0,1") == [0.5, 0.0, 1.0]
    z7 = conditioning_inputs(bicyclegan, None, 7)[0]
    assert torch.equal(z7, conditioning_inputs(bicyclegan, None, 7)[0]) and z7.shape == (1, 8)
    assert not torch.equal(z7, conditioning_inputs(bicyclegan, None, 8)[0])
    assert not conditioning_inputs(bicyclegan, None, None)[0].any()  # no seed: the prior's mean
    for target, match in (
        ("emoji", r"not a target of .*one of openmoji, twemoji, noto"),
        ("3", "index 0..2"),
        ("1,0", "label of 3 comma-separated values"),
        (None, r"pass --target \(openmoji"),
    ):
        with pytest.raises(CheckpointError, match=match) as err:
            conditioning_inputs(stargan, target, None)
        assert "\n" not in str(err.value) and str(stargan.path) in str(err.value)
    with pytest.raises(CheckpointError, match=r"--z-seed was given, but .* has no latent input"):
        conditioning_inputs(stargan, "1", 3)
    with pytest.raises(CheckpointError, match=r"--target was given, but .* has no label input"):
        conditioning_inputs(bicyclegan, "1", None)


def test_int8_is_refused_in_one_line_and_auto_takes_eager(stargan: LoadedModel) -> None:
    with pytest.raises(BackendError, match="int8 is not offered"):
        prepare_backend(stargan, RunOptions(backend="onnxruntime", precision="int8", target="1"), 32, 32)
    auto = prepare_backend(stargan, dataclasses.replace(RunOptions(), target="noto"), 32, 32)
    assert auto.describe().startswith("eager")


def _by_hand(model: LoadedModel, rgb: np.ndarray, value: torch.Tensor) -> np.ndarray:
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = model.generator(x, value)
    return ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()


def test_translate_and_the_api_take_the_target_and_the_z_seed(
    stargan: LoadedModel, bicyclegan: LoadedModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from PIL import Image

    import cyclestream
    from cyclestream.cli import main

    rgb = _frame(5, 64)[0].numpy()
    src = tmp_path / "in.png"
    Image.fromarray(rgb).save(src)  # PNG: lossless both ways
    for model, flags, value in (
        (stargan, ["--target", "noto"], torch.tensor([[0.0, 0.0, 1.0]])),
        (bicyclegan, ["--z-seed", "4"], torch.randn(1, 8, generator=torch.Generator().manual_seed(4))),
    ):
        out = tmp_path / f"{model.spec.kind}.png"
        argv = [
            "translate",
            str(src),
            str(out),
            "--model",
            str(model.path),
            "--backend",
            "eager",
            "--temporal",
            "off",
            "--no-preview",
            *flags,
        ]
        assert main(argv) == 0, capsys.readouterr().err
        expected = _by_hand(model, rgb, value)
        assert np.array_equal(np.asarray(Image.open(out).convert("RGB")), expected)
        keywords = {"target": "noto"} if flags[0] == "--target" else {"z_seed": 4}
        got = cyclestream.load(model.path, backend="eager", **keywords)(rgb)
        assert np.array_equal(got, expected)
    out = tmp_path / "none.png"
    assert main(["translate", str(src), str(out), "--model", str(stargan.path), "--no-preview"]) != 0
    err = capsys.readouterr().err
    assert "pass --target (openmoji, twemoji, noto)" in err and "Traceback" not in err and not out.exists()


def _walk_by_hand(seed: int, seconds: float, t: float) -> torch.Tensor:
    """The documented path: seed k's z at k·S, smoothstep-weighted and renormalised in between."""
    k, u = int(t // seconds), (t % seconds) / seconds
    w = 3 * u**2 - 2 * u**3
    a, b = (torch.randn(1, 8, generator=torch.Generator().manual_seed(seed + j)) for j in (k, k + 1))
    return (a * (1 - w) + b * w) / ((1 - w) ** 2 + w**2) ** 0.5


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg to make the clip")
def test_z_walk_follows_each_frames_time_through_a_video(bicyclegan: LoadedModel, tmp_path: Path) -> None:
    import av

    from cyclestream.engine.jobs.translate import TranslateOptions, translate
    from cyclestream.engine.media.encode_options import EncodeOptions

    src, out = tmp_path / "in.mkv", tmp_path / "out.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x64:rate=10", "-frames:v", "7",
                    "-c:v", "ffv1", "-pix_fmt", "bgr0", str(src)], check=True)  # fmt: skip
    lossless = EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0")
    run = RunOptions(backend="eager", batch_size=3, z_seed=2, z_walk=0.25)  # batches mix frames of two legs
    translate(src, out, bicyclegan.path, TranslateOptions(temporal="off", run=run, encode=lossless, progress=False,
                                                          preview=False))  # fmt: skip
    with av.open(str(src)) as c:
        frames = [(f.to_ndarray(format="rgb24"), float(f.time)) for f in c.decode(video=0)]
    with av.open(str(out)) as c:
        outputs = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(outputs) == len(frames) == 7
    for i, ((rgb, t), got) in enumerate(zip(frames, outputs, strict=True)):
        want = _by_hand(bicyclegan, rgb, _walk_by_hand(2, 0.25, t))  # one image; the job ran batches of 3
        assert np.abs(got.astype(int) - want).max() <= 1 and (got != want).mean() < 1e-3, f"frame {i} at {t} s"
    elsewhere = _by_hand(bicyclegan, frames[3][0], _walk_by_hand(2, 0.25, 0.1))  # another time's z: far off
    assert np.abs(outputs[3].astype(int) - elsewhere).max() > 8


def test_compile_and_bench_model_refuse_a_conditioned_model_in_one_line(
    stargan: LoadedModel, bicyclegan: LoadedModel, capsys: pytest.CaptureFixture[str]
) -> None:
    from cyclestream.cli import main

    for model, flag in ((stargan, "--target"), (bicyclegan, "--z-seed/--z-walk")):
        for argv in (["compile", str(model.path), "--target", "onnx"], ["bench", "model", "--model", str(model.path)]):
            assert main(argv) != 0
            err = capsys.readouterr().err.strip()
            assert f"({flag} input): {argv[0]}" in err and "runs image-only generators" in err, err
            assert "unexpected" not in err and len(err.splitlines()) == 1
