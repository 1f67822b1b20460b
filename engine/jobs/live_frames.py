"""A live source's translated frames, handed to the caller's loop instead of a sink.

``LiveFrames`` runs the live job (``stream.py``'s source, the live pipeline policy, ``--temporal``) on a
background thread and yields the translated frames as numpy arrays; when the caller is slower than the
model, older frames are dropped and the newest is handed over, as a live sink would see them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.backends.options import prepare_backend
from cyclestream.engine.channel import Channel, Stopped
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.options import StreamOptions
from cyclestream.engine.jobs.stream import connect_source
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.live import LiveSource
from cyclestream.engine.pipeline import LIVE_POLICY, Pipeline
from cyclestream.engine.temporal import make_stabiliser

HANDOFF_FRAMES = 2  # translated frames waiting for the caller, at most


class LiveFrames:
    """``with LiveFrames(options) as live: for frame in live: ...``: translated (H, W, 3) uint8 frames until
    the source ends, ``options.duration`` passes or ``stop()``."""

    def __init__(self, options: StreamOptions) -> None:
        if options.model is None:
            raise CycleStreamError("a live translation needs a model")
        if options.sink != "null":
            raise CycleStreamError("LiveFrames hands the frames to the caller: leave the sink as null")
        self.options = options
        self.dropped = 0
        self._stop = threading.Event()
        self._frames: Channel[np.ndarray] = Channel(HANDOFF_FRAMES, True, self._stop, self._drop)
        self._source: LiveSource | None = None
        self._backend: Backend | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._pipeline: Pipeline | None = None

    def _drop(self, _: np.ndarray) -> None:
        self.dropped += 1

    def __enter__(self) -> LiveFrames:
        model = load_model(self.options.model)  # type: ignore[arg-type]
        self._source, _network = connect_source(self.options)
        try:
            info = self._source.wait_ready()
            self._backend = prepare_backend(model, self.options.run, info.height, info.width)
        except BaseException:
            self.close()
            raise
        self._pipeline = Pipeline(self._backend, self.options.run.batch_size, LIVE_POLICY)
        self._thread = threading.Thread(target=self._run, name="cyclestream-live-frames", daemon=True)
        self._thread.start()
        if self.options.duration:
            timer = threading.Timer(self.options.duration, self.stop)
            timer.daemon = True
            timer.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[np.ndarray]:
        while True:
            try:
                frame = self._frames.get()
            except Stopped:
                break
            if frame is None:
                break
            yield frame
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """End the stream: the iteration ends after the frames already translated."""
        if self._source is not None:
            self._source.stop()

    def close(self) -> None:
        self.stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        if self._source is not None:
            self._source.close()

    def _run(self) -> None:
        assert self._source is not None and self._pipeline is not None
        stabilise = make_stabiliser(self.options.temporal)

        def hand_over(frame: TranslatedFrame) -> None:
            image = stabilise(frame.source.image, frame.image) if stabilise is not None else frame.image
            self._frames.put(image)

        try:
            self._pipeline.run(self._source.frames(), hand_over)
        except BaseException as e:
            self._error = e
        finally:
            self._frames.close()
