"""DistributedDataParallel on CPU (gloo) with two processes: ranks stay in sync, rank 0 writes; how the
batches fall across the processes (--ddp-recipe scaled | official)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from cyclestream.trainer.loop import _failure_line, train
from cyclestream.trainer.options import TrainingError, TrainOptions, per_process_batch, plan_batches
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
    assert {p.name for p in run.iterdir()} == {"G_A.safetensors", "G_B.safetensors", "latest_net_G_A.pth",
                                               "latest_net_G_B.pth", "state.pt", "log.jsonl", "losses.png",
                                               "options.json", "samples"}  # fmt: skip


@pytest.mark.slow
def test_two_spawned_ranks(tiny: Callable[..., TrainOptions]) -> None:
    # --ddp-recipe official with --batch-size 2: one image per rank and step, so 6 images make 3 steps per
    # epoch, as one process with batch 2 would; 2 epochs; a mid-epoch checkpoint gathers both ranks.
    result = train(tiny("ddp", nproc=2, epochs=1, epochs_decay=1, save_every_iters=2, batch_size=2,
                        ddp_recipe="official"))
    assert result.finished and result.position.iteration == 6
    _check_run(result.run_dir, 6)


@pytest.mark.slow
def test_torchrun(tmp_path: Path, tiny_flags: Callable[[Path], list[str]]) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "cyclestream.trainer", "-q", *tiny_flags(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("finished at iteration 3") == 1  # printed by rank 0 only
    # --ddp-recipe scaled (the default): each rank takes --batch-size 1, and rank 0 says what that makes.
    assert done.stderr.count("2 processes × batch 1 = effective batch 2, 3 steps per epoch") == 1
    assert done.stderr.count("training on cpu (1 thread in each of 2 processes)") == 1
    _check_run(out, 3)


def test_batches_across_processes() -> None:
    # scaled: each process takes --batch-size; 286 images on 4 processes → 72 each (padded), 18 steps of 4.
    plan = plan_batches(286, 4, 4, "scaled")
    assert (plan.per_process, plan.effective, plan.steps_per_epoch) == (4, 16, 18)
    assert plan.describe().startswith("4 processes × batch 4 = effective batch 16, 18 steps per epoch "
                                      "(--ddp-recipe scaled: 4× the batch and 1/4 of the steps")
    # official: --batch-size split across them; effective batch and steps as one process: ceil(286 / 4) = 72.
    plan = plan_batches(286, 4, 4, "official")
    assert (plan.per_process, plan.effective, plan.steps_per_epoch) == (1, 4, 72)
    assert plan_batches(286, 4, 1, "scaled").steps_per_epoch == 72
    one = plan_batches(6, 1, 1, "official")
    assert one.describe() == "1 process × batch 1 = effective batch 1, 6 steps per epoch"
    assert per_process_batch(1, 1, "official") == 1 and per_process_batch(3, 2, "scaled") == 3
    with pytest.raises(TrainingError, match=r"splits --batch-size 3 across 2 processes, so it must be a multiple "
                                            r"of 2.*--ddp-recipe scaled \(each process takes --batch-size images: "
                                            r"an effective batch of 6\)"):
        per_process_batch(3, 2, "official")


def test_one_process_logs_its_device_and_batches(tiny: Callable[..., TrainOptions],
                                                 caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="cyclestream.trainer"):
        train(tiny("run", epochs=1, epochs_decay=0, max_iters=1))
    assert "training on cpu (1 thread)" in caplog.messages
    assert "1 process × batch 1 = effective batch 1, 6 steps per epoch" in caplog.messages


def test_worker_failures_become_one_line() -> None:
    text = ("\n\n-- Process 1 terminated with the following error:\nTraceback (most recent call last):\n"
            '  File "x.py", line 1, in <module>\n'
            "cyclestream.trainer.data.DataError: no images in domain A folder /x (it is empty)\n")
    assert _failure_line(text) == "no images in domain A folder /x (it is empty)"


@pytest.mark.slow
def test_sigterm_to_a_multi_process_run_stops_every_process(tmp_path: Path) -> None:
    """`train --nproc 2` and SIGTERM to the command (what a scheduler sends): it is forwarded to the
    workers, every process ends (it used to wait for workers that trained on), exit 143, and the last
    checkpoint is whole."""
    from tests.trainer.helpers import sigterm_and_wait, start_training_until_checkpoint

    proc, out = start_training_until_checkpoint(tmp_path, 8, "--nproc", "2", wait=180)
    workers = [pid for pid in subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "spawn_main"], capture_output=True,
                                             text=True).stdout.split()]
    assert len(workers) == 2
    err = sigterm_and_wait(proc, timeout=90)
    assert proc.returncode == 143, err[-3000:]
    assert "interrupted by SIGTERM; continue from the last checkpoint" in err
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived the run"
    assert not [p.name for p in out.rglob("*") if ".partial-" in p.name]
    load_state(out / "state.pt")  # whole
