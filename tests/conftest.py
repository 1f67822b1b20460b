"""Shared fixtures: tiny generator files and clips encoded with PyAV on the fly."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from cyclestream.engine.checkpoint import save_model
from cyclestream.engine.media.synthetic import write_clip
from cyclestream.engine.models import GeneratorSpec, build_generator

# --backend auto measures every backend the first time it meets a model and frame size (up to 30 s): the
# suite's many tiny models would each be measured.  Tests keep the static rules unless they ask for tuning.
os.environ.setdefault("CYCLESTREAM_TUNE", "0")

if not torch.cuda.is_available():
    # Triton kernels are tested on CPU tensors through Triton's interpreter, which must be switched on
    # before anything (torch.compile included) imports triton; the root conftest loads first.
    os.environ.setdefault("TRITON_INTERPRET", "1")

TINY = GeneratorSpec(ngf=4, n_blocks=1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random ResNet generator saved in the project's own format."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    save_model(path, build_generator(TINY), TINY, {"domains": {"A": "test-a", "B": "test-b"}})
    return path


@pytest.fixture
def make_clip(tmp_path: Path) -> Callable[..., Path]:
    """make_clip(name, **write_clip kwargs) → path of a clip encoded with PyAV in tmp_path."""

    def make(name: str = "clip.mp4", **kwargs: object) -> Path:
        path = tmp_path / name
        write_clip(path, **kwargs)  # type: ignore[arg-type]
        return path

    return make
