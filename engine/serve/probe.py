"""A Python WebRTC client for `serve`: sends known frames, checks what comes back, times the round trip.

    cyclestream bench serve 'http://127.0.0.1:8080/#token=…' --size 320x240 --seconds 10

The address is the one the server printed: its token (the fragment, or a ``?token=`` query) goes with
the offer as ``Authorization: Bearer …``, as the page sends it.

The client sends a cycle of distinct synthetic frames at ``fps`` (the model's output of each is computed
here first, with the same model file).  Every frame that comes back is matched to the cycle frame
whose expected output it is closest to; its round trip is the time from handing that frame to the
encoder (the last time it was sent before the answer came) to receiving the decoded answer —
encode, network, the server's decode, model and encode, and the client's decode.  A server that sent
back the camera frames untranslated would match the model's output poorly (``psnr_to_model``) and
the input well (``psnr_to_input``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from aiohttp import ClientSession
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.jobs.bench_options import ServeBenchOptions
from cyclestream.engine.media.synthetic import synthetic_frame
from cyclestream.engine.media.webrtc import to_av_frame, to_rgb
from cyclestream.engine.serve.access import TOKEN_PARAMETER

if TYPE_CHECKING:
    import av  # frames come and go through media/webrtc.py


class Refused(Exception):
    """The server answered the offer with an error (e.g. 503 when every place is taken)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message = status, message


def endpoint(url: str) -> tuple[str, str]:
    """The printed address → (the server's base URL ending in ``/``, its token; "" if it has none)."""
    parts = urllib.parse.urlsplit(url)
    found = urllib.parse.parse_qs(parts.fragment).get(TOKEN_PARAMETER) or urllib.parse.parse_qs(parts.query).get(
        TOKEN_PARAMETER
    )
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, "/", "", "")), found[0] if found else ""


def known_frames(count: int, width: int, height: int, client: int = 0) -> list[np.ndarray]:
    """A plain grey lead-in frame, then ``count`` distinct frames (another set for each ``client``), each
    differing from the next everywhere by more than the stabiliser's 'moving' threshold, so
    ``--temporal`` leaves them per-frame too."""
    lead = np.full((height, width, 3), 128, np.uint8)
    return [lead, *(synthetic_frame(3 * i + 1000 * client, width, height) for i in range(count))]


def expected_outputs(model: Path, images: list[np.ndarray], run: RunOptions | None = None) -> list[np.ndarray]:
    height, width = images[0].shape[:2]
    run = run or RunOptions(backend="eager")
    backend = prepare_backend(load_model(model), dataclasses.replace(run, batch_size=8), height, width)
    try:
        chunks = [np.stack(images[i : i + 8]) for i in range(0, len(images), 8)]
        return [out for chunk in chunks for out in backend.run(torch.from_numpy(chunk)).numpy()]
    finally:
        backend.close()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float32) - b.astype(np.float32)) ** 2))
    return 99.0 if mse == 0 else 10 * float(np.log10(255.0**2 / mse))


class KnownTrack(MediaStreamTrack):
    """Sends ``images[0]`` until the first answer comes back (connecting, the first model call), then
    ``images[1:]`` in a cycle, at ``fps``, remembering when each went to the encoder."""

    kind = "video"

    def __init__(self, images: list[np.ndarray], fps: float) -> None:
        super().__init__()
        self.images, self.fps = images, fps
        self.sent: list[tuple[float, int]] = []  # (time handed to the encoder, index in images)
        self.answered = False  # the first answer arrived: the cycle starts
        self._start: float | None = None
        self._cycled = 0

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = len(self.sent)
        self._start = self._start or time.perf_counter()
        delay = self._start + n / self.fps - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        k = 0
        if self.answered:
            k = 1 + self._cycled % (len(self.images) - 1)
            self._cycled += 1
        frame = to_av_frame(self.images[k], round(n * 90000 / self.fps))
        self.sent.append((time.perf_counter(), k))
        return frame


@dataclass
class Session:
    pc: RTCPeerConnection
    track: KnownTrack
    received: list[tuple[float, av.VideoFrame]]
    client: int
    tasks: list[asyncio.Task[None]]


async def connect(url: str, images: list[np.ndarray], fps: float) -> Session:
    """One client: offer over HTTP, answer, and from then on sending and receiving."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track = KnownTrack(images, fps)
    received: list[tuple[float, av.VideoFrame]] = []
    tasks: list[asyncio.Task[None]] = []
    pc.addTrack(track)
    channel = pc.createDataChannel("stats")  # as the page does; the server sends statistics down it
    channel.on("message", lambda _message: None)

    async def consume(remote: MediaStreamTrack) -> None:
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await remote.recv()
                received.append((time.perf_counter(), frame))
                track.answered = True

    @pc.on("track")
    def on_track(remote: MediaStreamTrack) -> None:
        if remote.kind == "video":
            tasks.append(asyncio.ensure_future(consume(remote)))

    await pc.setLocalDescription(await pc.createOffer())  # aiortc gathers every candidate first
    offer = {"sdp": pc.localDescription.sdp, "type": pc.localDescription.type}
    base, token = endpoint(url)
    headers = {"Authorization": f"Bearer {token}"}
    async with ClientSession() as http, http.post(base + "offer", json=offer, headers=headers) as response:
        answer: dict[str, Any] = await response.json()
    if response.status != 200:
        await pc.close()
        raise Refused(response.status, str(answer.get("error")))
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
    return Session(pc, track, received, int(answer.get("client", 0)), tasks)


async def run_clients(url: str, image_sets: list[list[np.ndarray]], seconds: float, fps: float) -> list[Session]:
    """One client for each set of images, all at once, for ``seconds``."""
    sessions: list[Session] = []
    try:
        for images in image_sets:
            sessions.append(await connect(url, images, fps))
        await asyncio.sleep(seconds)
    finally:
        for session in sessions:
            session.track.stop()
            await session.pc.close()
    return sessions


@dataclass
class ProbeResult:
    client: int
    size: str
    sent: int  # cycle frames sent (after the lead-in)
    received: int  # answers to them
    fps_sent: float
    fps_received: float
    latency_ms: dict[str, float]
    psnr_to_model: float  # median over the frames that came back: the server's output vs the model's
    psnr_to_model_p5: float  # the worst 5 %
    psnr_to_input: float  # median: the same frames vs the untranslated frames sent (an echo scores high)


def _sent_at(sent: list[tuple[float, int]], k: int, arrived: float, near: float | None) -> int | None:
    """Which send of frame ``k`` an answer arriving at ``arrived`` came from: the one nearest to ``near``
    (the send time its timestamp predicts), or without a prediction the first one."""
    candidates = [i for i, (t, index) in enumerate(sent) if index == k and t <= arrived]
    if not candidates:
        return None
    if near is None:
        return candidates[0]
    return min(candidates, key=lambda i: abs(sent[i][0] - near))


def analyse(session: Session, images: list[np.ndarray], expected: list[np.ndarray]) -> ProbeResult:
    """Match each answer to the frame it came from.  The frames cycle, so the content says which frame
    but not which lap.  The cycle starts when the first answer (to the lead-in) is back, so the first
    answer to a cycle frame is from the first lap (the model took it at most one model call after the
    cycle began); the laps of the others follow from their timestamps (the server stamps each translated
    frame with the arrival time of the frame it came from), so a round trip longer than a cycle is still
    measured whole.  Answers to the lead-in frame are left out."""
    height, width = images[0].shape[:2]
    rough = np.stack([e[::4, ::4] for e in expected]).astype(np.float32)
    sent = session.track.sent
    sent_times = [t for t, _ in sent]
    latencies, to_model, to_input, times = [], [], [], []
    first: tuple[float, float] | None = None  # (send time, answer timestamp in seconds) of the first answer
    for arrived, frame in session.received:
        image = to_rgb(frame, width, height)
        k = int(np.argmin(((rough - image[::4, ::4].astype(np.float32)) ** 2).mean(axis=(1, 2, 3))))
        stamp = float(frame.pts * frame.time_base) if frame.pts is not None else None
        near = first[0] + stamp - first[1] if first is not None and stamp is not None else None
        i = _sent_at(sent, k, arrived, near)
        if i is None or k == 0:
            continue
        if first is None and stamp is not None:
            first = (sent_times[i], stamp)
        latencies.append(arrived - sent_times[i])
        to_model.append(psnr(image, expected[k]))
        to_input.append(psnr(image, images[k]))
        times.append(arrived)
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    sent_span = sent_times[-1] - sent_times[0] if len(sent_times) > 1 else 0.0
    ms = np.array(latencies) * 1000 if latencies else np.zeros(1)
    return ProbeResult(
        client=session.client,
        size=f"{width}x{height}",
        sent=sum(1 for _, k in sent if k),
        received=len(times),
        fps_sent=round((len(sent_times) - 1) / sent_span, 1) if sent_span else 0.0,
        fps_received=round((len(times) - 1) / span, 1) if span else 0.0,
        latency_ms={"p50": round(float(np.percentile(ms, 50)), 1), "p95": round(float(np.percentile(ms, 95)), 1),
                    "max": round(float(ms.max()), 1)},
        psnr_to_model=round(float(np.median(to_model)), 2) if to_model else 0.0,
        psnr_to_model_p5=round(float(np.percentile(to_model, 5)), 2) if to_model else 0.0,
        psnr_to_input=round(float(np.median(to_input)), 2) if to_input else 0.0,
    )


def probe(url: str, model: Path, *, options: ServeBenchOptions | None = None) -> list[ProbeResult]:
    """Connect ``options.clients`` at once for ``options.seconds``; a result per client.  ``options.size``
    must be the server's."""
    options = options or ServeBenchOptions()
    image_sets = [known_frames(options.cycle, *options.size, client=k) for k in range(options.clients)]
    expected = [expected_outputs(model, images, options.run) for images in image_sets]
    sessions = asyncio.run(run_clients(url, image_sets, options.seconds, options.fps))
    return [analyse(s, images, e) for s, images, e in zip(sessions, image_sets, expected, strict=True)]
