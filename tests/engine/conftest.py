"""Fixtures shared by the engine tests (the root conftest has the tiny model file and clips)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.jobs.verify import random_model
from cyclestream.engine.models import GeneratorSpec

# The exported backends' tests share one small model, so its ONNX export is made once for all.
EXPORT_SPEC = GeneratorSpec(ngf=8, n_blocks=2)


@pytest.fixture(scope="session")
def backend_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export cache for all backend tests (same folder in every test module)."""
    return tmp_path_factory.getbasetemp() / "backend-cache"


@pytest.fixture(scope="session")
def export_model() -> LoadedModel:
    """A random ``EXPORT_SPEC`` generator (official init), shared by the exported-backend tests."""
    return random_model(EXPORT_SPEC)
