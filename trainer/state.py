"""The training state file (``RUN_DIR/state.pt``): written atomically, read with ``weights_only=True``.

It holds only tensors and plain containers (no classes, so nothing executes on load)::

    {"format": 1, "options": TrainOptions.to_dict(), "world_size": N,
     "position": {"epoch": e, "epoch_iter": i, "iteration": n},   # next batch to train
     "task": Task.state_dict(),                                   # nets, optimisers, schedules, scalers
     "ranks": [per-rank {"rng": ..., "pools": ..., "sampler": ...}],  # rank r restores ranks[r]
     "rank_digests": [sha256 of each rank's parameters] (DDP only)}

Resuming restores all of it.  The data order is a pure function of (seed, epoch) and each sample's
crop/flip/B-image of (seed, epoch, index) (see data.py), so the sampler's state is just where it
stands (``sampler``: epoch and samples done): it skips the ``epoch_iter`` batches already trained,
and the resumed run continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.errors import CheckpointError, first_line

STATE_FILE = "state.pt"
FORMAT = 1


@dataclass
class Position:
    """Where training stands: the next batch is batch ``epoch_iter`` of epoch ``epoch`` (0-based),
    and ``iteration`` batches have been trained in total."""

    epoch: int = 0
    epoch_iter: int = 0
    iteration: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "epoch_iter": self.epoch_iter, "iteration": self.iteration}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Position:
        return cls(int(d["epoch"]), int(d["epoch_iter"]), int(d["iteration"]))


def capture_rng() -> dict[str, Any]:
    """Python's, numpy's and torch's (CPU and every CUDA device's) global generators, as tensors/ints."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def parameter_digest(nets: dict[str, nn.Module]) -> str:
    """sha256 of every parameter's bytes, in order: equal across DDP ranks that are in sync."""
    h = hashlib.sha256()
    for name in sorted(nets):
        for key, p in nets[name].named_parameters():
            h.update(f"{name}.{key}".encode())
            h.update(p.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def save_state(path: Path, state: dict[str, Any]) -> Path:
    """torch.save to a temporary name beside ``path``, fsync, rename: a kill at any moment leaves
    either the previous good file or the new one."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save({"format": FORMAT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
    return path


def load_state(path: Path) -> dict[str, Any]:
    """The state saved by :func:`save_state` (weights_only: no code runs), or a CheckpointError."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"no training state at {path}") from None
    except Exception as e:
        raise CheckpointError(f"{path} is not a readable training state ({first_line(e)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "position" not in state:
        raise CheckpointError(f"{path} is not a cyclestream training state (format {FORMAT})")
    return state
