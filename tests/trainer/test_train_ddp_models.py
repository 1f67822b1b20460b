"""Two DDP processes on CPU (gloo) for the models beyond CycleGAN: CUT, FastCUT, StarGAN and BicycleGAN
finish, both ranks hold the same weights, rank 0 alone writes; a FastCUT run stopped by --max-iters
resumes, with 2 processes, to what the uninterrupted run trained, bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.trainer.loop import train
from cyclestream.trainer.options import DataOptions, ModelOptions, OptimOptions, TrainOptions
from cyclestream.trainer.plot import read_log
from cyclestream.trainer.state import load_state
from tests.trainer.helpers import aligned, assert_same_runs, quiet_run

RUN_FILES = {"state.pt", "log.jsonl", "losses.png", "options.json", "samples"}


def check_two_ranks(run: Path, iterations: int, models: set[str]) -> None:
    """A finished 2-process run: equal weights on both ranks, each rank's state kept, and rank 0's files
    only (one log line per iteration, no temporary files)."""
    state = load_state(run / "state.pt")
    assert state["world_size"] == 2 and state["position"]["iteration"] == iterations
    digests = state["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    ranks = state["ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["rng"]["torch"], ranks[1]["rng"]["torch"])  # own streams
    assert [e["iteration"] for e in read_log(run / "log.jsonl")] == list(range(1, iterations + 1))
    assert {p.name for p in run.iterdir()} == RUN_FILES | models


@pytest.mark.slow
def test_cut_on_two_ranks(tiny: Callable[..., TrainOptions]) -> None:
    # 6 unaligned pairs, batch 1 a rank: 3 steps; identity PatchNCE on, 2 NCE layers of the one block.
    opts = tiny("cut", model="cut", nproc=2, epochs=1, epochs_decay=0, pool_size=None, num_patches=8, netf_nc=8,
                nce_layers="0,4", samples=1)  # fmt: skip
    result = train(opts)
    assert result.finished
    check_two_ranks(result.run_dir, 3, {"G.safetensors"})


@pytest.mark.slow
def test_fastcut_on_two_ranks_resumes_bit_for_bit(tiny: Callable[..., TrainOptions]) -> None:
    # Each rank draws its own flip coin and patch positions; a stop after iteration 2 of 3, then --resume.
    small: dict[str, Any] = {"model": "fastcut", "nproc": 2, "epochs": 1, "epochs_decay": 0, "pool_size": None,
                             "num_patches": 8, "netf_nc": 8, "nce_layers": "0,4", "samples": 1}  # fmt: skip
    reference = train(tiny("reference", **small))
    assert reference.finished
    check_two_ranks(reference.run_dir, 3, {"G.safetensors"})
    stopped = train(tiny("stopped", max_iters=2, **small))
    assert not stopped.finished and stopped.position.iteration == 2
    resumed = train(tiny("stopped", resume=True, **small))
    assert resumed.finished
    assert_same_runs(reference.run_dir, resumed.run_dir)


@pytest.mark.slow
def test_stargan_on_two_ranks(tmp_path: Path) -> None:
    # 3 domains of 3 images: 5 a rank (padded), batch 2: 3 steps, G updated at the 2nd (n_critic 2).
    rng = np.random.default_rng(0)
    for domain in ("a", "b", "c"):
        (tmp_path / "data" / domain).mkdir(parents=True)
        for i in range(3):
            image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "data" / domain / f"{i}.png")
    opts = TrainOptions(
        data=DataOptions(dataroot=tmp_path / "data", load_size=18, crop_size=16),
        model=ModelOptions(model="stargan", ngf=4, n_blocks=1, ndf=4, n_critic=2),
        optim=OptimOptions(epochs=1, epochs_decay=0, batch_size=2),
        run=quiet_run(tmp_path / "run", samples=1, precision="fp32", nproc=2),
    )
    result = train(opts)
    assert result.finished
    check_two_ranks(result.run_dir, 3, {"G.safetensors"})


@pytest.mark.slow
def test_bicyclegan_on_two_ranks(tmp_path: Path) -> None:
    # 5 aligned 64 px pairs: 3 a rank (padded), batch 2: a step of 2, then a step of 1 that is skipped.
    data = aligned(tmp_path / "data", 5, 64)
    opts = TrainOptions(
        data=DataOptions(data=data, load_size=72, crop_size=64),
        model=ModelOptions(model="bicyclegan", ngf=4, ndf=4, nef=4),
        optim=OptimOptions(epochs=1, epochs_decay=0),
        run=quiet_run(tmp_path / "run", samples=1, precision="fp32", nproc=2),
    )
    result = train(opts)
    assert result.finished
    check_two_ranks(result.run_dir, 2, {"G.safetensors", "latest_net_G.pth", "latest_net_E.pth"})
