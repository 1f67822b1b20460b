"""The one data path: Source ─▶ Batcher ─▶ Backend ─▶ Unbatcher ─▶ Sink, on threads with bounded queues.

    decode thread   : iterate the source, put VideoFrames on ``decoded``
    model thread    : take up to ``batch_size`` same-size frames, run the backend, put TranslatedFrames
                      on ``translated`` (batching and unbatching live here)
    calling thread  : take TranslatedFrames and hand them to the sink, in order

The policy is the only difference between jobs: a *file* policy blocks when a queue is full (every
frame, in order, with back-pressure); a *live* policy drops the oldest queued input so the model
always works on the newest frame and latency stays bounded.  The first error in any stage stops
all of them and is re-raised in the calling thread; Ctrl-C does the same.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.channel import Channel, Stopped
from cyclestream.engine.media.frame import TranslatedFrame, VideoFrame
from cyclestream.engine.stats import PipelineStats


def frame_seconds(frame: VideoFrame) -> float | None:
    """The frame's time in seconds (its pts in its time base), None without a timestamp."""
    return None if frame.pts is None else float(frame.pts * frame.time_base)


@dataclass(frozen=True)
class Policy:
    name: str
    queue_size: int
    drop_oldest: bool


FILE_POLICY = Policy("file", queue_size=8, drop_oldest=False)
# One queued input: the model always starts on the newest frame, so the backlog never exceeds one frame.
LIVE_POLICY = Policy("live", queue_size=1, drop_oldest=True)


class Pipeline:
    def __init__(self, backend: Backend, batch_size: int = 1, policy: Policy = FILE_POLICY) -> None:
        self.backend, self.batch_size, self.policy = backend, max(1, batch_size), policy
        self.stats = PipelineStats()
        self._stop = threading.Event()  # abort: an error or a hard interrupt
        self._finish = threading.Event()  # graceful end: stop reading, let queued frames drain
        self._errors: list[BaseException] = []
        self._carry: VideoFrame | None = None  # a frame of a new size that ended the previous batch

    def _channel(self) -> Channel[VideoFrame] | Channel[TranslatedFrame]:
        def dropped(_: object) -> None:
            self.stats.dropped += 1

        # A live job keeps up to one batch of the newest frames, so batches can fill.
        size = max(self.policy.queue_size, self.batch_size) if self.policy.drop_oldest else self.policy.queue_size
        return Channel(size, self.policy.drop_oldest, self._stop, dropped)

    def _guard(self, work: Callable[[], None], out: Channel[VideoFrame] | Channel[TranslatedFrame]) -> None:
        try:
            work()
        except Stopped:
            pass
        except BaseException as e:
            self._errors.append(e)
            self._stop.set()
        finally:
            out.close()

    def _decode(self, source: Iterable[VideoFrame], decoded: Channel[VideoFrame]) -> None:
        timer = self.stats.stage("decode")
        frames = iter(source)
        try:
            while not self._finish.is_set():
                t0 = time.perf_counter()
                frame = next(frames, None)
                if frame is None:
                    return
                timer.add(time.perf_counter() - t0)
                decoded.put(frame)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # a generator source closes its container even when stopped early

    def _next_batch(self, decoded: Channel[VideoFrame]) -> list[VideoFrame]:
        first = decoded.get()
        if first is None:
            return []
        batch = [first]
        while len(batch) < self.batch_size:
            # A file job waits for a full batch; a live job takes what has arrived.
            nxt = decoded.get(block=not self.policy.drop_oldest)
            if nxt is None:
                break
            if nxt.image.shape != first.image.shape:  # sizes changed mid-stream: never mix them
                self._carry = nxt
                break
            batch.append(nxt)
        return batch

    def _translate(self, decoded: Channel[VideoFrame], translated: Channel[TranslatedFrame]) -> None:
        timer = self.stats.stage("model")
        while True:
            if self._carry is not None:
                batch, self._carry = [self._carry], None
            else:
                batch = self._next_batch(decoded)
            if not batch:
                return
            t0 = time.perf_counter()
            images = torch.from_numpy(np.stack([f.image for f in batch]))
            self.backend.frame_times = [frame_seconds(f) for f in batch]  # for a conditioning path (--z-walk)
            outputs = self.backend.run(images).numpy()
            timer.add(time.perf_counter() - t0, len(batch))
            for frame, image in zip(batch, outputs, strict=True):
                translated.put(TranslatedFrame(image=image, source=frame))

    def finish(self) -> None:
        """End the job gracefully: read no more frames, translate and write what is queued.
        Safe to call from a signal handler or another thread."""
        self._finish.set()

    def run(self, source: Iterable[VideoFrame], sink: Callable[[TranslatedFrame], None]) -> PipelineStats:
        """Push every frame of ``source`` through the backend into ``sink``; returns the timings."""
        decoded: Channel[VideoFrame] = self._channel()  # type: ignore[assignment]
        translated: Channel[TranslatedFrame] = self._channel()  # type: ignore[assignment]
        threads = [
            threading.Thread(
                target=self._guard,
                args=(lambda: self._decode(source, decoded), decoded),
                name="cyclestream-decode",
                daemon=True,
            ),
            threading.Thread(
                target=self._guard,
                args=(lambda: self._translate(decoded, translated), translated),
                name="cyclestream-model",
                daemon=True,
            ),
        ]
        for t in threads:
            t.start()
        timer = self.stats.stage("encode")
        try:
            while (item := translated.get()) is not None:
                t0 = time.perf_counter()
                sink(item)
                now = time.perf_counter()
                timer.add(now - t0)
                self.stats.record(now - item.source.captured_at)
        except Stopped:
            pass
        except BaseException:
            self._stop.set()
            raise
        finally:
            if self._errors:
                self._stop.set()
            for t in threads:  # after an error or Ctrl-C, stages notice the stop within 0.1 s
                t.join(timeout=5 if self._stop.is_set() else None)
            self.stats.finished = time.perf_counter()
        if self._errors:
            raise self._errors[0]
        return self.stats
