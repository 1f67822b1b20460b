"""One browser connected to `serve`: its peer connection, its pipeline, its statistics.

Threads: the asyncio loop receives the client's decoded frames (``_pump``) into an ``Inbox`` that keeps
only the newest; the client's thread (``serve-client-N``) runs the project's ``Pipeline`` with the live
policy on that inbox (its decode thread scales and converts, its model thread calls the shared
backend — the one model thread batches every client's newest frame — and this thread stabilises and
hands each translated frame back to the loop, into the client's ``OutgoingTrack``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCDataChannel, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.jobs.live_target import parse_control
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.webrtc import Inbox, OutgoingTrack, to_av_frame
from cyclestream.engine.pipeline import LIVE_POLICY, Pipeline
from cyclestream.engine.temporal import make_stabiliser

log = logging.getLogger("cyclestream")

STATS_INTERVAL = 1.0  # seconds between statistics messages to the page
FIRST_FRAME_GRACE = 15.0  # seconds a new client may take to connect and send its first frame


class Client:
    def __init__(
        self,
        number: int,
        pc: RTCPeerConnection,
        backend: Backend,
        size: tuple[int, int],
        batch_size: int,
        temporal: str,
        timeout: float,
        on_gone: Callable[[Client, str], Awaitable[None]],
        status: Callable[[], dict[str, Any]],
        model: LoadedModel | None = None,
        control: str | None = None,
    ) -> None:
        self.number, self.pc, self.timeout = number, pc, timeout
        self.backend, self.model = backend, model
        self.control = control  # this browser's --target (or z seed) as text; None for a model without one
        self.inbox = Inbox(*size)
        self.track = OutgoingTrack()
        self.pipeline = Pipeline(backend, batch_size, LIVE_POLICY)
        self.has_video = False
        self.error: BaseException | None = None
        self.closed = False
        self._stabilise = make_stabiliser(temporal)  # one per client: it keeps this client's past
        self._on_gone, self._status = on_gone, status
        self._loop = asyncio.get_running_loop()
        self._channel: RTCDataChannel | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = time.monotonic()
        self._last_frame: float | None = None
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"serve-client-{number}", daemon=True)

    # ------------------------------------------------------------------ on the asyncio loop

    def attach(self, track: MediaStreamTrack) -> None:
        """The client's camera track: read it from now on, keeping only the newest frame."""
        self.has_video = True
        self._tasks.append(asyncio.ensure_future(self._pump(track)))

    def use_channel(self, channel: RTCDataChannel) -> None:
        """The page's data channel: statistics go down it once a second; it may ask "ping", say "bye", or
        choose this browser's target (``{"type": "target", "value": "noto"}``; a z seed for BicycleGAN)."""
        self._channel = channel

        @channel.on("message")
        def on_message(message: object) -> None:
            try:
                data = json.loads(message) if isinstance(message, str) else None
            except ValueError:
                return
            if not isinstance(data, dict):
                return
            if data.get("type") == "ping":
                self._send_message({"type": "pong", "t": data.get("t")})
            elif data.get("type") == "bye":
                self._tasks.append(asyncio.ensure_future(self._on_gone(self, "it said goodbye")))
            elif data.get("type") == "target":
                self._send_message({"type": "target", **self.choose(data.get("value"))})

    def choose(self, value: object) -> dict[str, Any]:
        """Switch this browser's conditioning to what ``value`` names, from its next frame on; the answer
        says what holds now and, if ``value`` names nothing the model takes, why (the old value stays)."""
        if self.model is None or self.control is None:
            return {"value": None, "error": "this model has no target to choose"}
        text = str(value)[:200] if isinstance(value, str | int) else ""
        try:
            values = parse_control(self.model, text)
        except CycleStreamError as e:
            log.info("client %d: ignored target %r: %s", self.number, text[:40], e)
            return {"value": self.control, "error": str(e)}
        self.backend.conditioning, self.backend.conditioning_at = values, None  # the choice replaces a --z-walk
        self.control = text.strip()
        log.info("client %d: target now %s", self.number, self.control)
        return {"value": self.control, "error": None}

    def start(self) -> None:
        self._thread.start()
        self._tasks.append(asyncio.ensure_future(self._watch()))
        self._tasks.append(asyncio.ensure_future(self._report()))

    async def _pump(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                self._last_frame = time.monotonic()
                self.inbox.put(frame, time.perf_counter())

    async def _watch(self) -> None:
        """Free a client that vanished (no video for ``timeout`` seconds) or whose pipeline stopped."""
        while not self.closed:
            await asyncio.sleep(min(0.5, self.timeout / 4))
            now = time.monotonic()
            if self._finished.is_set():
                reason = f"its pipeline stopped: {self.error}" if self.error else "its video ended"
            elif self._last_frame is None and now - self._started > max(FIRST_FRAME_GRACE, self.timeout):
                reason = f"no video within {max(FIRST_FRAME_GRACE, self.timeout):.0f} s"
            elif self._last_frame is not None and now - self._last_frame > self.timeout:
                reason = f"no video for {self.timeout:g} s"
            else:
                continue
            await self._on_gone(self, reason)
            return

    async def _report(self) -> None:
        previous = (time.perf_counter(), 0, 0)
        while not self.closed:
            await asyncio.sleep(STATS_INTERVAL)
            now, received, translated = time.perf_counter(), self.inbox.received, self.pipeline.stats.frames
            seconds = max(1e-6, now - previous[0])
            message = self.stats(
                fps_in=(received - previous[1]) / seconds, fps_out=(translated - previous[2]) / seconds
            )
            previous = (now, received, translated)
            self._send_message({"type": "stats", **message})

    def _send_message(self, message: dict[str, Any]) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            with contextlib.suppress(Exception):  # closing under our feet: the client is leaving
                channel.send(json.dumps(message))

    def stats(self, fps_in: float | None = None, fps_out: float | None = None) -> dict[str, Any]:
        st = self.pipeline.stats
        wall = max(1e-6, st.wall)
        model = st.stages.get("model")
        return {
            "client": self.number,
            "frames_in": self.inbox.received,
            "frames_out": st.frames,
            "frames_sent": self.track.sent,
            "dropped": max(0, self.inbox.received - st.frames),
            "fps_in": round(self.inbox.received / wall if fps_in is None else fps_in, 1),
            "fps_out": round(st.frames / wall if fps_out is None else fps_out, 1),
            "latency_ms": {f"p{q}": round(st.latency_ms(q, recent=60), 1) for q in (50, 95)},
            "model_ms": round(1000 * model.busy / model.items, 1) if model and model.items else None,
            "target": self.control,
            **self._status(),
        }

    async def close(self) -> None:
        """Stop everything this client holds: its pipeline thread, its tasks, its peer connection."""
        if self.closed:
            return
        self.closed = True
        self.inbox.close()
        self.pipeline.finish()
        self.track.stop()
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        try:
            await asyncio.wait_for(self.pc.close(), 5)
        except Exception as e:  # a peer connection that cannot close cleanly is dropped anyway
            log.debug("client %d: closing its connection: %s", self.number, e)
        if self._thread.is_alive():
            await self._loop.run_in_executor(None, self._thread.join, 5)

    # ------------------------------------------------------------------ on the client's thread

    def _run(self) -> None:
        try:
            self.pipeline.run(self.inbox.frames(), self._send)
        except BaseException as e:  # reported by _watch; the server keeps serving the others
            self.error = e
            log.debug("client %d: pipeline stopped", self.number, exc_info=True)
        finally:
            self._finished.set()

    def _send(self, translated: TranslatedFrame) -> None:
        image = translated.image
        if self._stabilise is not None:
            image = self._stabilise(translated.source.image, image)
        frame = to_av_frame(image, translated.source.pts)
        self._loop.call_soon_threadsafe(self.track.offer, frame)
