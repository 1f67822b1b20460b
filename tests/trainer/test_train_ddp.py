"""DistributedDataParallel on CPU (gloo) with two processes: ranks stay in sync, rank 0 writes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cyclestream.trainer.loop import _failure_line, train
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.plot import read_log
from cyclestream.trainer.state import load_state


def _check_run(run: Path, iterations: int) -> None:
    state = load_state(run / "state.pt")
    assert state["world_size"] == 2 and state["position"]["iteration"] == iterations
    digests = state["rank_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]  # identical weights on both ranks
    assert len(state["ranks"]) == 2  # each rank's RNG and pools are kept for resuming
    # Only rank 0 writes: one log line per iteration, no stray temporary files.
    assert [e["iteration"] for e in read_log(run / "log.jsonl")] == list(range(1, iterations + 1))
    assert {p.name for p in run.iterdir()} == {"G_A.safetensors", "G_B.safetensors", "state.pt", "log.jsonl",
                                               "losses.png", "options.json", "samples"}


@pytest.mark.slow
def test_two_spawned_ranks(tiny: Callable[..., TrainOptions]) -> None:
    # 6 images over 2 ranks: 3 iterations per epoch, 2 epochs; a mid-epoch checkpoint gathers both ranks.
    result = train(tiny("ddp", nproc=2, epochs=1, epochs_decay=1, save_every_iters=2))
    assert result.finished and result.position.iteration == 6
    _check_run(result.run_dir, 6)


@pytest.mark.slow
def test_torchrun(tmp_path: Path, unpaired: tuple[Path, Path]) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cyclestream.trainer", "-q", "--data-a", str(unpaired[0]), "--data-b", str(unpaired[1]),
           "--out", str(out), "--ngf", "4", "--n-blocks", "1", "--ndf", "4", "--n-layers-d", "2",
           "--load-size", "20", "--crop-size", "16", "--epochs", "1", "--epochs-decay", "0", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("finished at iteration 3") == 1  # printed by rank 0 only
    _check_run(out, 3)


def test_worker_failures_become_one_line() -> None:
    text = ("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in <module>\n'
            "cyclestream.trainer.data.DataError: no images in domain A folder /x (it is empty)\n")
    assert _failure_line(text) == "no images in domain A folder /x (it is empty)"
