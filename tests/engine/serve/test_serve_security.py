"""`cyclestream serve` against hostile peers, fed the way an attacker would: hand-written HTTP bytes from a
socket (a foreign Host, another page's Origin, no token, headers or a body trickled a byte at a time,
too many connections, 100,000 nested brackets, an offer without its DTLS fingerprint, a client that
hangs up mid-request).  Each is refused with a status and at most one log line, never a traceback."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("aiortc", reason="serve needs aiortc: pip install 'cyclestream[serve]'")
pytest.importorskip("aiohttp", reason="serve needs aiohttp: pip install 'cyclestream[serve]'")

from cyclestream.engine.serve.options import HttpLimits
from tests.engine.serve.test_serve import Served, serving

LIMITS = HttpLimits(head_timeout=1.0, body_timeout=1.0, max_connections=8)
CLOSED_WITHIN = 10.0  # seconds: a generous bound on the 1 s deadlines (the cores are shared)
FOREIGN_HOSTS = ("evil.example:{port}", "evil.example", "127.0.0.1.evil.example:{port}", "localhost:1",
                 "127.0.0.1:{port}@evil.example", "evil.example#@127.0.0.1:{port}", "0.0.0.0:{port}",
                 "[::2]:{port}")

# An offer as a browser writes it (video sent and received, and the page's data channel), by hand.
FINGERPRINT = ("a=fingerprint:sha-256 D2:FA:0E:C3:22:59:5E:14:95:69:92:3D:13:B4:84:24:2C:C2:A2:C0:3E:FD:34:8E:"
               "5E:EA:6F:AF:52:CE:E6:0F")
OFFER_LINES = (
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0 1",
    "a=msid-semantic: WMS camera",
    "m=video 9 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0", "a=ice-ufrag:EsAw",
    "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1", "a=ice-options:trickle", FINGERPRINT, "a=setup:actpass", "a=mid:0",
    "a=sendrecv", "a=msid:camera track0", "a=rtcp-mux", "a=rtpmap:96 VP8/90000", "a=rtcp-fb:96 nack",
    "a=rtcp-fb:96 nack pli", "a=ssrc:1001 cname:camera",
    "m=application 9 UDP/DTLS/SCTP webrtc-datachannel", "c=IN IP4 0.0.0.0", "a=ice-ufrag:EsAw",
    "a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1", FINGERPRINT, "a=setup:actpass", "a=mid:1", "a=sctp-port:5000",
    "a=max-message-size:262144",
)


def offer(lines: tuple[str, ...] = OFFER_LINES) -> bytes:
    return json.dumps({"sdp": "\r\n".join(lines) + "\r\n", "type": "offer"}).encode()


@pytest.fixture(scope="module")
def server(tiny_model: Path) -> Iterator[Served]:
    with serving(tiny_model, http=LIMITS, max_clients=2) as served:
        yield served


def request(method: str, path: str, host: str, *headers: str, body: bytes = b"") -> bytes:
    """One HTTP/1.1 request, byte for byte as written here; the connection closes after it (a GET sends no
    body)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", *headers, "Connection: close"]
    if method != "POST":
        body = b""
    else:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def exchange(server: Served, data: bytes) -> tuple[int | None, bytes]:
    """Send ``data``, read until the server closes: (status or None if it closed without one, body)."""
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=CLOSED_WITHIN) as s:
        s.sendall(data)
        try:
            while chunk := s.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    head, _, body = received.partition(b"\r\n\r\n")
    return (int(head.split()[1]) if head else None), body


def ours(server: Served) -> str:
    return f"127.0.0.1:{server.port}"


def token(server: Served) -> str:
    return f"Authorization: Bearer {server.token}"


def closed_after(sock: socket.socket, trickle: bytes) -> tuple[float, bytes]:
    """Send ``trickle`` a byte every 0.1 s until the server closes the connection; (seconds, what it sent)."""
    start, received = time.monotonic(), b""
    sock.settimeout(0.1)
    for i in range(int(CLOSED_WITHIN / 0.1)):
        try:
            sock.sendall(trickle[i % len(trickle) : i % len(trickle) + 1])
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if not chunk:
            break
        received += chunk
    return time.monotonic() - start, received


def log_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    time.sleep(0.3)  # anything the server logs after answering
    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in caplog.records if r.exc_info or r.stack_info], "a traceback was logged"
    assert "Traceback" not in caplog.text
    return records


# ----------------------------------------------------------------------------- who may ask


def test_a_foreign_host_is_refused_on_every_route(server: Served) -> None:
    routes = [("GET", "/"), ("GET", "/config"), ("GET", "/status"), ("GET", "/nowhere"), ("POST", "/offer")]
    for method, path in routes:
        for host in FOREIGN_HOSTS:
            code, _ = exchange(server, request(method, path, host.format(port=server.port), token(server),
                                               "Content-Type: application/json", body=offer()))
            assert code in (400, 403, 421), (method, path, host, code)
    two = f"GET /config HTTP/1.1\r\nHost: {ours(server)}\r\nHost: evil.example\r\n{token(server)}\r\n\r\n"
    assert exchange(server, two.encode())[0] in (400, 403)
    assert exchange(server, f"GET /config HTTP/1.0\r\n{token(server)}\r\n\r\n".encode())[0] in (400, 403)
    for host in (ours(server), f"localhost:{server.port}", f"[::1]:{server.port}"):  # the names it answers to
        assert exchange(server, request("GET", "/config", host, token(server)))[0] == 200, host


def test_an_offer_from_another_page_is_refused(server: Served) -> None:
    for origin in ("http://evil.example", f"http://evil.example:{server.port}", "null",
                   f"http://127.0.0.1:{server.port}.evil.example", f"https://{ours(server)}@evil.example"):
        code, body = exchange(server, request("POST", "/offer", ours(server), token(server), f"Origin: {origin}",
                                              "Content-Type: application/json", body=offer()))
        assert code == 403, (origin, code, body)
    # its own page's origin passes (and the body is then judged: not JSON)
    code, _ = exchange(server, request("POST", "/offer", ours(server), token(server),
                                       f"Origin: http://{ours(server)}", "Content-Type: application/json",
                                       body=b"{"))
    assert code == 400


def test_requests_without_the_token_are_refused(server: Served) -> None:
    wrong = "Authorization: Bearer " + "x" * len(server.token)
    for headers in ((), (wrong,), (f"Authorization: Basic {server.token}",), (token(server) + "x",),
                    (token(server), wrong)):
        for method, path in (("GET", "/config"), ("GET", "/status"), ("POST", "/offer"), ("GET", "/nowhere")):
            code, _ = exchange(server, request(method, path, ours(server), *headers,
                                               "Content-Type: application/json", body=offer()))
            assert code in (401, 403), (headers, path, code)
    code, body = exchange(server, request("GET", "/", ours(server)))  # the page shell needs none
    assert code == 200 and b"<video" in body


def test_listening_beyond_this_machine_warns_once_and_still_checks(tiny_model: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with serving(tiny_model, host="0.0.0.0", http=LIMITS) as exposed:
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1, warnings
        for exposed_part in ("every interface", str(exposed.port), "token", "/config", "/status", "--certfile"):
            assert exposed_part in warnings[0], (exposed_part, warnings[0])
        printed = exposed.base.split("//")[1].rstrip("/")  # this machine's name, as the printed address has it
        assert exchange(exposed, request("GET", "/config", printed, token(exposed)))[0] == 200
        assert exchange(exposed, request("GET", "/config", printed))[0] == 401
        assert exchange(exposed, request("GET", "/config", f"evil.example:{exposed.port}", token(exposed)))[0] == 403


# ----------------------------------------------------------------------------- slow and many connections


def test_a_client_trickling_its_headers_is_closed(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"GET /status HTTP/1.1\r\nHost: {ours(server)}\r\n".encode())
        seconds, received = closed_after(s, b"X-Slow: still coming\r\n")
    assert seconds < CLOSED_WITHIN, "the server kept a connection whose headers never ended"
    assert received == b""


def test_a_client_trickling_its_body_is_answered_408_and_closed(server: Served) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"POST /offer HTTP/1.1\r\nHost: {ours(server)}\r\n{token(server)}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode())
        seconds, received = closed_after(s, offer())
    assert seconds < CLOSED_WITHIN, "the server kept a connection whose body never ended"
    assert received.startswith(b"HTTP/1.1 408 "), received[:80]


def test_connections_beyond_the_cap_are_closed_at_once(server: Served) -> None:
    held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(LIMITS.max_connections)]
    try:
        code, _ = exchange(server, request("GET", "/config", ours(server), token(server)))
        assert code is None, "one connection more than the cap was answered"
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + CLOSED_WITHIN
    while (code := exchange(server, request("GET", "/config", ours(server), token(server)))[0]) is None:
        assert time.monotonic() < deadline, "the server did not take connections again"
        time.sleep(0.1)
    assert code == 200


# ----------------------------------------------------------------------------- malformed offers


MALFORMED = {
    "100,000 nested brackets": b"[" * 100_000,
    "nested objects": b'{"a":' * 50_000,
    "not UTF-8": b'{"sdp": "\xff\xfe", "type": "offer"}',
    "a list": b"[1, 2]",
    "a string": b'"offer"',
    "null": b"null",
    "no sdp": b'{"type": "offer"}',
    "sdp not a string": b'{"sdp": ["v=0"], "type": "offer"}',
    "an answer": offer().replace(b'"type": "offer"', b'"type": "answer"'),
    "garbage SDP": b'{"sdp": "garbage", "type": "offer"}',
    "SDP that trips the parser": b'{"sdp": "v=0\\r\\nm=video\\r\\n", "type": "offer"}',
    "a fingerprint without a value": offer(tuple(x.replace(FINGERPRINT, "a=fingerprint:") for x in OFFER_LINES)),
    "no ICE credentials": offer(tuple(x for x in OFFER_LINES if not x.startswith("a=ice-"))),
    "no video": offer(OFFER_LINES[:6] + OFFER_LINES[22:]),
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_offer_is_400_in_one_log_line(server: Served, body: bytes,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    code, answer = exchange(server, request("POST", "/offer", ours(server), token(server),
                                            "Content-Type: application/json", body=body))
    assert code == 400, answer
    assert json.loads(answer)["error"]
    assert len(log_lines(caplog)) == 1, caplog.text


def test_malformed_http_is_400_in_one_log_line(server: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    assert exchange(server, request("GET", "/config", ours(server), "X-Long: " + "a" * 20_000))[0] == 400
    assert exchange(server, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64)[0] == 400  # TLS on http
    assert len(log_lines(caplog)) <= 2, caplog.text


def test_a_client_that_hangs_up_mid_offer_logs_one_line_at_most(server: Served,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.clear()
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(f"POST /offer HTTP/1.1\r\nHost: {ours(server)}\r\n{token(server)}\r\n"
                  "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n".encode() + offer()[:100])
        time.sleep(0.2)
    assert len(log_lines(caplog)) <= 1, caplog.text


def test_an_offer_without_a_dtls_fingerprint_is_refused(server: Served) -> None:
    """Last in this module: the complete offer is accepted, and holds a place until the server stops."""
    stripped = tuple(line for line in OFFER_LINES if not line.startswith("a=fingerprint"))
    headers = (token(server), "Content-Type: application/json")
    code, answer = exchange(server, request("POST", "/offer", ours(server), *headers, body=offer(stripped)))
    assert code == 400 and "fingerprint" in json.loads(answer)["error"], answer
    md5 = tuple(line.replace("sha-256", "md5") for line in OFFER_LINES)  # one aiortc cannot check
    assert exchange(server, request("POST", "/offer", ours(server), *headers, body=offer(md5)))[0] == 400
    code, answer = exchange(server, request("POST", "/offer", ours(server), *headers, body=offer()))
    assert code == 200 and json.loads(answer)["type"] == "answer", answer
