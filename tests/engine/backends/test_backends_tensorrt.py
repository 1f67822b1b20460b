"""The TensorRT backend: what can be checked without a GPU, and the GPU tests (skipped here)."""

from __future__ import annotations

import copy
import importlib.util
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cyclestream.cli import main
from cyclestream.engine.backends import FrameShape
from cyclestream.engine.backends.cache import ShapeProfile
from cyclestream.engine.backends.export import export_program
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError
from cyclestream.engine.jobs.verify import (
    TOLERANCE,
    eager_output,
    model_input,
    random_model,
    relative_l2,
    sample_frames,
)
from cyclestream.engine.models import GeneratorSpec

HAVE_TRT = importlib.util.find_spec("tensorrt") is not None
HAVE_CUDA = torch.cuda.is_available()
NO_GPU_REASON = (
    "TensorRT tests need an NVIDIA GPU with CUDA and TensorRT "
    f"(CUDA {'present' if HAVE_CUDA else 'missing'}, TensorRT {'installed' if HAVE_TRT else 'missing'}); "
    "run benchmarks/gpu_check.py on a GPU machine"
)
needs_gpu = pytest.mark.skipif(not (HAVE_TRT and HAVE_CUDA), reason=NO_GPU_REASON)
SPEC = GeneratorSpec(ngf=8, n_blocks=2)


@pytest.mark.skipif(HAVE_TRT and HAVE_CUDA, reason="this machine has TensorRT and a GPU")
def test_without_a_gpu_the_backend_says_what_is_missing() -> None:
    from cyclestream.engine.backends.tensorrt import TensorRTBackend

    with pytest.raises(BackendError, match=r"pip install|NVIDIA GPU"):
        TensorRTBackend()


@pytest.mark.skipif(HAVE_TRT and HAVE_CUDA, reason="this machine has TensorRT and a GPU")
def test_compile_tensorrt_fails_in_one_line_without_a_gpu(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compile", str(tiny_model), "--target", "tensorrt", "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cyclestream: error:") and len(err.splitlines()) == 1


@pytest.mark.slow
def test_plugin_graph_is_exportable_over_a_dynamic_profile() -> None:
    """What torch-tensorrt receives on the plugin path: the fused generator, exported over the profile,
    with every instance norm as one cyclestream:: custom op (a plugin) and no aten norm left."""
    from cyclestream.engine.models.fuse import fuse_kernels

    model = random_model(SPEC)
    fused = fuse_kernels(copy.deepcopy(model.generator), "reference").eval()
    profile = ShapeProfile.parse("2x3x32x32:4x3x64x96")
    program = export_program(fused, profile, multiple=model.spec.size_multiple, dtype=torch.float32,
                             device=torch.device("cpu"))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert sum("cyclestream.instance_norm_act" in t for t in targets) == 7  # IN+ReLU: stem, 2 down, 2 blocks, 2 up
    assert sum("cyclestream.instance_norm_residual" in t for t in targets) == 2  # one per block
    assert sum("cyclestream.instance_norm" in t for t in targets) == 9
    assert not any("aten.instance_norm" in t or "batch_norm" in t for t in targets)
    module = program.module()
    for n, h, w in [(1, 32, 32), (4, 64, 96), (3, 48, 40)]:  # anywhere inside the profile
        x = model_input(model, sample_frames(n, h, w))
        assert relative_l2(module(x), eager_output(model, x)) < TOLERANCE["fp32"]


def _stargan() -> tuple[LoadedModel, torch.nn.Module]:
    from cyclestream.engine.models import build_generator
    from cyclestream.engine.models.stargan import StarGANSpec

    spec = StarGANSpec(c_dim=3, ngf=4, repeat_num=1)
    torch.manual_seed(5)
    net = build_generator(spec).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return LoadedModel(generator=net, spec=spec, path=Path("star.safetensors"), format="cyclestream"), net


@pytest.mark.slow
def test_a_stargan_label_is_an_input_of_the_program_torch_tensorrt_compiles() -> None:
    """The plugins variant's program takes the label after the image, its batch tied to the frames', so
    one engine follows any --target (and a browser's own) without a rebuild."""
    from cyclestream.engine.models.fuse import fuse_kernels

    _, net = _stargan()
    fused = fuse_kernels(copy.deepcopy(net), "reference", affine=False).eval()  # as build_with_plugins fuses
    profile = ShapeProfile.parse("1x3x32x32:3x3x48x64")
    program = export_program(fused, profile, multiple=4, dtype=torch.float32, device=torch.device("cpu"),
                             conditioning=[3])  # fmt: skip
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert not any("cyclestream." in t for t in targets)  # only the plugin ops may be custom; affine norms stay aten
    inputs = [n for n in program.graph.nodes if n.op == "placeholder" and n.name in program.graph_signature.user_inputs]
    assert len(inputs) == 2
    module = program.module()
    for n, h, w in [(1, 32, 32), (3, 48, 64), (2, 40, 36)]:
        x = torch.rand(n, 3, h, w) * 2 - 1
        label = torch.eye(3)[torch.arange(n) % 3]  # a different target per frame
        with torch.no_grad():
            assert relative_l2(module(x, label), net(x, label)) < 1e-5


def test_aot_variant_is_offered_only_with_the_plugin_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import cyclestream.engine.backends.tensorrt as trt_backend

    monkeypatch.delenv(trt_backend.PLUGIN_LIBRARY_ENV, raising=False)
    monkeypatch.setattr(trt_backend, "SOURCE_BUILD_DIR", tmp_path / "build")
    monkeypatch.setattr(trt_backend, "torch_tensorrt_version", lambda: "2.13.0")
    assert trt_backend.plugin_library() is None
    assert trt_backend.default_variants() == ("plugins", "native")
    with pytest.raises(BackendError, match=r"cmake -S \. -B build"):
        trt_backend.load_plugin_library()
    built = tmp_path / "build" / trt_backend.PLUGIN_LIBRARY_NAME  # as `cmake --build build` leaves it
    built.parent.mkdir()
    built.write_bytes(b"\x7fELF")
    assert trt_backend.plugin_library() == built
    assert trt_backend.default_variants() == ("aot", "plugins", "native")
    monkeypatch.setenv(trt_backend.PLUGIN_LIBRARY_ENV, str(tmp_path / "missing.so"))
    with pytest.raises(BackendError, match="is not a file"):
        trt_backend.plugin_library()


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["aot", "plugins", "native"])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_engine_matches_eager_and_is_cached(variant: str, precision: str, tmp_path: Path) -> None:
    from cyclestream.engine.backends.tensorrt import TensorRTBackend, variant_unavailable

    if reason := variant_unavailable(variant):
        pytest.skip(reason)
    model = random_model(SPEC)
    backend = TensorRTBackend("cuda", tmp_path, variants=(variant,))
    backend.prepare(model, FrameShape(2, 48, 64), precision)  # type: ignore[arg-type]
    assert variant in backend.describe()
    for n, h, w in [(2, 48, 64), (1, 48, 64), (1, 40, 40)]:  # prepared, short last batch, another size
        frames = sample_frames(n, h, w)
        assert backend.run(frames).shape == (n, h, w, 3)
        x = model_input(model, frames)
        error = relative_l2(backend.infer(x).float().cpu(), eager_output(model, x))
        assert error < (2e-2 if precision == "fp16" else 5e-3)
    engines = sorted((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 2  # the prepared profile and the 40x40 one
    again = TensorRTBackend("cuda", tmp_path, variants=(variant,))
    again.prepare(model, FrameShape(1, 48, 64), precision)  # type: ignore[arg-type]
    assert sorted((tmp_path / "engines").glob("*.engine")) == engines  # reused, not rebuilt


@needs_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("variant", ["aot", "plugins", "native"])
def test_a_stargan_engine_takes_the_label_as_an_input(variant: str, tmp_path: Path) -> None:
    from cyclestream.engine.backends.tensorrt import TensorRTBackend, variant_unavailable

    if reason := variant_unavailable(variant):
        pytest.skip(reason)
    model, net = _stargan()
    backend = TensorRTBackend("cuda", tmp_path, variants=(variant,))
    backend.conditioning = (torch.tensor([[0.0, 1.0, 0.0]]),)
    backend.prepare(model, FrameShape(2, 32, 32), "fp32")  # type: ignore[arg-type]
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    for label in ([0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.2, 0.5, 1.0]):  # one engine, each value
        backend.conditioning = (torch.tensor([label]),)
        with torch.no_grad():
            want = net(x, backend.conditioning[0].expand(2, -1))
        assert relative_l2(backend.infer(x.cuda()).float().cpu(), want) < 5e-3


def test_engine_build_falls_back_to_native_with_a_warning_and_is_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """get_engine's orchestration with the TensorRT calls stubbed: plugins fail → native, cached, reused."""
    import cyclestream.engine.backends.tensorrt as trt_backend

    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: SimpleNamespace(__version__="10.13.0"))
    monkeypatch.setattr(trt_backend, "gpu_name", lambda device: "Fake GPU (sm_89)")
    monkeypatch.setattr(trt_backend, "plugin_library", lambda: None)  # no native plugin library: no aot variant
    monkeypatch.setattr(trt_backend, "torch_tensorrt_version", lambda: "2.13.0")  # a plugins-capable one
    calls: list[str] = []

    def plugins(*args: object, **kwargs: object) -> bytes:
        calls.append("plugins")
        raise RuntimeError("no QDP support in this TensorRT")

    def native(*args: object, **kwargs: object) -> bytes:
        calls.append("native")
        return b"serialized engine"

    monkeypatch.setattr(trt_backend, "build_with_plugins", plugins)
    monkeypatch.setattr(trt_backend, "build_native", native)
    model, cpu = random_model(SPEC), torch.device("cpu")
    wide = ShapeProfile.parse("1x3x64x64:4x3x256x256")
    with caplog.at_level(logging.INFO, logger="cyclestream"):
        built = trt_backend.get_engine(model, wide, precision="fp16", device=cpu, cache_dir=tmp_path)
    assert calls == ["plugins", "native"]
    assert built.key.variant == "native" and built.path.read_bytes() == b"serialized engine"
    assert "plugins failed (no QDP support in this TensorRT)" in caplog.text
    assert "building a TensorRT engine" in caplog.text  # the progress message
    inside = trt_backend.get_engine(model, ShapeProfile.parse("2x3x128x128"), precision="fp16", device=cpu,
                                    cache_dir=tmp_path)
    assert inside.path == built.path and inside.seconds == 0 and len(calls) == 2  # reused, not rebuilt
    trt_backend.get_engine(model, wide, precision="fp32", device=cpu, cache_dir=tmp_path)
    assert calls[2:] == ["plugins", "native"]  # another precision is another engine
    monkeypatch.setattr(trt_backend, "build_native", plugins)
    with pytest.raises(BackendError, match=r"plugins: no QDP .*; native: no QDP"):
        trt_backend.get_engine(random_model(SPEC, seed=1), wide, precision="fp16", device=cpu, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("installed", "offered"),
    [(None, False), ("2.6.0", False), ("2.12.1+cu130", False), ("2.13.0", True), ("2.14.0.dev20260301", True)],
)
def test_plugins_variant_needs_a_torch_tensorrt_that_passes_the_ops_attributes(
    installed: str | None, offered: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """torch-tensorrt ≤ 2.12 generates a shape function that calls the op without ``act``/``eps``: the
    plugins variant is not offered and not built there, with a one-line reason; native still builds."""
    import cyclestream.engine.backends.tensorrt as trt_backend

    monkeypatch.setattr(trt_backend, "import_tensorrt", lambda: SimpleNamespace(__version__="10.13.0"))
    monkeypatch.setattr(trt_backend, "gpu_name", lambda device: "Fake GPU (sm_90)")
    monkeypatch.setattr(trt_backend, "plugin_library", lambda: None)
    monkeypatch.setattr(trt_backend, "torch_tensorrt_version", lambda: installed)
    calls: list[str] = []
    monkeypatch.setattr(trt_backend, "build_with_plugins", lambda *a, **k: calls.append("plugins") or b"plugins engine")
    monkeypatch.setattr(trt_backend, "build_native", lambda *a, **k: calls.append("native") or b"native engine")
    reason = trt_backend.variant_unavailable("plugins")
    assert (reason is None) == offered
    assert trt_backend.default_variants() == (("plugins", "native") if offered else ("native",))
    if not offered:
        assert "\n" not in reason and "2.13" in reason and ("not installed" in reason or installed in reason)
    with caplog.at_level(logging.INFO, logger="cyclestream"):
        built = trt_backend.get_engine(
            random_model(SPEC), ShapeProfile.parse("1x3x64x64"), precision="fp16", device=torch.device("cpu"),
            cache_dir=tmp_path,
            variants=("plugins", "native"),
        )  # fmt: skip
    assert calls == (["plugins"] if offered else ["native"])
    assert built.key.variant == calls[0]
    if not offered:
        assert "TensorRT variant plugins skipped" in caplog.text
