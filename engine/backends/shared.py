"""One prepared backend shared by several live streams: concurrent ``run`` calls become one model call.

Each stream's pipeline keeps its own clock, drop policy and statistics and calls ``run`` on its own
client with its newest frame(s).  The batcher takes the first waiting request, gathers whatever the
other streams submit within ``gather`` seconds (or until every stream has), runs the backend once on
the frames of one size, and hands each stream its share back.  A client holds its own conditioning
values (StarGAN's target, BicycleGAN's z: each browser of `serve` chooses its own); they go with its
frames, one row each (``Backend.frame_conditioning``), so one call translates each frame to its own target.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future

import torch

from cyclestream.engine.backends.base import Backend, FrameShape, Precision, Wrapper
from cyclestream.engine.checkpoint import LoadedModel

Request = tuple[torch.Tensor, tuple[torch.Tensor, ...], "Future[torch.Tensor]"]  # frames, their values, the answer


class SharedBackend:
    def __init__(self, backend: Backend, streams: int, gather: float = 0.005) -> None:
        self.backend, self.streams, self.gather = backend, streams, gather
        self.calls = 0  # model calls made
        self.frames = 0  # frames translated
        self._pending: list[Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="cyclestream-shared-model", daemon=True)
        self._thread.start()

    def client(self) -> SharedClient:
        return SharedClient(self)

    def submit(self, frames: torch.Tensor, values: tuple[torch.Tensor, ...] = ()) -> torch.Tensor:
        """``frames`` translated in the next shared call; ``values``: their conditioning rows (n, size) each."""
        done: Future[torch.Tensor] = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the shared backend is closed")
            self._pending.append((frames, values, done))
            self._cond.notify_all()
        return done.result()

    def _take(self) -> list[Request]:
        with self._cond:
            while not self._pending and not self._closed:
                self._cond.wait(0.1)
            deadline = time.monotonic() + self.gather
            while len(self._pending) < self.streams and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            shape = self._pending[0][0].shape[1:] if self._pending else None
            batch = [p for p in self._pending if p[0].shape[1:] == shape]  # one frame size per call
            self._pending = [p for p in self._pending if p[0].shape[1:] != shape]
            return batch

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if not batch:
                if self._closed:
                    return
                continue
            values = [v for _, v, _ in batch]
            self.backend.frame_conditioning = (
                tuple(torch.cat(rows) for rows in zip(*values, strict=True)) if values[0] else None
            )
            try:
                out = self.backend.run(torch.cat([frames for frames, _, _ in batch]))
            except BaseException as e:  # every waiting stream gets the error
                for _, _, done in batch:
                    done.set_exception(e)
                continue
            finally:
                self.backend.frame_conditioning = None
            self.calls += 1
            self.frames += len(out)
            start = 0
            for frames, _, done in batch:
                done.set_result(out[start : start + len(frames)])
                start += len(frames)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        for _, _, done in self._pending:
            done.set_exception(RuntimeError("the shared backend is closed"))


class SharedClient(Wrapper):
    """What one stream's pipeline sees: a Backend whose ``run`` joins the shared batch."""

    name = "shared"

    def __init__(self, shared: SharedBackend) -> None:
        self.shared = shared
        self.conditioning, self.conditioning_at = shared.backend.conditioning, shared.backend.conditioning_at

    def prepare(self, model: LoadedModel, shape: FrameShape, precision: Precision) -> None:
        raise NotImplementedError("prepared once, by the SharedBackend's owner")

    def inner(self) -> Backend:
        return self.shared.backend

    def run(self, frames: torch.Tensor) -> torch.Tensor:
        return self.shared.submit(frames, self.frame_values(len(frames)))

    def describe(self) -> str:
        return f"{self.shared.backend.describe()}, shared by {self.shared.streams} streams"
