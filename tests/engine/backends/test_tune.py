"""``--backend auto`` by measurement: the cache key, the fidelity gate, the pick cache on disk, the
reduced-precision warning, ``--no-tune`` and ``cyclestream tune``.  Tiny models and budgets; nothing here
asserts a speed."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import torch

from cyclestream.engine import machine
from cyclestream.engine.backends import FrameShape
from cyclestream.engine.backends import tune as tune_module
from cyclestream.engine.backends.auto import AutoBackend, plan
from cyclestream.engine.backends.base import Backend, Wrapper
from cyclestream.engine.backends.eager import EagerBackend
from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.backends.quantize import Calibration
from cyclestream.engine.backends.tune import REFERENCE, TUNE_ENV, Setting
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError
from cyclestream.engine.jobs.verify import random_model, sample_frames
from cyclestream.engine.models import GeneratorSpec

TINY = GeneratorSpec(ngf=4, n_blocks=1)
SHAPE = FrameShape(1, 16, 16)
FRAMES = sample_frames(2, 16, 16)


@pytest.fixture(autouse=True)
def tuning_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TUNE_ENV, "1")  # the suite's conftest turns tuning off for every other test
    monkeypatch.setattr(tune_module, "SLICE_S", 0.02)  # each setting timed for two calls, not a second


class Fake(Wrapper):
    """Eager fp32 underneath; ``offset`` added to every pixel (a wrong backend), or ``constant`` frames
    returned at once without running the model (wrong, and faster than anything)."""

    def __init__(self, name: str, offset: int = 0, constant: bool = False) -> None:
        self.name = name  # type: ignore[misc]
        self.offset, self.constant = offset, constant
        self._eager = EagerBackend("cpu")

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: str) -> None:  # type: ignore[override]
        self.precision = precision  # type: ignore[assignment]
        self._eager.prepare(model, shape, "fp32")

    def inner(self) -> Backend:
        return self._eager

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        if self.constant:
            return torch.full_like(frames, 128)
        out = self._eager.run(frames).int()
        return (out + self.offset).clamp(0, 255).to(torch.uint8)


def auto(tmp_path: Path, fakes: dict[str, Fake] | None = None, settings: list[Setting] | None = None,
         budget: float = 30.0) -> AutoBackend:
    """An AutoBackend that measures ``settings`` (eager fp32 alone by default) with a tiny budget, its
    tuning cache in ``tmp_path``, fed the fixed frames above."""
    fakes = fakes or {}

    def factory(name: str, device: str) -> Backend:
        return fakes[name] if name in fakes else EagerBackend(device)

    backend = AutoBackend("cpu", factory)
    backend.budget, backend.progress, backend.cache_dir = budget, False, tmp_path
    backend.calibration = Calibration(given=FRAMES)
    backend.settings = lambda device, precision: [(s, None) for s in [REFERENCE, *(settings or [])]]
    return backend


@pytest.fixture
def measured(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The keys ``tune.measure`` was called for, in order (it still measures)."""
    calls: list[dict[str, object]] = []
    real = tune_module.measure

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(kwargs["key"])  # type: ignore[arg-type]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tune_module, "measure", counting)
    return calls


# ----------------------------------------------------------------------------- the cache key


def test_a_second_run_reuses_the_pick_without_measuring(
    tmp_path: Path, measured: list[dict[str, object]], caplog: pytest.LogCaptureFixture
) -> None:
    model = random_model(TINY)
    auto(tmp_path).prepare(model, SHAPE, "auto")
    assert len(measured) == 1
    assert len(list((tmp_path / "tune").glob("*.json"))) == 1
    with caplog.at_level(logging.INFO, logger="cyclestream"):
        again = auto(tmp_path)
        again.prepare(model, SHAPE, "auto")
    assert len(measured) == 1  # nothing measured the second time
    assert "auto: eager fp32" in caplog.text and "× eager; tuned" in caplog.text and "s ago" in caplog.text
    assert again.run(FRAMES[:1]).shape == (1, 16, 16, 3)


@pytest.mark.parametrize("change", ["model", "size", "batch", "cpu flag", "library version", "precision"])
def test_a_changed_key_measures_again(
    change: str, tmp_path: Path, measured: list[dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    model, shape, precision = random_model(TINY), SHAPE, "auto"
    auto(tmp_path).prepare(model, shape, precision)
    if change == "model":
        model = random_model(TINY, seed=1)
    elif change == "size":
        shape = FrameShape(1, 16, 20)
    elif change == "batch":
        shape = FrameShape(2, 16, 16)
    elif change == "cpu flag":
        flags = machine.cpu_flags()
        monkeypatch.setattr(machine, "cpu_flags", lambda: flags ^ {"avx512_bf16"})
    elif change == "library version":
        versions = tune_module.library_versions()
        monkeypatch.setattr(tune_module, "library_versions", lambda: {**versions, "openvino": "9999.0"})
    else:
        precision = "fp32"
    auto(tmp_path).prepare(model, shape, precision)
    assert len(measured) == 2
    assert measured[0] != measured[1]
    assert len(list((tmp_path / "tune").glob("*.json"))) == 2


# ----------------------------------------------------------------------------- the fidelity gate


def test_a_wrong_backend_is_never_picked_even_when_fastest(tmp_path: Path) -> None:
    fakes = {"wrong": Fake("wrong", constant=True), "shifted": Fake("shifted", offset=3)}
    backend = auto(tmp_path, fakes, [Setting("wrong", "fp32"), Setting("shifted", "fp32")])  # type: ignore[arg-type]
    backend.prepare(random_model(TINY), SHAPE, "auto")
    assert backend.chosen is not fakes["wrong"] and backend.chosen is not fakes["shifted"]
    tuning = tune_module.load_tuning(tune_module.tune_key(
        tune_module.model_digest(random_model(TINY)), SHAPE, "cpu", "auto", "auto"), tmp_path)
    assert tuning is not None
    rows = {r.backend: r for r in tuning.rows}
    assert rows["wrong"].fps and rows["wrong"].fps > rows["eager"].fps  # type: ignore[operator]  # fastest, still out
    assert not rows["wrong"].kept and "dB < 40 dB" in rows["wrong"].why
    assert not rows["shifted"].kept and rows["shifted"].psnr_db == pytest.approx(38.6, abs=0.2)  # 20 log10(255/3)
    assert [r.backend for r in tuning.kept()] == ["eager"]


def test_reduced_precision_has_its_own_gate(tmp_path: Path) -> None:
    """A 38.6 dB difference fails the fp32 gate (40 dB) and passes the int8 one (32 dB)."""
    fakes = {"close": Fake("close", offset=3)}
    backend = auto(tmp_path, fakes, [Setting("close", "int8")])  # type: ignore[arg-type]
    backend.prepare(random_model(TINY), SHAPE, "auto")
    tuning = next(tune_module.Tuning.from_dict(json.loads(p.read_text())) for p in (tmp_path / "tune").iterdir())
    close = next(r for r in tuning.rows if r.backend == "close")
    assert close.kept and close.precision == "int8"


def test_an_explicit_precision_that_nothing_holds_is_refused_with_the_numbers(
    tmp_path: Path, measured: list[dict[str, object]]
) -> None:
    fakes = {"wrong": Fake("wrong", constant=True)}
    backend = auto(tmp_path, fakes, [Setting("wrong", "int8")])  # type: ignore[arg-type]
    with pytest.raises(BackendError, match=r"--precision int8: no setting holds quality here .*wrong int8: .* dB < 32"):
        backend.prepare(random_model(TINY), SHAPE, "int8")
    with pytest.raises(BackendError, match="no setting holds quality"):  # the cached table says so at once
        auto(tmp_path, fakes, [Setting("wrong", "int8")]).prepare(random_model(TINY), SHAPE, "int8")  # type: ignore[arg-type]
    assert len(measured) == 1


def test_the_budget_bounds_the_measurements(tmp_path: Path) -> None:
    fakes = {"other": Fake("other")}
    backend = auto(tmp_path, fakes, [Setting("other", "fp32")], budget=0.0)  # type: ignore[arg-type]
    backend.prepare(random_model(TINY), SHAPE, "auto")
    tuning = tune_module.Tuning.from_dict(json.loads(_only_entry(tmp_path).read_text()))
    assert [(r.backend, r.why) for r in tuning.rows] == [
        ("eager", ""), ("other", "not measured: the budget (0 s) was spent")]  # the reference is always measured
    assert backend.describe() == "eager (cpu, fp32)"


def test_an_explicit_precision_restricts_the_candidates() -> None:
    settings = [s for s, why in tune_module.candidates("cpu", "int8", lambda m: True) if why is None]
    assert settings[0] == REFERENCE  # always measured: the yardstick
    assert {s.precision for s in settings[1:]} == {"int8"}
    every = tune_module.candidates("cpu", "auto", lambda m: True)
    assert {s.precision for s, _ in every} >= {"fp32", "int8", "bf16"}


def test_precisions_the_cpu_lacks_are_not_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"sse2", "avx", "avx2", "fma"})  # an AVX2-only CPU
    found = dict(tune_module.candidates("cpu", "auto", lambda m: True))
    assert "emulated" in (found[Setting("openvino", "bf16")] or "")
    assert found[Setting("openvino", "int8")] is None  # AVX2 has an int8 path
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"sse2"})
    assert "no int8" in (dict(tune_module.candidates("cpu", "auto", lambda m: True))[Setting("openvino", "int8")] or "")


def test_a_failing_pick_falls_back_to_the_next_kept_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, measured: list[dict[str, object]]
) -> None:
    model = random_model(TINY)
    fakes = {"other": Fake("other")}
    auto(tmp_path, fakes, [Setting("other", "fp32")]).prepare(model, SHAPE, "auto")  # type: ignore[arg-type]

    class Broken(Fake):
        def prepare(self, *args: object) -> None:  # type: ignore[override]
            raise BackendError("simulated failure")

    broken = {"other": Broken("other"), "eager": Broken("eager")}
    kept = tune_module.load_tuning(tune_module.tune_key(tune_module.model_digest(model), SHAPE, "cpu", "auto",
                                                        "auto"), tmp_path).kept()  # type: ignore[union-attr]
    first = kept[0].backend
    with caplog.at_level(logging.INFO, logger="cyclestream"):
        backend = auto(tmp_path, {**fakes, first: broken[first]}, [Setting("other", "fp32")])  # type: ignore[arg-type]
        backend.prepare(model, SHAPE, "auto")
    assert f"the tuned {first} fp32 failed to prepare (simulated failure); trying the next" in caplog.text
    assert len(measured) == 1
    assert backend.chosen is not None and backend.chosen.name == kept[1].backend != first


# ----------------------------------------------------------------------------- the cache file (hostile cases)


def _only_entry(tmp_path: Path) -> Path:
    (entry,) = (tmp_path / "tune").glob("*.json")
    return entry


@pytest.mark.parametrize("damage", ["garbage", "other key", "kept unknown precision", "symlink", "fifo", "huge"])
def test_a_damaged_or_planted_cache_entry_is_measured_again(
    damage: str, tmp_path: Path, measured: list[dict[str, object]], caplog: pytest.LogCaptureFixture
) -> None:
    model = random_model(TINY)
    auto(tmp_path).prepare(model, SHAPE, "auto")
    entry = _only_entry(tmp_path)
    data = json.loads(entry.read_text())
    if damage == "garbage":
        entry.write_bytes(b"\x00{not json")
    elif damage == "other key":
        data["key"]["model"] = "0" * 64
        entry.write_text(json.dumps(data))
    elif damage == "kept unknown precision":
        data["rows"][0]["precision"] = "int4"
        entry.write_text(json.dumps(data))
    elif damage == "symlink":
        target = tmp_path / "elsewhere.json"
        target.write_text(json.dumps(data))
        entry.unlink()
        entry.symlink_to(target)
    elif damage == "fifo":
        entry.unlink()
        os.mkfifo(entry)
    else:  # our own table, padded past the size limit: not read whole
        entry.write_text(json.dumps(data) + " " * (2 << 20))
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        backend = auto(tmp_path)
        backend.prepare(model, SHAPE, "auto")  # never blocks on the FIFO, never follows the link
    assert len(measured) == 2
    assert "the tuning cache entry" in caplog.text and "measured again" in caplog.text
    assert _only_entry(tmp_path).is_file() and not _only_entry(tmp_path).is_symlink()
    if damage == "symlink":
        assert json.loads((tmp_path / "elsewhere.json").read_text()) == data  # the link's target is untouched
    assert backend.run(FRAMES[:1]).shape == (1, 16, 16, 3)


def test_the_cache_folder_and_file_are_the_users_only(tmp_path: Path) -> None:
    auto(tmp_path).prepare(random_model(TINY), SHAPE, "auto")
    assert (tmp_path / "tune").stat().st_mode & 0o777 == 0o700
    assert _only_entry(tmp_path).stat().st_mode & 0o777 == 0o600


# ----------------------------------------------------------------------------- warnings, --no-tune, the command


def test_bf16_on_a_cpu_without_bf16_is_warned_about_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"sse2", "avx", "avx2", "fma"})
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        backend = prepare_backend(random_model(TINY), RunOptions(backend="eager", precision="bf16"), 16, 16)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "--precision bf16" in warning and "emulated" in warning and "--precision auto or fp32" in warning
    assert backend.precision == "bf16"  # warned, not refused: the user asked for it


def test_bf16_on_a_cpu_with_bf16_is_not_warned_about(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_bf16"})
    assert machine.reduced_precision_warning("bf16", "cpu") is None
    assert machine.reduced_precision_warning("bf16", "cuda") is None
    assert machine.reduced_precision_warning("fp32", "cpu") is None


def test_no_tune_keeps_the_static_plan(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("--no-tune measured")

    monkeypatch.setattr(tune_module, "measure", never)
    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path))
    backend = prepare_backend(random_model(TINY), RunOptions(tune=False), 16, 16)
    assert backend.describe().split(" ")[0] == plan("cpu", "fp32")[0] == "eager"
    assert backend.describe() == "eager (cpu, fp32)"  # precision auto runs fp32 under the static rules
    assert not (tmp_path / "tune").exists()


def test_no_tune_is_a_flag_of_every_run_command() -> None:
    from cyclestream.cli import build_parser
    from cyclestream.cli.options import translate_options

    args = build_parser().parse_args(["translate", "in.mp4", "out.mp4", "--no-tune"])
    assert translate_options(args).run.tune is False
    args = build_parser().parse_args(["translate", "in.mp4", "out.mp4"])
    run = translate_options(args).run
    assert (run.tune, run.precision, run.backend) == (True, "auto", "auto")


def test_explicit_backends_run_precision_auto_as_fp32() -> None:
    from cyclestream.engine.backends.options import run_precision

    assert run_precision(RunOptions(backend="openvino")) == "fp32"
    assert run_precision(RunOptions(backend="auto")) == "auto"
    assert run_precision(RunOptions(backend="auto", tune=False)) == "fp32"
    assert run_precision(RunOptions(backend="eager", precision="bf16")) == "bf16"


def test_int8_is_refused_by_pytorch_backends_with_a_reason() -> None:
    with pytest.raises(BackendError, match="--backend onnxruntime or openvino"):
        prepare_backend(random_model(TINY), RunOptions(backend="eager", precision="int8"), 16, 16)


def test_the_tune_command_prints_the_table_and_caches_the_pick(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cyclestream.cli import main

    monkeypatch.setenv("CYCLESTREAM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tune_module, "candidates", lambda device, precision: [
        (REFERENCE, None), (Setting("openvino", "bf16"), "no AVX-512-BF16 or AMX on this CPU (bf16 is emulated)")])
    assert main(["-q", "tune", str(tiny_model), "--size", "24x16", "--budget", "2"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("backend"))
    assert lines[header].split() == ["backend", "precision", "frames/s", "x", "eager", "PSNR", "dB", "kept", "/",
                                     "why", "not"]
    eager = lines[header + 2].split()
    assert eager[:2] == ["eager", "fp32"] and float(eager[2]) > 0 and eager[3] == "1.00" and eager[-1] == "kept"
    assert "openvino  bf16" in lines[header + 3] and "emulated" in lines[header + 3]
    assert "at 24x16, batch 1, on cpu" in out and "machine: " in out and "load average" in out
    assert "--backend auto will use eager fp32" in out
    assert len(list((tmp_path / "tune").glob("*.json"))) == 1


def test_the_tune_command_needs_a_size(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cyclestream.cli import main

    with pytest.raises(SystemExit):
        main(["tune", str(tiny_model)])
    assert "--size" in capsys.readouterr().err


# ----------------------------------------------------------------------------- int8 (quantize.py)


def test_int8_weights_keep_7_bits_where_products_saturate(monkeypatch: pytest.MonkeyPatch) -> None:
    from cyclestream.engine.backends import quantize

    frames = torch.zeros(1, 3, 8, 8)
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "fma"})  # AVX2 without VNNI: 16-bit sums
    assert machine.int8_saturates() and quantize.int8_key("m", frames, machine.int8_saturates())["weight_bits"] == 7
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512_vnni"})
    assert not machine.int8_saturates()
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"asimd", "asimddp"})  # Arm dot product
    assert machine.cpu_int8() == "dot" and not machine.int8_saturates()


def test_calibration_frames_come_from_a_video_a_folder_or_an_image(
    make_clip: object, tmp_path: Path
) -> None:
    import numpy as np
    from PIL import Image

    clip = make_clip("calib.mp4", frames=12, width=64, height=48)  # type: ignore[operator]
    frames = Calibration(clip).frames(3, 32, 24)  # frames 0, 3 and 6
    assert frames.shape == (3, 24, 32, 3) and frames.dtype == torch.uint8
    assert torch.equal(frames[1], Calibration(clip).frames(1, 32, 24, start=3)[0])
    assert not torch.equal(frames[1], Calibration(clip).frames(2, 32, 24, step=1)[1])  # frame 1 is another
    folder = tmp_path / "stills"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert Calibration(folder).frames(8, 20, 16).shape == (4, 16, 20, 3)
    assert Calibration(folder / "0.png").frames(8, 20, 16).shape == (1, 16, 20, 3)
    assert Calibration().frames(2, 20, 16).shape == (2, 16, 20, 3)  # the bundled clip


def test_a_calibration_source_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    from cyclestream.engine.errors import MediaError

    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(MediaError, match=str(bad)):
        Calibration(bad).frames(2, 16, 16)


def test_calibration_frames_are_small_and_keep_the_aspect() -> None:
    from cyclestream.engine.backends.quantize import CALIBRATION_SIDE, calibration_size

    assert calibration_size(720, 1280, 4) == (CALIBRATION_SIDE, 216)
    assert calibration_size(64, 48, 4) == (48, 64)  # small frames as they are


def _graph_nodes(path: Path) -> list[object]:
    import onnx

    return list(onnx.load(str(path)).graph.node)


@pytest.mark.slow
def test_int8_graph_quantises_convolution_inputs_only(export_model: LoadedModel, backend_cache: Path) -> None:
    """Conv outputs (into the instance norms, the adds, the tanh) and the output layer stay fp32."""
    pytest.importorskip("onnxruntime")
    from cyclestream.engine.backends.quantize import open_int8

    path = open_int8(export_model, lambda p: p, Calibration(given=FRAMES), SHAPE, backend_cache)
    nodes = _graph_nodes(path)
    made_by = {out: n.op_type for n in nodes for out in n.output}  # type: ignore[attr-defined]
    convs = [n for n in nodes if n.op_type in ("Conv", "ConvTranspose")]  # type: ignore[attr-defined]
    assert [made_by.get(c.input[0]) for c in convs[:-1]] == ["DequantizeLinear"] * (len(convs) - 1)  # type: ignore[attr-defined]
    assert made_by.get(convs[-1].input[0]) != "DequantizeLinear"  # type: ignore[attr-defined]
    assert all(made_by.get(n.input[0]) != "DequantizeLinear" for n in nodes  # type: ignore[attr-defined]
               if n.op_type in ("InstanceNormalization", "Add", "Tanh"))  # type: ignore[attr-defined]


@pytest.mark.slow
def test_int8_backends_match_eager_and_reuse_their_graph(
    export_model: LoadedModel, backend_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("onnxruntime")
    from cyclestream.engine.backends import create_backend, quantize

    frames = sample_frames(4, 32, 32)
    shape = FrameShape(2, 32, 32)
    eager = create_backend("eager", "cpu")
    eager.prepare(export_model, shape, "fp32")
    reference = torch.cat([eager.run(frames[:2]), eager.run(frames[2:])])
    for name in ("onnxruntime", "openvino"):
        pytest.importorskip(name)
        backend = create_backend(name, "cpu")
        backend.cache_dir, backend.calibration = backend_cache, Calibration(given=frames)  # type: ignore[attr-defined]
        backend.prepare(export_model, shape, "int8")
        out = torch.cat([backend.run(frames[:2]), backend.run(frames[2:])])
        assert backend.describe() == f"{name} (cpu, int8)"
        assert tune_module.psnr_db(out, reference) > 32, name
    def never(*args: object) -> None:
        raise AssertionError("quantised again")

    monkeypatch.setattr(quantize, "quantise", never)
    again = create_backend("onnxruntime", "cpu")
    again.cache_dir, again.calibration = backend_cache, Calibration(given=frames)  # type: ignore[attr-defined]
    again.prepare(export_model, shape, "int8")  # the cached graph
    other = create_backend("onnxruntime", "cpu")
    other.cache_dir, other.calibration = backend_cache, Calibration(given=frames.flip(0))  # type: ignore[attr-defined]
    with pytest.raises(AssertionError, match="quantised again"):  # other frames: another graph
        other.prepare(export_model, shape, "int8")
