"""torch.compile (inductor) against eager: one slow test (compiling takes tens of seconds on 2 cores)."""

from __future__ import annotations

import pytest

from cyclestream.engine.backends import FrameShape, create_backend
from cyclestream.engine.backends.compiled import find_cxx
from cyclestream.engine.jobs.verify import (
    TOLERANCE,
    eager_output,
    model_input,
    random_model,
    relative_l2,
    sample_frames,
)
from cyclestream.engine.models import GeneratorSpec


@pytest.mark.slow
@pytest.mark.skipif(find_cxx() is None, reason="torch.compile on the CPU needs a C++ compiler (apt-get install g++)")
def test_compiled_matches_eager_and_pads_the_short_last_batch() -> None:
    model = random_model(GeneratorSpec(ngf=4, n_blocks=1))
    backend = create_backend("compile")
    backend.prepare(model, FrameShape(2, 32, 32), "fp32")
    for n in (2, 1):  # the prepared batch, then a shorter last batch (padded, no recompilation)
        frames = sample_frames(n, 32, 32)
        x = model_input(model, frames)
        assert relative_l2(backend.infer(x), eager_output(model, x)) < TOLERANCE["fp32"]
        assert backend.run(frames).shape == (n, 32, 32, 3)
    assert "inductor" in backend.describe()
