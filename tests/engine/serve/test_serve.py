"""`cyclestream serve`: the command's errors, the web app's routes and limits, and a real WebRTC client
(aiortc) that sends known frames and checks that what comes back is the model's output on them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiortc", reason="serve needs aiortc: pip install 'cyclestream[serve]'")
pytest.importorskip("aiohttp", reason="serve needs aiohttp: pip install 'cyclestream[serve]'")

from cyclestream.bundled import SERVE_PAGE as PAGE
from cyclestream.bundled import STUDENT_MODEL
from cyclestream.cli import main
from cyclestream.engine.backends.options import RunOptions
from cyclestream.engine.jobs.bench_options import ServeBenchOptions
from cyclestream.engine.jobs.serve import ServeOptions, run_serve
from cyclestream.engine.serve.app import ServeApp
from cyclestream.engine.serve.probe import Refused, analyse, connect, expected_outputs, known_frames, probe

SIZE = (160, 120)
CYCLE = 30  # distinct frames each client sends, in a cycle (a second at 30 fps: longer than a round trip)


@dataclass(frozen=True)
class Served:
    """A running server: the address it printed (with its token) and its app."""

    url: str
    app: ServeApp

    @property
    def base(self) -> str:  # http://127.0.0.1:PORT/
        return self.url.split("#")[0]

    @property
    def token(self) -> str:
        return self.url.split("#token=")[1]

    @property
    def port(self) -> int:
        return int(self.base.rstrip("/").rsplit(":", 1)[1])


@contextlib.contextmanager
def serving(model: Path, run: RunOptions | None = None, **options: Any) -> Iterator[Served]:
    """A server in this process (its asyncio loop on a thread of its own), on a free port."""
    opts = ServeOptions(model=model, page=PAGE, port=0, run=run or RunOptions(backend="eager", size=SIZE), **options)
    stop = threading.Event()
    ready: list[Served] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            run_serve(opts, on_ready=lambda url, app: ready.append(Served(url, app)), stop=stop)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=run, name="test-serve")
    thread.start()
    deadline = time.monotonic() + 120
    while not ready and not failed and time.monotonic() < deadline:
        time.sleep(0.05)
    if failed:
        raise failed[0]
    assert ready, "the server never became ready"
    try:
        yield ready[0]
    finally:
        stop.set()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the server did not stop"
        assert not failed, failed


def get(server: Served, path: str = "") -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(server.base + path, headers={"Authorization": f"Bearer {server.token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def post(server: Served, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type, "Authorization": f"Bearer {server.token}"}
    request = urllib.request.Request(server.base + path, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, json.loads(text) if e.headers.get_content_type() == "application/json" else {}


def status(server: Served) -> dict[str, Any]:
    return json.loads(get(server, "status")[2])


def wait_for(condition: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def client_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("serve-client-")]


# ----------------------------------------------------------------------------- the command


def test_bad_options_are_one_line_before_anything_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--size", "161x120"]) == 2
    assert capsys.readouterr().err.strip() == (
        "cyclestream: error: --size must be even in both directions for WebRTC's 4:2:0 video, got 161x120")
    assert main(["serve", "--keyfile", "key.pem"]) == 2
    assert "--keyfile needs --certfile" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--port", "70000"])
    assert exit_info.value.code == 2
    assert "must be between 0 and 65535" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_naming_the_address(tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(tiny_model), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"cyclestream: error: cannot listen on 127.0.0.1:{port}: the address is already in use "
                       "(another server is there; choose another --port)")


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = PAGE.read_text()
    assert 'id="output"' in page and 'id="input"' in page and "getUserMedia" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must not load anything from elsewhere"
    assert not re.search(r"https?://(?!localhost)\w", page), "the page names no other server"


# ----------------------------------------------------------------------------- the web app


def test_routes_are_fixed_and_offers_are_checked(tiny_model: Path) -> None:
    with serving(tiny_model, max_clients=2) as server:
        code, headers, body = get(server)
        assert code == 200 and b'<video id="output"' in body
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        config = json.loads(get(server, "config")[2])
        assert (config["width"], config["height"], config["max_clients"]) == (*SIZE, 2)
        for path in ("index.html", "../pyproject.toml", "%2e%2e/%2e%2e/etc/passwd", "assets/serve/index.html"):
            assert get(server, path)[0] == 404, path  # no file is ever read for the page
        assert post(server, "offer", b"{not json")[0] == 400
        assert post(server, "offer", b'{"sdp": 1, "type": "offer"}')[0] == 400
        assert post(server, "offer", b'{"sdp": "", "type": "offer"}', "text/plain")[0] == 415
        code, answer = post(server, "offer", json.dumps({"sdp": "v=0\r\n", "type": "offer"}).encode())
        assert code == 400 and "no media section" in answer["error"]
        assert post(server, "offer", b"x" * 300_000)[0] == 413  # an offer is a few kB
        assert status(server)["clients"] == 0


def _answer_candidates(server: Served) -> list[str]:
    """The addresses of the ICE candidates in the server's answer to an ordinary aiortc offer."""
    from aiortc import RTCPeerConnection

    async def offer() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="sendrecv")
        pc.createDataChannel("stats")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    sdp = asyncio.run(offer())
    code, answer = post(server, "offer", json.dumps({"sdp": sdp, "type": "offer"}).encode())
    assert code == 200, answer
    return [line.split()[4] for line in answer["sdp"].splitlines() if line.startswith("a=candidate:")]


def test_a_server_on_loopback_offers_only_loopback_candidates(tiny_model: Path) -> None:
    """aiortc would offer every interface of the machine (LAN, VPN, containers) to a page served on
    127.0.0.1 and take media on them; the answer names 127.0.0.1 alone."""
    with serving(tiny_model) as server:
        addresses = _answer_candidates(server)
    assert addresses and set(addresses) == {"127.0.0.1"}, addresses


def test_the_offered_addresses_follow_the_bound_one() -> None:
    import aioice.ice

    from cyclestream.engine.serve.candidates import candidates_on, offered

    assert offered("127.0.0.1") == ["127.0.0.1"] and offered("::1") == ["::1"]
    assert offered("192.0.2.7") == ["192.0.2.7"]
    assert offered("0.0.0.0") == aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    own = aioice.ice.get_host_addresses
    with candidates_on("127.0.0.1"):
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == []
    assert aioice.ice.get_host_addresses is own


# ----------------------------------------------------------------------------- a real WebRTC client


@pytest.mark.slow
def test_returned_frames_are_the_models_output_on_the_frames_sent() -> None:
    """The aiortc client sends 30 distinct frames in a cycle at 30 fps; each frame that comes back must be
    the model's output on one of them (within VP8's loss, twice), not the frame itself."""
    with serving(STUDENT_MODEL, temporal="off") as server:
        [result] = probe(server.url, STUDENT_MODEL, options=ServeBenchOptions(size=SIZE, seconds=4.0, cycle=CYCLE))
        wait_for(lambda: status(server)["clients"] == 0, 10, "the client to be freed")
    print(result)
    assert result.received >= 10, result
    assert result.psnr_to_model >= 28.0, result  # measured 33-34 dB
    assert result.psnr_to_model_p5 >= 24.0, result
    assert result.psnr_to_input <= 20.0, result  # an untranslated echo would score ≥ 30 here
    assert result.latency_ms["p50"] < 2000, result  # live policy: bounded, never a growing backlog
    assert not client_threads()


@pytest.mark.slow
def test_clients_share_one_model_and_one_more_is_refused_politely() -> None:
    async def scenario(url: str) -> tuple[list[Any], Refused]:
        sets = [known_frames(CYCLE, *SIZE, client=k) for k in range(2)]
        sessions = [await connect(url, images, 30.0) for images in sets]
        try:
            await asyncio.sleep(1.0)
            with pytest.raises(Refused) as refused:
                await connect(url, known_frames(CYCLE, *SIZE, client=2), 30.0)
            await asyncio.sleep(3.0)
        finally:
            for session in sessions:
                session.track.stop()
                await session.pc.close()
        return [(s, images) for s, images in zip(sessions, sets, strict=True)], refused.value

    with serving(STUDENT_MODEL, temporal="off", max_clients=2) as server:
        sessions, refused = asyncio.run(scenario(server.url))
        shared = status(server)
        wait_for(lambda: status(server)["clients"] == 0, 10, "both clients to be freed")
        assert server.app.refused == 1
    assert refused.status == 503 and "busy: all 2 places are taken" in refused.message
    for session, images in sessions:  # each client gets the model's output on its own frames
        result = analyse(session, images, expected_outputs(STUDENT_MODEL, images))
        print(result)
        assert result.received >= 5 and result.psnr_to_model >= 28.0 and result.psnr_to_input <= 20.0, result
    print(shared)
    assert shared["model_frames"] > shared["model_calls"], "no call ever carried both clients' frames"
    assert not client_threads()


@pytest.mark.slow
def test_ctrl_c_disconnects_the_clients_and_exits_130(tiny_model: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "serve", "--model", str(tiny_model), "--port", "0", "--size", "64x48",
         "--backend", "eager"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stderr is not None
        lines: list[str] = []
        for line in proc.stderr:
            lines.append(line)
            if "serving http://" in line:
                break
        match = re.search(r"serving (http://\S+/)#token=\S+ ", "".join(lines))
        assert match, "".join(lines)
        url, base = match.group(0).split()[1], match.group(1)

        async def connected_then_interrupt() -> int:
            session = await connect(url, known_frames(10, 64, 48), 15.0)
            try:
                for _ in range(200):
                    if session.received:
                        break
                    await asyncio.sleep(0.05)
                assert session.received, "no translated frame came back"
                proc.send_signal(signal.SIGINT)
                return await asyncio.get_running_loop().run_in_executor(None, proc.wait, 20)
            finally:
                session.track.stop()
                await session.pc.close()

        code = asyncio.run(connected_then_interrupt())
        rest = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, rest
    assert "stopping: disconnecting 1 client\n" in rest
    assert f"cyclestream: interrupted; the server at {base} stopped (1 client served)" in rest
