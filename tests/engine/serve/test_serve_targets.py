"""Each browser of `serve` chooses its own StarGAN target: one shared model call translates every
client's frame with that client's label, and a choice the model does not take is refused in one line,
keeping the old one.  (The page's selector, in a real browser: test_serve_browser.py.)"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("aiortc", reason="serve needs aiortc: pip install 'cyclestream[serve]'")

from aiortc import RTCPeerConnection

from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.backends.shared import SharedBackend
from cyclestream.engine.checkpoint import LoadedModel, load_model
from cyclestream.engine.jobs.live_target import parse_control
from cyclestream.engine.serve.app import ServeApp
from cyclestream.engine.serve.client import Client
from cyclestream.engine.serve.options import ServeOptions
from tests.engine.stargan_files import randomised_stargan

DOMAINS = ["openmoji", "twemoji", "noto"]


def stargan_file(path: Path) -> Path:
    return randomised_stargan(path, DOMAINS)


@pytest.fixture(scope="module")
def stargan(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    return load_model(stargan_file(tmp_path_factory.mktemp("star") / "star.safetensors"))


def by_hand(model: LoadedModel, rgb: np.ndarray, domain: str) -> np.ndarray:
    """The generator on one frame with a one-hot label, outside the engine."""
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        y = model.generator(x, torch.eye(3)[DOMAINS.index(domain)][None])
    return ((y[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).numpy()


def test_one_shared_call_gives_each_client_its_own_target(stargan: LoadedModel) -> None:
    backend = prepare_backend(stargan, RunOptions(backend="eager", target="openmoji"), 16, 16)
    shared = SharedBackend(backend, streams=2, gather=5.0)  # wait for both: one call carries the two frames
    try:
        clients = [shared.client(), shared.client()]
        clients[1].conditioning = parse_control(stargan, "noto")
        frames = [np.random.default_rng(k).integers(0, 256, (1, 16, 16, 3), dtype=np.uint8) for k in range(2)]
        out: list[Any] = [None, None]

        def call(k: int) -> None:
            out[k] = clients[k].run(torch.from_numpy(frames[k])).numpy()

        threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert shared.calls == 1 and shared.frames == 2
    finally:
        shared.close()
        backend.close()
    for k, domain in enumerate(("openmoji", "noto")):
        assert np.abs(out[k][0].astype(int) - by_hand(stargan, frames[k][0], domain)).max() <= 1, domain
    assert np.abs(out[0].astype(int) - out[1].astype(int)).mean() > 10  # the targets really differ


def test_the_page_is_told_the_choices_and_a_bad_choice_keeps_the_old_one(stargan: LoadedModel) -> None:
    backend = prepare_backend(stargan, RunOptions(backend="eager", target="twemoji"), 16, 16)
    shared = SharedBackend(backend, streams=1)
    try:
        options = ServeOptions(model=stargan.path, page=stargan.path, run=RunOptions(target="twemoji"))
        app = ServeApp(options, shared, (16, 16), "star", access=None, loaded=stargan)  # type: ignore[arg-type]
        assert app.control == {"kind": "label", "value": "twemoji", "choices": DOMAINS}
        client = shared.client()

        async def choices() -> list[dict[str, Any]]:
            async def gone(*_: Any) -> None:
                return None

            pc = RTCPeerConnection()
            browser = Client(1, pc, client, (16, 16), 1, "off", 10.0, gone, dict, stargan, "twemoji")
            answers = [browser.choose(v) for v in ("noto", "emoji", {"x": 1})]
            assert browser.control == "noto" and browser.stats()["target"] == "noto"
            await pc.close()
            return answers

        good, bad, odd = asyncio.run(choices())
        assert good == {"value": "noto", "error": None}
        assert bad["value"] == "noto" and "'emoji' is not a target" in bad["error"] and "\n" not in bad["error"]
        assert odd["value"] == "noto" and odd["error"]  # not text: refused, nothing changes
        assert client.conditioning[0].tolist() == [[0.0, 0.0, 1.0]]
    finally:
        shared.close()
        backend.close()
