"""A GPU backend's own CUDA stream and the pinned host buffers it reuses for every batch.

``BackendStream(device).run(translate, frames)`` on a CUDA device:

1. copies the uint8 frames into a pinned staging buffer (a host memcpy; the buffer is kept and grown
   only when frames get larger, instead of a ``pin_memory()`` copy per batch);
2. makes the backend's stream wait for the caller's current stream (weights and anything else made
   there are ready), then on the backend's stream: uploads asynchronously, runs ``translate`` (the
   Triton kernels and TensorRT launch on torch's current stream, which is this one), and downloads
   the uint8 result asynchronously into a second pinned buffer;
3. waits for that stream only (not the whole device) and returns a pageable copy of the result, so
   the buffers are free for the next batch at once.

Two backends, or a backend and the caller's own work, thus run on different streams and may overlap
on the GPU.  Calls are serialized by a lock (the buffers are shared).  On any other device nothing of
this exists: ``run(translate, frames)`` is ``translate(frames)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch


class BackendStream:
    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self._buffers: dict[str, torch.Tensor] = {}  # "in" / "out" → flat pinned buffer
        self._lock = threading.Lock()

    def staging(self, slot: str, shape: torch.Size, dtype: torch.dtype) -> torch.Tensor:
        """A pinned host view of ``shape`` and ``dtype`` on ``slot``'s buffer (grown when too small)."""
        numel = shape.numel()
        buffer = self._buffers.get(slot)
        if buffer is None or buffer.dtype != dtype or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=dtype, pin_memory=True)
            self._buffers[slot] = buffer
        return buffer[:numel].view(shape)

    def run(self, translate: Callable[[torch.Tensor], torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
        """``translate(frames on the device)`` on this stream, its result back on the host (see above)."""
        if self.stream is None:
            return translate(frames)
        with self._lock:
            host_in = self.staging("in", frames.shape, frames.dtype)
            host_in.copy_(frames)
            self.stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.stream):
                out = translate(host_in.to(self.device, non_blocking=True))
                host_out = self.staging("out", out.shape, out.dtype)
                host_out.copy_(out, non_blocking=True)
            self.stream.synchronize()  # the download has landed (and the upload long before)
            return host_out.clone()
