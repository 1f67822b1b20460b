"""The `serve` web app: the page, WebRTC signalling, and the bounded list of clients.

Routes (nothing else; the page reads no file and loads nothing from elsewhere):

    GET  /         the page (package data, read once at start)
    GET  /config   the frame size, model, limits and choosable targets the page needs
    GET  /status   counts: connected clients, model calls (for monitoring and tests)
    POST /offer    {"sdp", "type": "offer"} → the answer; 503 with a sentence when every place is taken

Every request must be addressed to one of this server's names (``Host``), come from its own page if it
comes from a page (``Origin``), and, except the page itself, carry this start's token
(``engine/serve/access.py``); its connection is held to the deadlines of ``engine/serve/connections.py``.
Whatever is refused is answered with a status and one sentence, and logged in one line.

Signalling is one request: the page gathers its ICE candidates first, so the answer carries all of
ours too (no trickle).  No STUN or TURN server is used: candidates are this machine's own addresses.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from aiortc import MediaStreamTrack, RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription

from cyclestream.engine.backends.shared import SharedBackend
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.conditioning import domain_names
from cyclestream.engine.errors import CycleStreamError, first_line
from cyclestream.engine.jobs.live_target import control_kind
from cyclestream.engine.serve.client import Client
from cyclestream.engine.serve.connections import ConnectionGuard
from cyclestream.engine.serve.offer import NO_VIDEO, BadOffer, read_offer

if TYPE_CHECKING:
    from cyclestream.engine.serve.access import Access
    from cyclestream.engine.serve.options import ServeOptions

log = logging.getLogger("cyclestream")

PUBLIC = "/"  # the page: the one route without the token (the page reads it from its own address)
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
    "img-src 'self' data:; media-src 'self' blob: mediastream:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = CSP
    return response


@web.middleware
async def _errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """No traceback for a request: a peer that went away is a debug line; anything else one error line
    (the traceback with ``--verbose``)."""
    try:
        return await handler(request)  # type: ignore[no-any-return]
    except web.HTTPException:
        raise
    except ConnectionError as e:  # nobody is left to read an answer
        log.debug("%s %s from %s: the peer went away (%s)", request.method, request.path[:100], request.remote,
                  first_line(e))
        return _error(400, "the connection was lost")
    except Exception as e:
        log.error("cannot answer %s %s from %s: %s: %s", request.method, request.path[:100], request.remote,
                  type(e).__name__, first_line(e), exc_info=e if log.isEnabledFor(logging.DEBUG) else None)
        return _error(500, "the server could not answer this request")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _refuse(request: web.Request, status: int, reason: str) -> web.Response:
    log.info("refused %s %s from %s (%d): %s", request.method, request.path[:100], request.remote, status, reason)
    response = _error(status, reason)
    if status == 401:
        response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="cyclestream"'
    return response


class ServeApp:
    def __init__(
        self,
        options: ServeOptions,
        shared: SharedBackend,
        size: tuple[int, int],
        model: str,
        access: Access,
        loaded: LoadedModel | None = None,
    ) -> None:
        self.options, self.shared, self.size, self.model, self.access = options, shared, size, model, access
        self.loaded = loaded
        self.control = self._control()
        self.clients: dict[int, Client] = {}
        self.served = 0  # clients accepted since the start
        self.refused = 0
        self._answering = 0  # offers accepted but not answered yet: they hold a place too
        self._closing = False
        self._numbers = itertools.count(1)
        if options.page is None:
            raise CycleStreamError("serve needs its page: ServeOptions.page (the command line passes the bundled one)")
        self._page = options.page.read_bytes()
        self.connections = ConnectionGuard(options.http)
        self.app = web.Application(client_max_size=options.http.max_body,
                                   middlewares=[self.connections.middleware, _headers, _errors, self._access])
        self.app.add_routes([
            web.get("/", self._index),
            web.get("/config", self._config),
            web.get("/status", self._status_route),
            web.post("/offer", self._offer),
        ])

    # ------------------------------------------------------------------ routes

    @web.middleware
    async def _access(self, request: web.Request, handler: Any) -> web.StreamResponse:
        refusal = self.access.refusal(request, needs_token=request.path != PUBLIC)
        if refusal is not None:
            return _refuse(request, *refusal)
        return await handler(request)  # type: ignore[no-any-return]

    async def _index(self, _: web.Request) -> web.Response:
        return web.Response(body=self._page, content_type="text/html", charset="utf-8")

    def _control(self) -> dict[str, Any] | None:
        """What each browser may choose: StarGAN's target (the model's domain names, or indices), BicycleGAN's
        z seed; starting from the command line's; None for a model without a conditioning input."""
        kind = control_kind(self.loaded) if self.loaded is not None else None
        if kind is None or self.loaded is None:
            return None
        run = self.options.run
        if kind == "latent":
            return {"kind": "latent", "value": str(run.z_seed) if run.z_seed is not None else "0", "choices": []}
        cond = next(c for c in self.loaded.family.conditioning if c.kind == "label")
        names = domain_names(self.loaded) or [str(i) for i in range(cond.size(self.loaded.spec))]
        return {"kind": "label", "value": run.target, "choices": names}

    async def _config(self, _: web.Request) -> web.Response:
        width, height = self.size
        return web.json_response({
            "width": width, "height": height, "model": self.model, "backend": self.shared.backend.describe(),
            "temporal": self.options.temporal, "max_clients": self.options.max_clients, "control": self.control,
        })

    async def _status_route(self, _: web.Request) -> web.Response:
        return web.json_response({**self.status(), "served": self.served, "refused": self.refused,
                                  "per_client": [c.stats() for c in self.clients.values()]})

    def status(self) -> dict[str, Any]:
        calls, frames = self.shared.calls, self.shared.frames
        return {
            "clients": len(self.clients),
            "max_clients": self.options.max_clients,
            "model_calls": calls,
            "model_frames": frames,
            "frames_per_call": round(frames / calls, 2) if calls else None,
        }

    async def _offer(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _refuse(request, 415, "send the offer as application/json")
        seconds = self.options.http.body_timeout
        try:
            body = await asyncio.wait_for(request.read(), seconds)
        except asyncio.TimeoutError:
            response = _refuse(request, 408, f"the offer did not arrive within {seconds:g} s")
            response.force_close()
            return response
        try:
            sdp = read_offer(body)
        except BadOffer as e:
            return _refuse(request, 400, str(e))
        if self._closing:
            return _error(503, "cyclestream is stopping.")
        taken = len(self.clients) + self._answering
        if taken >= self.options.max_clients:
            self.refused += 1
            log.info("refused a client from %s: all %d places are taken", request.remote, self.options.max_clients)
            return _error(503, f"cyclestream is busy: all {self.options.max_clients} places are taken. "
                               "Try again when someone leaves.")
        self._answering += 1
        try:
            return await self._answer(request, sdp)
        finally:
            self._answering -= 1

    async def _answer(self, request: web.Request, sdp: str) -> web.Response:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: nothing is contacted but the page
        number = next(self._numbers)
        client = Client(number, pc, self.shared.client(), self.size, self.options.run.batch_size,
                        self.options.temporal, self.options.client_timeout, self._gone, self.status, self.loaded,
                        self.control["value"] if self.control else None)

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and not client.has_video:
                client.attach(track)
                pc.addTrack(client.track)  # the translated video goes back on the same transceiver

        @pc.on("datachannel")
        def on_datachannel(channel: RTCDataChannel) -> None:
            client.use_channel(channel)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self._gone(client, f"its connection {pc.connectionState}")

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            if not client.has_video:
                raise BadOffer(NO_VIDEO)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:  # an offer aiortc cannot answer
            await client.close()
            return _refuse(request, 400, f"cannot answer this offer: {first_line(e)}")
        except BaseException:
            await client.close()
            raise
        if self._closing:
            await client.close()
            return _error(503, "cyclestream is stopping.")
        self.clients[number] = client
        self.served += 1
        self.shared.streams = len(self.clients)  # the model waits (briefly) for this many newest frames
        client.start()
        log.info("client %d connected from %s (%d of %d)", number, request.remote, len(self.clients),
                 self.options.max_clients)
        answer = pc.localDescription
        return web.json_response({"sdp": answer.sdp, "type": answer.type, "client": number})

    # ------------------------------------------------------------------ clients leaving

    async def _gone(self, client: Client, reason: str) -> None:
        if self.clients.pop(client.number, None) is None:
            return
        self.shared.streams = max(1, len(self.clients))
        log.info("client %d left (%s): %d frames in, %d translated; %d of %d connected", client.number, reason,
                 client.inbox.received, client.pipeline.stats.frames, len(self.clients), self.options.max_clients)
        await client.close()

    async def close(self) -> None:
        """Disconnect every client (the server is stopping) and take no more."""
        self._closing = True
        await asyncio.gather(*(self._gone(c, "the server is stopping") for c in list(self.clients.values())))
