"""What every model system (CycleGAN, pix2pix, DCGAN) shares: the runtime it runs in, Adam with the
linear-decay schedule, DDP wrapping, the speed of the step (precision, compile, memory layout, fused Adam:
trainer/speed.py), and the training state of its networks.

A task subclass builds its dataset and networks, and implements ``step`` (one iteration),
``sample_grid`` (the epoch's picture) and ``export`` (its model files).  The loop does the rest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import Dataset

from cyclestream.trainer.losses import ImagePool
from cyclestream.trainer.options import TrainOptions
from cyclestream.trainer.speed import Speed, concrete


@dataclass(frozen=True)
class Runtime:
    """Where this process trains: its device and its place among the DDP processes."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def linear_decay(epochs: int, epochs_decay: int) -> Callable[[int], float]:
    """The official ``lr_policy=linear`` factor for (0-based) epoch ``e``: 1 for ``epochs`` epochs,
    then falling linearly towards 0 over ``epochs_decay`` more."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)

    return factor


def direction_metadata(domains: tuple[str, str], src: str, dst: str, network: str) -> dict[str, Any]:
    """What a translating model file says of its direction (``translate``, ``info`` and ``distill`` read it):
    the run's domains A and B, which one it takes and which it gives, and the network it is."""
    return {"domains": {"A": domains[0], "B": domains[1]}, "direction": f"{src} -> {dst}", "input_domain": src,
            "output_domain": dst, "network": network}  # fmt: skip


def task_speed(options: TrainOptions, device: torch.device) -> Speed:
    """The concrete mode of a run's options (``auto`` left by a caller that did not resolve it: the exact path)."""
    run = options.run
    precision = "fp32" if run.precision == "auto" else run.precision
    return concrete(precision, run.compile == "on", run.channels_last == "on", device)


class Task:
    """Base of the model systems.  Subclasses fill ``nets`` (and ``pools``), call ``add_optimizer``,
    set ``dataset``, and implement ``step``, ``sample_grid`` and ``export``."""

    name = "task"

    def __init__(self, options: TrainOptions, runtime: Runtime) -> None:
        self.options, self.runtime = options, runtime
        self.device = runtime.device
        self.nets: dict[str, nn.Module] = {}
        self.wrapped: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, LambdaLR] = {}
        self.scalers: dict[str, torch.amp.GradScaler] = {}
        self.pools: dict[str, ImagePool] = {}
        self.dataset: Dataset
        self.speed = task_speed(options, runtime.device)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.speed.precision)

    # ----------------------------------------------------------------------------- building

    def add_net(self, name: str, net: nn.Module) -> nn.Module:
        net = net.to(self.device).train()
        if self.speed.channels_last:  # the 4-d tensors only (a StyleGAN2 keeps 5-d modulated weights)
            for t in (*net.parameters(), *net.buffers()):
                if t.dim() == 4:
                    t.data = t.data.contiguous(memory_format=torch.channels_last)
        self.nets[name] = net
        return net

    def add_optimizer(self, name: str, nets: list[str], *, ratio: float = 1.0) -> None:
        """Adam over ``nets``; ``ratio`` < 1 (lazy regularisation's c/(c+1), StyleGAN2) scales its rate by
        ``ratio`` and raises its betas to that power."""
        o = self.options.optim
        assert o.lr is not None and o.beta1 is not None and o.beta2 is not None, "options not resolved"
        params = [p for n in nets for p in self.nets[n].parameters()]
        fused = {"fused": True} if self.speed.fused_adam else {}
        opt = torch.optim.Adam(params, lr=o.lr * ratio, betas=(o.beta1**ratio, o.beta2**ratio), **fused)
        self.optimizers[name] = opt
        self.schedulers[name] = LambdaLR(opt, linear_decay(int(o.epochs or 0), int(o.epochs_decay or 0)))
        self.scalers[name] = torch.amp.GradScaler(self.device.type, enabled=self.speed.precision == "fp16")

    def wrap(self) -> None:
        """Compile every network in place when the speed says so (``Module.compile``: the state dict keeps its
        keys), then DDP-wrap them when distributed (``wrapped``); ``nets`` stay the plain modules."""
        trained = {n: m for n, m in self.nets.items() if any(p.requires_grad for p in m.parameters())}
        if self.speed.compile:
            for net in trained.values():
                net.compile()
        self.wrapped = dict(self.nets)  # a network nothing trains (an average of another's weights) stays as it is
        if self.runtime.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped.update({n: DistributedDataParallel(m, device_ids=ids) for n, m in trained.items()})

    # ----------------------------------------------------------------------------- one iteration

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def backward(self, optimizer: str, loss: torch.Tensor) -> None:
        self.scalers[optimizer].scale(loss).backward()

    def update(self, optimizer: str) -> None:
        scaler = self.scalers[optimizer]
        scaler.step(self.optimizers[optimizer])
        scaler.update()

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The batch on the device (image batches channels-last when the networks are)."""
        out = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        if self.speed.channels_last:
            out = {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in out.items()}
        return out

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        """One iteration; the losses as detached 0-d tensors (read back by the loop only when it logs) or floats."""
        raise NotImplementedError

    def end_epoch(self) -> None:
        for scheduler in self.schedulers.values():
            scheduler.step()

    @property
    def lr(self) -> float:
        return float(next(iter(self.optimizers.values())).param_groups[0]["lr"])

    # ----------------------------------------------------------------------------- outputs

    @contextlib.contextmanager
    def sampling(self) -> Iterator[None]:
        """Run the networks for a picture without touching the training: eval mode, no grad, every RNG
        (dropout, noise) restored afterwards, and compiled networks run eagerly (no compile for a picture)."""
        modes = {n: m.training for n, m in self.nets.items()}
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        eager = torch.compiler.set_stance("force_eager") if self.speed.compile else contextlib.nullcontext()
        with torch.random.fork_rng(devices=devices), torch.no_grad(), eager:
            for m in self.nets.values():
                m.eval()
            try:
                yield
            finally:
                for n, m in self.nets.items():
                    m.train(modes[n])

    def sample_grid(self, count: int) -> np.ndarray:
        raise NotImplementedError

    def export(self, run_dir: Path, info: dict[str, Any]) -> list[Path]:
        raise NotImplementedError

    # ----------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        """Everything shared by all ranks: networks, optimisers, schedules, AMP scalers."""
        return {
            "nets": {n: m.state_dict() for n, m in self.nets.items()},
            "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in self.schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in self.scalers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for n, m in self.nets.items():
            m.load_state_dict(state["nets"][n])
        for n, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][n])
        for n, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][n])
        for n, s in self.scalers.items():
            if state["scalers"].get(n):
                s.load_state_dict(state["scalers"][n])

    def rank_state(self) -> dict[str, Any]:
        """What differs between ranks: the image pools."""
        return {"pools": {n: p.state_dict() for n, p in self.pools.items()}}

    def load_rank_state(self, state: dict[str, Any]) -> None:
        for n, p in self.pools.items():
            if n in state.get("pools", {}):
                p.load_state_dict(state["pools"][n], self.device)
