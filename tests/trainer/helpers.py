"""Plain helpers of the trainer tests (the fixtures in conftest.py build on them): image folders,
quiet run options, option overrides, and a deep bit-for-bit comparison."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from cyclestream.trainer.options import TrainOptions, TrainRunOptions
from cyclestream.trainer.state import load_state


def squares(folder: Path, count: int, size: int = 24, inverted: bool = False, seed: int = 0) -> Path:
    """``count`` PNGs: a solid coloured square on white (or the colour-inverted image)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for i in range(count):
        colour = tuple(rng.randrange(256) for _ in range(3))
        im = Image.new("RGB", (size, size), (255, 255, 255))
        lo = rng.randrange(1, size // 4)
        im.paste(colour, (lo, lo, size - lo, size - lo))
        if inverted:
            im = Image.eval(im, lambda v: 255 - v)
        im.save(folder / f"{i:03d}.png")
    return folder


def aligned(folder: Path, count: int, size: int = 32, seed: int = 0) -> Path:
    """pix2pix-style A|B images: a square on the left, its inverted image on the right."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = squares(folder / ".src", count, size, seed=seed)
    for i, path in enumerate(sorted(tmp.glob("*.png"))):
        a = Image.open(path).convert("RGB")
        ab = Image.new("RGB", (2 * size, size))
        ab.paste(a, (0, 0))
        ab.paste(Image.eval(a, lambda v: 255 - v), (size, 0))
        ab.save(folder / f"{i:03d}.png")
    return folder


def quiet_run(out: Path, **overrides: Any) -> TrainRunOptions:
    """Run options for a test: on the CPU, one thread, no progress bars."""
    return TrainRunOptions(**{"out": out, "device": "cpu", "progress": False, "threads": 1, **overrides})


def override(opts: TrainOptions, **overrides: Any) -> TrainOptions:
    """``opts`` with fields of any option group replaced by name (``ngf=8``, ``resume=True``, ...)."""
    groups = {"data": opts.data, "model": opts.model, "optim": opts.optim, "run": opts.run, "distill": opts.distill}
    for key, value in overrides.items():
        group = next((g for g, obj in groups.items() if hasattr(obj, key)), None)
        if group is None:
            raise TypeError(f"no option group has a field {key!r}")
        groups[group] = replace(groups[group], **{key: value})
    return TrainOptions(**groups)


def assert_same(a: object, b: object, where: str = "") -> None:
    """``a`` and ``b`` (tensors, dicts, lists, plain values) are equal, tensors bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {set(a) ^ set(b)}"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert isinstance(b, list | tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def logged_losses(run_dir: Path) -> list[dict[str, float]]:
    """``log.jsonl`` without the timings."""
    lines = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in e.items() if k != "seconds"} for e in lines]


def assert_same_runs(reference: Path, resumed: Path) -> None:
    """Two run folders hold the same training, bit for bit: state (networks, optimisers, schedules,
    every rank's RNG and pools), position, model files and logged losses."""
    from safetensors.torch import load_file

    ref, res = load_state(reference / "state.pt"), load_state(resumed / "state.pt")
    assert_same(ref["task"], res["task"], "task")
    assert_same(ref["ranks"], res["ranks"], "ranks")
    assert ref["position"] == res["position"]
    models = sorted(p.name for p in reference.glob("*.safetensors"))
    assert models and models == sorted(p.name for p in resumed.glob("*.safetensors"))
    for name in models:
        assert_same(load_file(reference / name), load_file(resumed / name), name)
    assert logged_losses(reference) == logged_losses(resumed)


class Killed(Exception):
    """Stands for a kill -9 between two checkpoints."""


def kill_at(iteration: int) -> Callable[[int], None]:
    """An ``on_iteration`` hook that raises :class:`Killed` after iteration ``iteration``."""

    def hook(n: int) -> None:
        if n == iteration:
            raise Killed

    return hook


def start_training_until_checkpoint(tmp_path: Path, images: int, *extra: str,
                                    wait: float = 120.0) -> tuple[subprocess.Popen[str], Path]:
    """`cyclestream train` of a tiny CycleGAN on squares in a process of its own, checkpointing every
    iteration for ever; returns once its first ``state.pt`` is written (the process and its --out)."""
    a, b = squares(tmp_path / "A", images), squares(tmp_path / "B", images, inverted=True)
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "-q", "train", "--data-a", str(a), "--data-b", str(b), "--out", str(out),
         "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--n-layers-d", "2", "--load-size", "20", "--crop-size", "16",
         "--epochs", "10000", "--epochs-decay", "0", "--threads", "1", "--save-every-iters", "1", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + wait
    while not (out / "state.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert (out / "state.pt").exists(), "training never checkpointed"
    return proc, out


def sigterm_and_wait(proc: subprocess.Popen[str], timeout: float) -> str:
    """SIGTERM to ``proc``, then its stderr once it ends; a test failure with that stderr if it does not."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"the run did not stop on SIGTERM; its stderr ends:\n{proc.communicate()[1][-3000:]}")
