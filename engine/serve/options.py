"""What `serve` is asked for: where to listen, who may connect, how many browsers, how to run the model.
Imports nothing heavy (the command line's flags are generated from these fields)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.jobs.options import RUN_HELP, temporal_option
from cyclestream.engine.options import Options, option
from cyclestream.engine.serve.access import allowed_names

DEFAULT_SIZE = (320, 240)  # what a CPU translates live; a GPU takes --size 640x480 or more


@dataclass(frozen=True, kw_only=True)
class HttpLimits(Options):
    """How long and how much one HTTP connection may take (``engine/serve/connections.py``)."""

    head_timeout: float = option(10.0, above=0, help="seconds to send a request's line and headers, from the "
                                 "connection's opening or its previous response (bytes trickling in do not extend "
                                 "it), and to finish a TLS handshake")
    body_timeout: float = option(10.0, above=0, help="seconds to send a request's body once its headers are in")
    max_connections: int = option(64, min=1, help="connections open at once (a browser opens a few); more are "
                                  "closed at once")
    max_body: int = option(256 * 1024, min=1024, help="bytes of a request body (an offer is a few kB of SDP)")


def _hosts(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


@dataclass(frozen=True, kw_only=True)
class ServeOptions(Options):
    """``serve``: the page, its signalling and the shared model."""

    model: Path | None = option(None, flag="", help="generator file")
    page: Path | None = option(None, flag="", help="the HTML page served at / (the command line passes the "
                               "bundled one)")
    host: str = option("127.0.0.1", help="address to listen on (127.0.0.1: this machine only; 0.0.0.0: every "
                       "interface, with a warning)")
    port: int = option(8080, min=0, max=65535, help="port (0: any free port)")
    allowed_hosts: tuple[str, ...] | None = option(
        None, flag="--allow-host", parse=_hosts, metavar="NAME[:PORT],...", default_text="none",
        help="more names requests may be addressed to (a DNS name; a proxy's or tunnel's address; without a "
        "port: on any port). The listening address, localhost, 127.0.0.1 and [::1] with the port are always "
        "answered, any other Host is refused, so a page elsewhere cannot reach the server by DNS rebinding",
    )
    run: RunOptions = option(RunOptions(size=DEFAULT_SIZE), help=RUN_HELP)
    temporal: str = temporal_option()
    max_clients: int = option(4, min=1, max=64, help="browsers served at once; more are politely refused")
    client_timeout: float = option(10.0, above=0, help="free a client whose video stops for this many seconds")
    certfile: Path | None = option(None, help="serve https with this certificate (browsers open the camera only "
                                   "on https or localhost)")
    keyfile: Path | None = option(None, help="the certificate's private key (if not in --certfile)")
    http: HttpLimits = option(HttpLimits(), fields=(), help="HTTP connection limits")

    def check(self) -> None:
        try:
            allowed_names(self.allowed_hosts or ())
        except ValueError as e:
            raise self.fail("allowed_hosts", str(e)) from None

    @property
    def size(self) -> tuple[int, int]:
        return self.run.size or DEFAULT_SIZE
