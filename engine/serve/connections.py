"""Bounded HTTP connections for `serve`: a deadline for each request's headers, a cap on how many are open.

aiohttp parses requests; ``ConnectionGuard`` wraps each of its connection handlers in a protocol that
closes the connection when a request's line and headers have not all arrived ``head_timeout`` seconds
after the connection opened or after its previous response — bytes trickling in do not extend it — and
closes at once a connection beyond ``max_connections``.  Its middleware stops the clock while a request
is being handled (the body has its own deadline there: ``ServeApp`` reads it within ``body_timeout``).
Nothing here logs above debug: a peer that trickles, or goes away, is not the user's error.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from cyclestream.engine.errors import first_line
from cyclestream.engine.serve.options import HttpLimits

log = logging.getLogger("cyclestream")


class ConnectionGuard:
    def __init__(self, limits: HttpLimits) -> None:
        self.limits = limits
        self.timed_out = 0  # connections closed for not sending a request in time
        self.turned_away = 0  # connections closed because too many were open
        self._open: dict[asyncio.BaseProtocol, _Connection] = {}  # by aiohttp's handler of each connection

    @property
    def open(self) -> int:
        return len(self._open)

    def protocol_factory(self, handler_factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """What ``loop.create_server`` takes: aiohttp's handler factory (``AppRunner.server``), guarded."""
        return lambda: _Connection(self, handler_factory)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        connection = self._open.get(request.protocol)
        if connection is not None:
            connection.stop_clock()
        try:
            return await handler(request)  # type: ignore[no-any-return]
        finally:
            if connection is not None:
                connection.start_clock()


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's handler behind the guard's deadline."""

    def __init__(self, guard: ConnectionGuard, handler_factory: Callable[[], asyncio.Protocol]) -> None:
        self._guard, self._handler_factory = guard, handler_factory
        self._handler: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        if self._guard.open >= self._guard.limits.max_connections:
            self._guard.turned_away += 1
            log.debug("closed a connection from %s: %d are open already", self._peer(), self._guard.open)
            transport.abort()  # type: ignore[attr-defined]
            return
        self._handler = self._handler_factory()
        self._guard._open[self._handler] = self
        self.start_clock()
        self._handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._handler is not None:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received() if self._handler is not None else None

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_clock()
        if self._handler is not None:
            self._guard._open.pop(self._handler, None)
            self._handler.connection_lost(exc)

    def start_clock(self) -> None:
        self.stop_clock()
        if self._transport is not None and not self._transport.is_closing():
            self._timer = asyncio.get_running_loop().call_later(self._guard.limits.head_timeout, self._expire)

    def stop_clock(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        self._guard.timed_out += 1
        log.debug("closed a connection from %s: no complete request within %g s", self._peer(),
                  self._guard.limits.head_timeout)
        if self._transport is not None:
            self._transport.abort()

    def _peer(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return str(peer[0]) if peer else "?"


class OneLineLogger(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger (``RequestHandler(logger=...)``) with each exception on the same line: a
    malformed request (a header too long, not HTTP at all) is the peer's, one line at info; anything else
    at error.  With debug logging on (``--verbose``) the traceback follows."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        error = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        level = logging.INFO if isinstance(error, HttpProcessingError) else logging.ERROR
        text = str(msg) % args if args else str(msg)
        if isinstance(error, HttpProcessingError):
            text = f"{text}: {error.code} {' '.join(error.message.split())}"
        elif error is not None:
            text = f"{text}: {type(error).__name__}: {first_line(error)}"
        self.log(level, "%s", text, exc_info=error if self.isEnabledFor(logging.DEBUG) else None)
