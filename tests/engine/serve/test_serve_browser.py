"""`cyclestream serve` in a real browser: Debian's chromium, headless, with its fake camera, driven by
Playwright over the DevTools protocol.  The page opened without its token says which address to open;
opened with it (the printed address) it connects, translated frames play in ``#output``, several tabs
share the server, one more is refused politely, and the server keeps serving after the browser is
killed.  With a StarGAN, each tab's selector switches that tab's target live, and only that tab's."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiortc", reason="serve needs aiortc: pip install 'cyclestream[serve]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test drives chromium with playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium here (Debian: apt-get install chromium; tests/system_packages.sh does it as root)",
                allow_module_level=True)

from cyclestream.bundled import STUDENT_MODEL  # noqa: E402
from cyclestream.engine.backends.options import RunOptions  # noqa: E402
from cyclestream.engine.checkpoint import load_model  # noqa: E402
from cyclestream.engine.media.frame import TranslatedFrame  # noqa: E402
from cyclestream.engine.serve.client import Client  # noqa: E402
from tests.engine.serve.test_serve import SIZE, client_threads, get, serving, status, wait_for  # noqa: E402
from tests.engine.serve.test_serve_targets import DOMAINS, by_hand, stargan_file  # noqa: E402

FRAMES = "document.getElementById('output').getVideoPlaybackQuality().totalVideoFrames"


def launch_chromium(profile: Path) -> tuple[subprocess.Popen[str], str]:
    """Headless chromium with the fake camera (permission granted), in a process group of its own;
    returns it and its DevTools address."""
    proc = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--mute-audio", "--no-first-run",
         "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
         "--autoplay-policy=no-user-gesture-required", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        match = re.search(r"DevTools listening on (ws://\S+)", line)
        if match:
            return proc, match.group(1)
    raise AssertionError("chromium did not start: " + "".join(seen[-20:]))


def kill(proc: subprocess.Popen[str]) -> None:
    """The browser dies at once, as when its machine sleeps or its tab crashes: no goodbye, no close."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    """Start chromium; yields a function that connects Playwright to a new one."""
    started: list[subprocess.Popen[str]] = []
    with sync_api.sync_playwright() as playwright:

        def launch() -> tuple[Any, subprocess.Popen[str]]:
            proc, endpoint = launch_chromium(tmp_path / f"profile{len(started)}")
            started.append(proc)
            return playwright.chromium.connect_over_cdp(endpoint), proc

        try:
            yield launch
        finally:
            for proc in started:
                kill(proc)


def plays(page: Any, frames: int = 10, seconds: float = 60) -> int:
    """Wait until ``#output`` has shown ``frames`` frames; returns the count."""
    deadline = time.monotonic() + seconds
    while (count := page.evaluate(FRAMES)) < frames:
        assert time.monotonic() < deadline, f"#output showed {count} frames; status: {page.inner_text('#status')}"
        time.sleep(0.25)
    return int(count)


@pytest.mark.slow
def test_browser_tabs_get_translated_video_and_the_server_survives_the_browser(browser: Any) -> None:
    with serving(STUDENT_MODEL, temporal="on", max_clients=2, client_timeout=3.0) as server:
        url = server.url  # the page's address with its token, as printed
        chromium, proc = browser()
        context = chromium.contexts[0]
        bare = context.new_page()  # the address without its token: the page says what to open instead
        bare.goto(server.base)
        wait_for(lambda: "#token=" in bare.inner_text("#status"), 30, "the page to ask for the printed address")
        assert status(server)["clients"] == 0
        bare.close()
        tabs = [context.new_page() for _ in range(2)]
        for tab in tabs:
            tab.goto(url)
        for tab in tabs:  # both play translated video from the one model
            first = plays(tab)
            assert plays(tab, first + 5, 30) > first
        assert status(server)["clients"] == 2
        wait_for(lambda: re.fullmatch(r"\d+ ms", tabs[0].inner_text("#latency")) is not None, 20, "the latency")
        assert re.fullmatch(r"\d+\.\d", tabs[0].inner_text("#fps")), tabs[0].inner_text("#stats")
        assert "2 of 2 clients" in tabs[0].inner_text("#detail")

        third = context.new_page()  # every place is taken: a sentence, not a hang
        third.goto(url)
        wait_for(lambda: "busy" in third.inner_text("#status"), 30, "the refusal")
        assert third.get_attribute("#status", "class") == "error"
        assert third.inner_text("#status").startswith("cyclestream is busy: all 2 places are taken")

        kill(proc)  # no goodbye: the server notices the silence and frees both clients
        assert get(server, "status")[0] == 200
        wait_for(lambda: status(server)["clients"] == 0, 30, "the vanished clients to be freed")
        wait_for(lambda: not client_threads(), 10, "their threads to end")

        chromium, proc = browser()  # and it goes on serving
        tab = chromium.contexts[0].new_page()
        tab.goto(url)
        plays(tab)


@pytest.mark.slow
def test_each_tab_switches_its_own_target_live(browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_path = stargan_file(tmp_path / "star.safetensors")
    model = load_model(model_path)
    sent: list[tuple[float, str | None, Any, Any]] = []  # (time, the client's target, frame in, frame out)
    send = Client._send

    def recording(self: Client, translated: TranslatedFrame) -> None:
        sent.append((time.monotonic(), self.control, translated.source.image.copy(), translated.image.copy()))
        send(self, translated)

    monkeypatch.setattr(Client, "_send", recording)
    run = RunOptions(backend="eager", size=SIZE, target="openmoji")
    with serving(model_path, run=run, temporal="off", max_clients=2) as server:
        chromium, _ = browser()
        tabs = [chromium.contexts[0].new_page() for _ in range(2)]
        for tab in tabs:
            tab.goto(server.url)
        for tab in tabs:
            plays(tab)
        for tab in tabs:  # the selector lists the model's domains, starting at the command line's target
            assert tab.is_visible("#target") and not tab.is_visible("#zseed")
            assert tab.eval_on_selector_all("#target option", "os => os.map((o) => o.value)") == DOMAINS
            assert tab.input_value("#target") == "openmoji"
        tabs[0].select_option("#target", "noto")
        wait_for(lambda: tabs[0].inner_text("#control-note") == "now noto", 20, "the switch to be confirmed")
        switched = time.monotonic()
        tabs[1].evaluate("choose('emoji')")  # what the page itself never sends: refused, the old target stays
        wait_for(lambda: "is not a target" in tabs[1].inner_text("#control-note"), 20, "the refusal")
        assert tabs[1].get_attribute("#control-note", "class") == "error"
        assert tabs[1].input_value("#target") == "openmoji"
        assert sorted(c["target"] for c in status(server)["per_client"]) == ["noto", "openmoji"]
        first = plays(tabs[0])
        plays(tabs[0], first + 10, 30)  # both tabs go on playing
        plays(tabs[1], plays(tabs[1]) + 10, 30)
    later = [s for s in sent if s[0] > switched + 1.0]  # frames translated after the switch settled
    assert {target for _, target, _, _ in later} == {"noto", "openmoji"}
    for _, target, image_in, image_out in later[-20:]:  # each frame came back with its own tab's label
        assert target is not None
        assert np.abs(image_out.astype(int) - by_hand(model, image_in, target)).max() <= 1, target
