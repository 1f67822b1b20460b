"""BackendStream: a GPU backend's own CUDA stream and reused pinned buffers; nothing of it on the CPU."""

from __future__ import annotations

import pytest
import torch

from cyclestream.engine.backends.base import FrameShape
from cyclestream.engine.backends.cuda_stream import BackendStream
from cyclestream.engine.backends.eager import EagerBackend
from cyclestream.engine.jobs.verify import random_model
from cyclestream.engine.models import GeneratorSpec

HAVE_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device (streams and pinned memory)")


def test_on_the_cpu_run_is_the_translation_itself_and_eager_holds_no_stream() -> None:
    io = BackendStream(torch.device("cpu"))
    frames = torch.zeros((1, 8, 8, 3), dtype=torch.uint8)
    assert io.stream is None and io.run(lambda f: f, frames) is frames
    backend = EagerBackend("cpu")
    backend.prepare(random_model(GeneratorSpec(ngf=4, n_blocks=1)), FrameShape(1, 16, 16), "fp32")
    assert backend._io is None  # the CPU path is the plain one, unchanged


def test_staging_buffers_are_reused_and_grown_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    empty = torch.empty
    allocations: list[int] = []

    def unpinned(*size: int, dtype: torch.dtype, pin_memory: bool) -> torch.Tensor:
        assert pin_memory  # what a CUDA machine gets; here plain memory stands in for it
        allocations.append(size[0])
        return empty(*size, dtype=dtype)

    monkeypatch.setattr(torch, "empty", unpinned)
    io = BackendStream(torch.device("cpu"))
    a = io.staging("in", torch.Size((2, 4, 4, 3)), torch.uint8)
    b = io.staging("in", torch.Size((1, 4, 4, 3)), torch.uint8)  # smaller: the same memory
    assert a.shape == (2, 4, 4, 3) and b.shape == (1, 4, 4, 3) and a.data_ptr() == b.data_ptr()
    io.staging("in", torch.Size((3, 4, 4, 3)), torch.uint8)  # larger: grown
    io.staging("out", torch.Size((1, 4, 4, 3)), torch.uint8)  # the other direction has its own
    io.staging("out", torch.Size((1, 4, 4, 3)), torch.float16)  # another dtype: a new buffer
    assert allocations == [96, 144, 48, 48]


@pytest.mark.gpu
@needs_cuda
def test_on_cuda_the_work_runs_on_the_backends_stream_and_the_result_is_a_fresh_host_tensor() -> None:
    io = BackendStream(torch.device("cuda"))
    seen: list[torch.cuda.Stream] = []

    def translate(frames: torch.Tensor) -> torch.Tensor:
        seen.append(torch.cuda.current_stream())
        assert frames.is_cuda
        return (frames.float() * 0.5).to(torch.uint8)

    frames = torch.randint(0, 255, (2, 32, 48, 3), dtype=torch.uint8)
    first = io.run(translate, frames)
    pinned = io.staging("out", first.shape, first.dtype).data_ptr()
    second = io.run(translate, frames)
    assert seen == [io.stream, io.stream] and seen[0] != torch.cuda.default_stream()
    assert torch.equal(first, (frames.float() * 0.5).to(torch.uint8)) and torch.equal(first, second)
    assert not first.is_cuda and first.data_ptr() not in (second.data_ptr(), pinned)
    assert io.staging("out", first.shape, first.dtype).data_ptr() == pinned  # reused, not reallocated


@pytest.mark.gpu
@needs_cuda
def test_eager_on_cuda_matches_the_plain_generator() -> None:
    model = random_model(GeneratorSpec(ngf=8, n_blocks=2))
    backend = EagerBackend("cuda", kernels="off")
    backend.prepare(model, FrameShape(2, 64, 64), "fp32")
    frames = torch.randint(0, 255, (2, 64, 64, 3), dtype=torch.uint8)
    expected = EagerBackend("cpu")
    expected.prepare(model, FrameShape(2, 64, 64), "fp32")
    difference = (backend.run(frames).int() - expected.run(frames).int()).abs()
    assert backend._io is not None and int(difference.max()) <= 1  # uint8 rounding of ≈1e-6 differences
