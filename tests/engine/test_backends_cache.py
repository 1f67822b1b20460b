"""Engine-cache keys and shape profiles: pure logic, tested without a GPU."""

from __future__ import annotations

import dataclasses
import json
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
    store_engine,
)
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.verify import random_model
from cyclestream.engine.models import GeneratorSpec

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
    assert json.loads(path.with_suffix(".json").read_text())["variant"] == "plugins"
    assert find_engine(tmp_path, wide) == path
    inside = key(profile=ShapeProfile.parse("4x3x720x1280"))
    assert find_engine(tmp_path, inside) == path  # a job inside the compiled profile reuses it
    assert find_engine(tmp_path, key(profile=ShapeProfile.parse("16x3x720x1280"))) is None
    assert find_engine(tmp_path, dataclasses.replace(inside, precision="fp32")) is None
    assert find_engine(tmp_path, dataclasses.replace(inside, tensorrt="11.0.0")) is None
    (tmp_path / "engines" / "junk.json").write_text("{not json")
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
