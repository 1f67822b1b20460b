"""The serve job: a web page where a browser's camera goes up over WebRTC and comes back translated.

Top to bottom: load the model → listen (a port in use fails here, before anything is prepared) →
prepare one backend for up to ``max_clients`` frames a call, shared by every client
(``SharedBackend``: one model thread) → run the asyncio loop with the aiohttp app on the calling thread
until Ctrl-C/SIGTERM (or ``stop``) → disconnect every client, stop the model thread, close the backend.
Each client runs the live pipeline (newest frame first, bounded latency, ``--temporal``) on its own
thread; see ``engine/serve/``.  Each start draws a new token, which the printed URL carries
(``http://HOST:PORT/#token=…``) and every request but the page's must send (``engine/serve/access.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import os
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.backends.options import prepare_backend
from cyclestream.engine.backends.shared import SharedBackend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.serve.access import TOKEN_PARAMETER, Access, is_loopback, server_names
from cyclestream.engine.serve.candidates import candidates_on
from cyclestream.engine.serve.options import ServeOptions
from cyclestream.engine.signals import Terminated
from cyclestream.engine.temporal import make_stabiliser

if TYPE_CHECKING:
    from cyclestream.engine.serve.app import ServeApp

log = logging.getLogger("cyclestream")

QUIET_LIBRARIES = ("aioice", "aiortc", "aiohttp.access")  # their INFO lines are per packet or per request


@dataclass
class ServeReport:
    url: str  # the page's address, without the token (which died with the server)
    served: int
    refused: int
    model_calls: int
    model_frames: int


def clients(n: int) -> str:
    return f"{n} client" if n == 1 else f"{n} clients"


def _check_options(options: ServeOptions) -> None:
    if options.model is None:
        raise CycleStreamError("serve needs --model")
    width, height = options.size
    if width % 2 or height % 2:
        raise CycleStreamError(f"--size must be even in both directions for WebRTC's 4:2:0 video, got {width}x{height}")
    if options.keyfile is not None and options.certfile is None:
        raise CycleStreamError("--keyfile needs --certfile")
    make_stabiliser(options.temporal)  # an unknown method: one line, now


def _import_app() -> type[ServeApp]:
    try:
        from cyclestream.engine.serve.app import ServeApp
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("aiortc", "aiohttp", "aioice", "pylibsrtp", "ifaddr"):
            raise CycleStreamError(f"serve needs {e.name}: pip install 'cyclestream[serve]'") from None
        raise
    return ServeApp


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that a port in use fails before the model is prepared."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=64)
    except OSError as e:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if e.errno == errno.EADDRINUSE:
            raise CycleStreamError(f"cannot listen on {where}: the address is already in use "
                                   "(another server is there; choose another --port)") from None
        reason = (e.strerror or str(e)).split(" (while attempting")[0]  # create_server appends the address
        raise CycleStreamError(f"cannot listen on {where}: {reason}") from None


def _ssl_context(options: ServeOptions) -> ssl.SSLContext | None:
    if options.certfile is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(options.certfile, options.keyfile)
    except ssl.SSLError:
        key = f"--keyfile {options.keyfile}" if options.keyfile else "the same file"
        raise CycleStreamError(f"cannot use --certfile {options.certfile}: not a PEM certificate whose private key is "
                               f"in {key}") from None
    except OSError as e:
        raise CycleStreamError(f"cannot use --certfile {options.certfile}: {e.strerror or e}") from None
    return context


def _url(sock: socket.socket, host: str, tls: bool) -> str:
    port = sock.getsockname()[1]
    shown = socket.gethostname() if host in ("", "0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


def _access(sock: socket.socket, options: ServeOptions) -> Access:
    bound, port = sock.getsockname()[:2]
    names = server_names(bound, port, options.host, options.allowed_hosts or ())
    return Access(token=secrets.token_urlsafe(24), names=names)


def _time_one_frame(backend: Backend, width: int, height: int) -> float:
    """Seconds for one frame (the second of two calls: the first of a new batch size sets things up)."""
    frame = torch.zeros((1, height, width, 3), dtype=torch.uint8)
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        backend.run(frame)
        times.append(time.perf_counter() - t0)
    return times[-1]


def _quiet_libraries() -> None:
    for name in QUIET_LIBRARIES:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def run_serve(
    options: ServeOptions,
    on_ready: Callable[[str, ServeApp], None] | None = None,
    stop: threading.Event | None = None,
) -> ServeReport:
    """Serve the page until Ctrl-C/SIGTERM/SIGHUP (then KeyboardInterrupt, or Terminated, is raised once
    every client is disconnected) or until ``stop`` is set (then the report is returned).  ``on_ready``
    gets the URL (with its token, as printed) and the app once the model is prepared and the page answers."""
    _check_options(options)
    serve_app = _import_app()
    _quiet_libraries()
    model = load_model(options.model)  # type: ignore[arg-type]
    ssl_context = _ssl_context(options)
    width, height = options.size
    sock = _listen(options.host, options.port)
    backend = shared = None
    signals: list[int] = []  # the signals that stopped the server
    try:
        url = _url(sock, options.host, ssl_context is not None)
        access = _access(sock, options)
        run = dataclasses.replace(options.run, size=None, batch_size=options.max_clients * options.run.batch_size)
        backend = prepare_backend(model, run, height, width)
        log.info("model: %.0f ms a frame at %dx%d", 1000 * _time_one_frame(backend, width, height), width, height)
        shared = SharedBackend(backend, streams=1)
        name = Path(str(options.model)).name
        with candidates_on(sock.getsockname()[0]) as addresses:
            if not is_loopback(sock.getsockname()[0]):
                log.info("WebRTC media is offered on %s", ", ".join(addresses) or "no address (no interface is up)")
            app = asyncio.run(_serve(options, sock, ssl_context, shared, url, access, name, model, serve_app,
                                     on_ready, stop, signals))
        report = ServeReport(url, app.served, app.refused, shared.calls, shared.frames)
    finally:
        if shared is not None:
            shared.close()
        if backend is not None:
            backend.close()
        sock.close()
    if report.model_calls:
        log.info("served %s; one model: %d frames in %d calls (%.2f frames a call)", clients(report.served),
                 report.model_frames, report.model_calls, report.model_frames / report.model_calls)
    if signals:
        interrupt: KeyboardInterrupt = KeyboardInterrupt() if signals[0] == signal.SIGINT else Terminated(signals[0])
        interrupt.add_note(f"the server at {url} stopped ({clients(report.served)} served)")
        raise interrupt
    return report


async def _serve(
    options: ServeOptions,
    sock: socket.socket,
    ssl_context: ssl.SSLContext | None,
    shared: SharedBackend,
    url: str,
    access: Access,
    model_name: str,
    model: LoadedModel,
    serve_app: type[ServeApp],
    on_ready: Callable[[str, ServeApp], None] | None,
    stop: threading.Event | None,
    signals: list[int],
) -> ServeApp:
    from aiohttp import web

    from cyclestream.engine.serve.connections import OneLineLogger

    stopping = stop or threading.Event()
    app = serve_app(options, shared, options.size, model_name, access, model)
    runner = web.AppRunner(app.app, handle_signals=False, access_log=None, shutdown_timeout=1.0,
                           logger=OneLineLogger())
    await runner.setup()
    restore = _handle_signals(asyncio.get_running_loop(), stopping, signals)
    server = None
    try:
        server = await asyncio.get_running_loop().create_server(
            app.connections.protocol_factory(runner.server), sock=sock, ssl=ssl_context,  # type: ignore[arg-type]
            ssl_handshake_timeout=options.http.head_timeout if ssl_context is not None else None,
        )
        printed = f"{url}#{TOKEN_PARAMETER}={access.token}"
        log.info("serving %s (open it in a browser to see your camera translated; up to %d at once; Ctrl-C to stop)",
                 printed, options.max_clients)
        _warn_if_exposed(options, sock, model_name, access.token, ssl_context is not None)
        if on_ready is not None:
            on_ready(printed, app)
        while not stopping.is_set():
            await asyncio.sleep(0.1)
        if app.clients:
            log.info("stopping: disconnecting %s", clients(len(app.clients)))
        await app.close()
    finally:
        restore()
        if server is not None:
            server.close()
        await runner.cleanup()
    return app


def _warn_if_exposed(options: ServeOptions, sock: socket.socket, model_name: str, token: str, tls: bool) -> None:
    """One warning naming what is reachable when the server listens beyond this machine."""
    bound, port = sock.getsockname()[:2]
    if is_loopback(bound):
        return
    where = "every interface" if bound in ("0.0.0.0", "::") else bound
    log.warning(
        "listening on %s, beyond this machine: whoever can reach port %d and has the address above (its token) "
        "can send video to the model, take its %d places, and read /config (model %s, backend, frame size) "
        "and /status (clients and their statistics); share it only with those you mean to%s",
        where, port, options.max_clients, model_name,
        "" if tls else "; over plain http the token and the signalling cross the network unencrypted: use "
        f"--certfile/--keyfile, or keep --host 127.0.0.1 and tunnel (ssh -L {port}:localhost:{port} THIS-HOST)",
    )
    if not tls:
        log.info("browsers open the camera only on https:// or http://localhost: from another machine use "
                 "--certfile/--keyfile, or the tunnel above and http://localhost:%d/#%s=%s", port, TOKEN_PARAMETER,
                 token)


def _handle_signals(
    loop: asyncio.AbstractEventLoop, stopping: threading.Event, signals: list[int]
) -> Callable[[], None]:
    """Ctrl-C, SIGTERM, SIGHUP: stop serving (disconnect the clients, then raise in the caller).  A second
    Ctrl-C ends the process at once.  Returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous: dict[int, Any] = {sig: signal.getsignal(sig) for sig in watched}

    def handle(signum: int) -> None:
        signals.append(signum)
        if len(signals) > 1 and signum == signal.SIGINT:
            sys.stderr.write("cyclestream: stopped at once\n")
            sys.stderr.flush()
            os._exit(128 + signum)
        stopping.set()

    for sig in watched:
        loop.add_signal_handler(sig, handle, sig)

    def restore() -> None:
        for sig in watched:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig])

    return restore
