"""The artifact cache: engine keys and shape profiles (pure logic, tested without a GPU), and entries that
were changed, truncated or replaced, made by hand the way someone tampering with the cache would."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import stat
from pathlib import Path

import pytest
import torch

from cyclestream.engine.backends.base import FrameShape
from cyclestream.engine.backends.cache import (
    CACHE_ENV,
    EngineKey,
    ShapeProfile,
    default_cache_dir,
    engine_path,
    find_engine,
    model_digest,
    onnx_cache_path,
    record_path,
    store_engine,
)
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import BackendError, CycleStreamError
from cyclestream.engine.jobs.verify import random_model
from cyclestream.engine.models import GeneratorSpec
from cyclestream.engine.paths import file_sha256

SPEC = GeneratorSpec(ngf=4, n_blocks=1)
PROFILE = ShapeProfile.parse("1x3x256x256")


def key(**changes: object) -> EngineKey:
    base = EngineKey("abc123", PROFILE, "fp16", "NVIDIA L4 (sm_89)", "10.13.0", "plugins")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_profile_parsing_forms() -> None:
    assert ShapeProfile.parse("4x3x256x256") == ShapeProfile((1, 3, 256, 256), (4, 3, 256, 256), (4, 3, 256, 256))
    assert ShapeProfile.parse("2x3x256x256:8x3x1088x1920") == ShapeProfile(
        (1, 3, 256, 256), (2, 3, 256, 256), (8, 3, 1088, 1920)
    )
    three = ShapeProfile.parse("1x3x64x64:2x3x256x256:4x3x512x512")
    assert (three.min, three.opt, three.max) == ((1, 3, 64, 64), (2, 3, 256, 256), (4, 3, 512, 512))
    assert ShapeProfile.parse(three.to_text()) == three


@pytest.mark.parametrize("text", ["256x256", "1x3x256", "1x3x0x256", "4x3x256x256:1x3x256x256", "1x3x8x8:1x1x8x8", "a"])
def test_bad_profiles_are_rejected(text: str) -> None:
    with pytest.raises(CycleStreamError):
        ShapeProfile.parse(text)


def test_profile_for_frames_pads_and_accepts_shorter_batches() -> None:
    p = ShapeProfile.for_frames(FrameShape(4, 1080, 1920), multiple=4)
    assert p.opt == p.max == (4, 3, 1080, 1920)
    assert p.covers((1, 3, 1080, 1920)) and p.covers((3, 3, 1080, 1920))
    assert not p.covers((5, 3, 1080, 1920)) and not p.covers((1, 3, 720, 1280))
    assert ShapeProfile.for_frames(FrameShape(1, 23, 37), multiple=4).opt == (1, 3, 24, 40)
    assert ShapeProfile.parse("1x3x1079x1919").padded(4).opt == (1, 3, 1080, 1920)


def test_profile_containment() -> None:
    wide = ShapeProfile.parse("1x3x256x256:8x3x1088x1920")
    assert wide.contains(ShapeProfile.parse("4x3x720x1280"))
    assert not wide.contains(ShapeProfile.parse("16x3x720x1280"))
    assert not ShapeProfile.parse("4x3x720x1280").contains(wide)


def test_engine_key_changes_with_every_input_and_is_stable() -> None:
    assert key().digest() == key().digest()
    variants = [
        key(model="def456"),
        key(precision="fp32"),
        key(profile=ShapeProfile.parse("2x3x256x256")),
        key(profile=ShapeProfile.parse("1x3x256x256:1x3x512x512")),
        key(gpu="NVIDIA A100 (sm_80)"),
        key(tensorrt="10.14.0"),
        key(variant="native"),
        key(format=99),
    ]
    digests = {k.digest() for k in variants} | {key().digest()}
    assert len(digests) == len(variants) + 1
    assert EngineKey.from_dict(json.loads(json.dumps(key().to_dict()))) == key()


def test_model_digest_follows_the_weights() -> None:
    a, b = random_model(SPEC, seed=0), random_model(SPEC, seed=0)
    assert model_digest(a) == model_digest(b)
    with torch.no_grad():
        next(b.generator.parameters())[0, 0, 0, 0] += 1e-3
    assert model_digest(a) != model_digest(b)
    assert model_digest(a) != model_digest(random_model(GeneratorSpec(ngf=4, n_blocks=2)))


def test_engine_cache_finds_exact_and_containing_profiles(tmp_path: Path) -> None:
    wide = key(profile=ShapeProfile.parse("1x3x256x256:8x3x1088x1920"))
    assert find_engine(tmp_path, wide) is None
    path = store_engine(tmp_path, wide, b"engine bytes")
    assert path == engine_path(tmp_path, wide) and path.read_bytes() == b"engine bytes"
    assert json.loads(record_path(path).read_text())["made_from"]["variant"] == "plugins"
    assert find_engine(tmp_path, wide) == path
    inside = key(profile=ShapeProfile.parse("4x3x720x1280"))
    assert find_engine(tmp_path, inside) == path  # a job inside the compiled profile reuses it
    assert find_engine(tmp_path, key(profile=ShapeProfile.parse("16x3x720x1280"))) is None
    assert find_engine(tmp_path, dataclasses.replace(inside, precision="fp32")) is None
    assert find_engine(tmp_path, dataclasses.replace(inside, tensorrt="11.0.0")) is None
    (tmp_path / "engines" / "junk.engine.json").write_text("{not json")
    (tmp_path / "engines" / "junk.engine").write_bytes(b"")
    assert find_engine(tmp_path, inside) == path


def test_cache_dir_and_onnx_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "cyclestream"
    a = onnx_cache_path(tmp_path, "m1", "fp32", 18)
    assert a == onnx_cache_path(tmp_path, "m1", "fp32", 18)
    assert len({a, onnx_cache_path(tmp_path, "m2", "fp32", 18), onnx_cache_path(tmp_path, "m1", "fp16", 18)}) == 3


# ----------------------------------------------------------------------------- damaged and foreign entries


def _flip(path: Path, start: int, count: int) -> None:
    """Change ``count`` bytes of a file from ``start`` on, as someone editing it in place would."""
    data = bytearray(path.read_bytes())
    for i in range(start, start + count):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _notes(caplog: pytest.LogCaptureFixture, entry: Path) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and str(entry) in r.getMessage()]


def _edit_record(entry: Path, edit) -> None:
    record = json.loads(record_path(entry).read_text())
    edit(record)
    record_path(entry).write_text(json.dumps(record))


ENGINE = bytes(range(256)) * 64


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: _flip(p, 1000, 4),
        lambda p: p.write_bytes(p.read_bytes()[: len(ENGINE) // 2]),
        lambda p: (p.unlink(), os.mkfifo(p)),
        lambda p: (p.unlink(), p.symlink_to(p.with_name("elsewhere.engine"))),
        lambda p: _edit_record(p, lambda r: r["made_from"].update(precision="fp32")),
        lambda p: record_path(p).unlink(),
        lambda p: (record_path(p).unlink(), os.mkfifo(record_path(p))),
    ],
    ids=["bytes-changed", "truncated", "fifo", "symlink", "record-for-another-build", "no-record", "record-fifo"],
)
def test_a_damaged_engine_is_never_used_and_is_removed_with_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage
) -> None:
    path = store_engine(tmp_path, key(), ENGINE)
    assert find_engine(tmp_path, key()) == path
    path.with_name("elsewhere.engine").write_bytes(ENGINE)
    damage(path)
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        assert find_engine(tmp_path, key()) is None  # never blocks on a FIFO either
    (note,) = _notes(caplog, path)
    assert "not used, made again" in note and "\n" not in note
    assert not path.exists() and not path.is_symlink()
    assert store_engine(tmp_path, key(), ENGINE) == path  # made again, found again
    assert find_engine(tmp_path, key()) == path


def test_an_engine_of_another_user_is_not_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = store_engine(tmp_path, key(), ENGINE)
    real_lstat = os.lstat

    def lstat(p: object, *args: object, **kwargs: object) -> os.stat_result:
        st = real_lstat(p, *args, **kwargs)  # type: ignore[arg-type]
        if Path(p) == path:  # type: ignore[arg-type]
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, os.geteuid() + 1, *st[5:]))
        return st

    monkeypatch.setattr(os, "lstat", lstat)
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        assert find_engine(tmp_path, key()) is None
    assert "belongs to another user" in _notes(caplog, path)[0]


def test_cache_folders_are_private(tmp_path: Path) -> None:
    cache = tmp_path / "new" / "cache"
    store_engine(cache, key(), ENGINE)
    for folder in (tmp_path / "new", cache, cache / "engines"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    entry = engine_path(cache, key())
    assert stat.S_IMODE(entry.stat().st_mode) == stat.S_IMODE(record_path(entry).stat().st_mode) == 0o600
    loose = tmp_path / "old"
    (loose / "engines").mkdir(parents=True)
    (loose / "engines").chmod(0o777)
    store_engine(loose, key(), ENGINE)
    assert stat.S_IMODE((loose / "engines").stat().st_mode) == 0o700


# ----------------------------------------------------------------------------- ONNX entries, end to end


@pytest.fixture
def counted_exports(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every export the cache asks for (by precision), made for real, with the TorchScript exporter (a second,
    where the dynamo exporter takes ten)."""
    from cyclestream.engine.backends import export

    made: list[str] = []
    real = export.export_onnx

    def export_onnx(model: object, path: Path, *, precision: str = "fp32", **kwargs: object) -> export.OnnxExport:
        made.append(precision)
        return real(model, path, precision=precision, exporter="torchscript")  # type: ignore[arg-type]

    monkeypatch.setattr(export, "export_onnx", export_onnx)
    return made


FRAMES = (torch.arange(2 * 40 * 48 * 3) * 7 % 251).to(torch.uint8).reshape(2, 40, 48, 3)


def _ort_output(model: LoadedModel, cache: Path) -> torch.Tensor:
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed")
    from cyclestream.engine.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(cache_dir=cache)
    backend.prepare(model, FrameShape(2, 40, 48), "fp32")
    try:
        return backend.run(FRAMES)
    finally:
        backend.close()


def _onnx_entry(model: LoadedModel, cache: Path) -> Path:
    from cyclestream.engine.backends.export import OPSET

    return onnx_cache_path(cache, model_digest(model), "fp32", OPSET)


def _weights_at(path: Path) -> int:
    """Where the graph's largest weight starts in the file (what someone changing the model would edit)."""
    import onnx

    init = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data))
    return path.read_bytes().index(init.raw_data[:64])


@pytest.mark.slow
def test_changed_or_truncated_onnx_entry_is_exported_again_with_a_note(
    tmp_path: Path, export_model: LoadedModel, counted_exports: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    fresh = _ort_output(export_model, tmp_path)
    entry = _onnx_entry(export_model, tmp_path)
    assert counted_exports == ["fp32"] and entry.is_file()
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    damages = {
        "does not match the SHA-256": lambda: _flip(entry, _weights_at(entry), 2000),
        "truncated or changed": lambda: entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2]),
    }
    for reason, damage in damages.items():
        damage()
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cyclestream"):
            out = _ort_output(export_model, tmp_path)
        assert reason in _notes(caplog, entry)[0]
        assert torch.equal(out, fresh)  # the fresh export's result, not the changed graph's
    assert counted_exports == ["fp32"] * 3
    assert torch.equal(_ort_output(export_model, tmp_path), fresh) and len(counted_exports) == 3  # reused


def test_entry_whose_record_was_forged_too_is_exported_again_when_it_fails_to_open(
    tmp_path: Path, export_model: LoadedModel, counted_exports: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes and record both rewritten (the record made to match a cut graph): the graph fails to open, so it
    is dropped and exported again, once, instead of failing this run and every later one."""
    fresh = _ort_output(export_model, tmp_path)
    entry = _onnx_entry(export_model, tmp_path)
    entry.write_bytes(entry.read_bytes()[:1000])
    record = json.loads(record_path(entry).read_text())
    record_path(entry).write_text(json.dumps({**record, "sha256": file_sha256(entry), "size": 1000}))
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        assert torch.equal(_ort_output(export_model, tmp_path), fresh)
    assert "could not be opened" in _notes(caplog, entry)[0]
    assert len(counted_exports) == 2


def test_changed_openvino_blob_is_compiled_again_with_a_note(
    tmp_path: Path, export_model: LoadedModel, counted_exports: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """OpenVINO reads the compiled blobs of its CACHE_DIR without checking their bytes: one changed weight
    byte in a blob changed the output."""
    pytest.importorskip("openvino", reason="OpenVINO is not installed")
    from cyclestream.engine.backends.openvino import OpenVINOBackend

    def run() -> torch.Tensor:
        backend = OpenVINOBackend(cache_dir=tmp_path)
        backend.prepare(export_model, FrameShape(2, 40, 48), "fp32")
        return backend.run(FRAMES)

    fresh = run()
    (blob,) = (tmp_path / "openvino").glob("*.blob")
    _flip(blob, blob.stat().st_size // 2, 64)
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        assert torch.equal(run(), fresh)
    assert "does not match the SHA-256" in _notes(caplog, blob)[0]
    assert stat.S_IMODE((tmp_path / "openvino").stat().st_mode) == 0o700


def test_a_cached_engine_that_does_not_load_is_built_again_once(
    tmp_path: Path, export_model: LoadedModel, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The TensorRT backend's path with TensorRT and the GPU stood in for: an engine that matches its record but
    that TensorRT cannot load is removed with a note and built again, instead of failing every run."""
    from cyclestream.engine.backends import tensorrt

    wanted = key()
    path = store_engine(tmp_path, wanted, ENGINE)
    builds: list[bytes] = []

    def get_engine(*args: object, **kwargs: object) -> tensorrt.BuiltEngine:
        if (found := find_engine(tmp_path, wanted)) is not None:
            return tensorrt.BuiltEngine(found, wanted, 0.0)
        builds.append(b"rebuilt" * 64)
        return tensorrt.BuiltEngine(store_engine(tmp_path, wanted, builds[-1]), wanted, 60.0)

    class Runner:
        def __init__(self, data: bytes, variant: str, profile: ShapeProfile) -> None:
            if data == ENGINE:
                raise BackendError("TensorRT could not load the cached engine")
            self.data, self.profile = data, profile

    monkeypatch.setattr(tensorrt, "get_engine", get_engine)
    monkeypatch.setattr(tensorrt, "EngineRunner", Runner)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    backend = object.__new__(tensorrt.TensorRTBackend)
    backend.__dict__.update(device=torch.device("cuda"), cache_dir=tmp_path, variants=("native",), precision="fp16",
                            _model=export_model, _digest="abc123", _batch=1, _runners=[])  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        runner = backend._runner_for(PROFILE)
    assert runner.data == builds[0] and len(builds) == 1  # type: ignore[attr-defined]
    assert "could not be loaded (TensorRT could not load the cached engine)" in _notes(caplog, path)[0]
    assert find_engine(tmp_path, wanted) == path and path.read_bytes() == builds[0]
