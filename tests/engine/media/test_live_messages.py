"""A live source's failure names its cause: datagrams that are not a stream are not silence.

The sender is a separate process writing random datagrams to the port, as a misconfigured encoder or
some other program would; the receiver the real ``cyclestream stream`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.engine.media.test_live_permanent_errors import run
from tests.engine.media.test_live_senders import free_port

GARBAGE = """
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
while True:
    s.sendto(os.urandom(1316), ("127.0.0.1", int(sys.argv[1])))
    time.sleep(0.02)
"""


@pytest.mark.slow
def test_random_datagrams_are_named_as_unreadable_data_not_silence() -> None:
    port = free_port()
    sender = subprocess.Popen([sys.executable, "-c", GARBAGE, str(port)])
    try:
        code, err, _ = run("--source", f"udp://127.0.0.1:{port}", "--reconnect-for", "0")
    finally:
        sender.kill()
        sender.wait(timeout=10)
    last = err.strip().splitlines()[-1]
    assert code != 0 and "Traceback" not in err, err
    assert f"data arrives at udp://127.0.0.1:{port}, but none of it read as a video stream" in last, err
    assert "no data" not in err


@pytest.mark.slow
def test_a_silent_port_is_named_as_silence() -> None:
    port = free_port()
    code, err, _ = run("--source", f"udp://127.0.0.1:{port}", "--reconnect-for", "0")
    assert code != 0 and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].endswith(f"no data from udp://127.0.0.1:{port} for 10 s"), err
