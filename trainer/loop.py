"""The training loop: epochs, checkpoints, resume, logging, and DDP (torchrun or spawned processes).

``train(options)`` is the one entry point.  With ``nproc > 1`` it spawns that many processes (or,
under torchrun, joins the process group torchrun describes); each runs :func:`run`: build the task,
restore ``state.pt`` when resuming, then iterate.  Only rank 0 writes files.  Checkpoints happen at
every epoch end, every ``save_every_iters`` iterations and at ``max_iters``; each one writes the model
files and then ``state.pt``, every file atomically.

Rank 0 logs where it trains (``training on cuda:0 (NVIDIA ...)`` / ``training on cpu (N threads)``)
and how the batches fall across the processes (``N processes × batch B = effective batch N·B, S steps
per epoch``; ``--ddp-recipe`` chooses between B = --batch-size and B = --batch-size / N).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader
from tqdm import tqdm

from cyclestream.engine.atomic import atomic_output
from cyclestream.engine.media.images import save_rgb
from cyclestream.engine.options import resolve_device
from cyclestream.engine.signals import deferred_signals, terminate_as_interrupt
from cyclestream.trainer.data import ResumableSampler
from cyclestream.trainer.device import (
    describe_device,
    deterministic_mode,
    environment,
    explain_resume,
    set_cublas_workspace,
    use_deterministic_padding,
)
from cyclestream.trainer.options import (
    TrainingError,
    TrainOptions,
    changed_fields,
    per_process_batch,
    plan_batches,
)
from cyclestream.trainer.plot import write_loss_curves
from cyclestream.trainer.speed import bf16_warning, plan_speed
from cyclestream.trainer.state import (
    STATE_FILE,
    Position,
    capture_rng,
    load_state,
    parameter_digest,
    restore_rng,
    save_state,
)
from cyclestream.trainer.task import Runtime, Task
from cyclestream.trainer.tasks import declarations

log = logging.getLogger("cyclestream.trainer")

LOG_FILE = "log.jsonl"
LOSS_PLOT = "losses.png"
OPTIONS_FILE = "options.json"


@dataclass
class TrainResult:
    """Where a run stands when ``train`` returns: its position, its model files, the mode its step ran in
    (``Speed.name``), and this process's peak resident memory (MiB; with CUDA also the peak allocated)."""

    run_dir: Path
    position: Position
    finished: bool
    files: list[Path] = field(default_factory=list)
    speed: str = ""
    peak_rss_mb: float = 0.0
    peak_cuda_mb: float = 0.0


def build_task(options: TrainOptions, runtime: Runtime) -> Task:
    """The model system named by ``options.model.model`` (its module imported on demand)."""
    return declarations()[options.model.model].create(options, runtime)


def with_device(options: TrainOptions) -> TrainOptions:
    """``options`` with ``--device auto`` replaced by the device it stands for here."""
    device = resolve_device(options.run.device)
    if device == options.run.device:
        return options
    return replace(options, run=replace(options.run, device=device))


def with_speed(options: TrainOptions, device: torch.device) -> tuple[TrainOptions, str]:
    """``options`` with ``--precision/--compile/--channels-last auto`` replaced by what trainer/speed.py picks
    here, and the line saying how."""
    speed, why = plan_speed(options, device)
    run = replace(options.run, precision=speed.precision, compile="on" if speed.compile else "off",
                  channels_last="on" if speed.channels_last else "off")
    return replace(options, run=run), why


def loader_workers(options: TrainOptions, device: torch.device) -> int:
    """--workers, or by default: none on the CPU (the step uses every core, and a crop decodes in
    milliseconds against a step of seconds), up to 4 on CUDA (decoding ahead of the GPU's step)."""
    if options.data.workers is not None:
        return options.data.workers
    return min(4, max(1, (os.cpu_count() or 2) - 1)) if device.type == "cuda" else 0


def peak_memory() -> tuple[float, float]:
    """This process's peak resident memory and peak CUDA allocation so far, in MiB."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() and torch.cuda.is_initialized() else 0
    return round(rss, 1), round(cuda, 1)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- processes


def setup_distributed(device: str) -> tuple[Runtime, bool]:
    """This process's Runtime from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK), joining
    the process group (gloo on CPU, nccl on CUDA); returns whether it created the group."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"--device {device}: torch sees no CUDA device here; use --device cpu")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        dev = torch.device(device)
        if dev.type == "cuda":
            dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
            torch.cuda.set_device(dev)
        return Runtime(dev), False
    rank = int(os.environ["RANK"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device.startswith("cuda"):
        dev, backend = torch.device("cuda", local), "nccl"
        torch.cuda.set_device(dev)
    else:
        dev, backend = torch.device("cpu"), "gloo"
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend, rank=rank, world_size=world)
    return Runtime(dev, rank, world, local), created


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned_worker(local_rank: int, options: TrainOptions, nproc: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      LOCAL_RANK=str(local_rank), WORLD_SIZE=str(nproc))
    if options.run.threads is None:  # share the cores instead of each process taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    if local_rank == 0 and options.run.progress:  # a spawned interpreter has no logging set up
        logging.basicConfig(level=logging.INFO, format="cyclestream: %(message)s")
    with terminate_as_interrupt():  # the parent's SIGTERM (forwarded) unwinds like Ctrl-C: no partial files
        run(options)


STOP_WORKERS_AFTER = 30.0  # seconds the workers have to unwind after the parent is interrupted


def _stop_workers(processes: list[Any]) -> None:
    """Forward a stop to the spawned workers (SIGTERM: they unwind like Ctrl-C; the last checkpoint
    stays), wait for them, and kill what is still running after ``STOP_WORKERS_AFTER`` seconds."""
    for process in processes:
        if process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WORKERS_AFTER
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _failure_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else "unknown error"
    head, sep, message = last.partition(": ")
    return message if sep and "Error" in head else last


def spawn(options: TrainOptions) -> TrainResult:
    """Run ``options.run.nproc`` DDP processes on this machine and wait for them."""
    import torch.multiprocessing as mp

    nproc = options.run.nproc
    per_process_batch(int(options.optim.batch_size or 1), nproc, options.run.ddp_recipe)  # fails here, not in N workers
    if options.run.deterministic:
        set_cublas_workspace()  # inherited by the workers, before any of them starts CUDA
    context = mp.spawn(_spawned_worker, args=(options, nproc, _free_port()), nprocs=nproc, join=False)
    try:
        while not context.join(timeout=1.0):
            pass
    except KeyboardInterrupt:  # Ctrl-C, SIGTERM or SIGHUP on this process: the workers stop too, then we do
        _stop_workers(context.processes)
        raise
    except mp.ProcessRaisedException as e:
        raise TrainingError(f"a training process failed: {_failure_line(str(e))}") from None
    except mp.ProcessExitedException as e:
        raise TrainingError(f"a training process died ({e})") from None
    state = load_state(options.run.out / STATE_FILE)
    position = Position.from_dict(state["position"])
    files = sorted(options.run.out.glob("*.safetensors"))
    return TrainResult(options.run.out, position, position.epoch >= options.total_epochs, files)


def train(options: TrainOptions, on_iteration: Callable[[int], None] | None = None,
          finish_on_interrupt: bool = False) -> TrainResult:
    """Train as ``options`` say: in this process, under torchrun, or in ``nproc`` spawned processes.

    ``on_iteration(n)`` is called after iteration ``n`` (and its checkpoint, if any) in this process.
    ``finish_on_interrupt``: a Ctrl-C (SIGINT) in a one-process run ends it after the current iteration
    with a checkpoint (``finished`` False) instead of raising; a second Ctrl-C raises at once."""
    options = with_device(options).resolved()
    if options.run.nproc > 1 and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        if on_iteration is not None:
            raise TrainingError("on_iteration callbacks cannot cross into spawned processes")
        return spawn(options)
    return run(options, on_iteration, finish_on_interrupt)


# ----------------------------------------------------------------------------- one process


class RunLog:
    """``log.jsonl``: one JSON line per iteration (rank 0's losses).  Opening it for a resumed run
    drops the lines past the checkpoint, whose iterations are about to be trained again."""

    def __init__(self, path: Path, keep_through: int) -> None:
        self.path = path
        if path.exists():
            kept = []
            for line in path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError, KeyError, TypeError):
                    if int(json.loads(line)["iteration"]) <= keep_through:
                        kept.append(line + "\n")
            with atomic_output(path) as tmp:
                tmp.write_text("".join(kept))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file: TextIO = open(path, "a")

    def write(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class Checkpointer:
    """Writes the model files and ``state.pt`` (rank 0), gathering every rank's RNG and pools."""

    def __init__(self, task: Task, options: TrainOptions, runtime: Runtime) -> None:
        self.task, self.options, self.runtime = task, options, runtime
        self.run_dir = options.run.out
        self.files: list[Path] = []
        self.environment = environment(runtime.device, options.run.deterministic)

    def save(self, position: Position) -> None:
        with deferred_signals():  # a checkpoint is written whole; a signal is handled after it
            self._save(position)

    def _save(self, position: Position) -> None:
        batch_size = per_process_batch(int(self.options.optim.batch_size or 1), self.runtime.world_size,
                                       self.options.run.ddp_recipe)
        sampler = {"seed": self.options.run.seed, "epoch": position.epoch, "rank": self.runtime.rank,
                   "num_replicas": self.runtime.world_size, "samples_done": position.epoch_iter * batch_size}
        rank_state = {"rng": capture_rng(), "sampler": sampler, **self.task.rank_state()}
        if self.runtime.distributed:
            digest = parameter_digest(self.task.nets)
            gathered: list[Any] | None = [None] * self.runtime.world_size if self.runtime.is_main else None
            dist.gather_object((rank_state, digest), gathered, dst=0)
            ranks = [g[0] for g in gathered] if gathered else []
            digests = [g[1] for g in gathered] if gathered else []
        else:
            ranks, digests = [rank_state], []
        if not self.runtime.is_main:
            return
        if len(set(digests)) > 1:
            raise TrainingError(f"DDP ranks hold different weights at iteration {position.iteration}; "
                                "this is a bug, please report it")
        info = {"model": self.task.name, "epoch": position.epoch, "epoch_iter": position.epoch_iter,
                "iterations": position.iteration, "training": self.options.to_dict()}
        self.files = self.task.export(self.run_dir, info)
        save_state(self.run_dir / STATE_FILE, {
            "options": self.options.to_dict(),
            "world_size": self.runtime.world_size,
            "environment": self.environment,
            "position": position.to_dict(),
            "task": self.task.state_dict(),
            "ranks": ranks,
            "rank_digests": digests,
        })


def _restore(task: Task, options: TrainOptions, runtime: Runtime) -> tuple[Position, dict[str, Any] | None]:
    """Load ``state.pt`` into the task (when resuming); returns the position and this rank's state.
    Rank 0 warns when the resume cannot be bit for bit (another device, GPU, torch; CUDA without
    --deterministic)."""
    path = options.run.out / STATE_FILE
    if not options.run.resume:
        if path.exists():
            raise TrainingError(f"{options.run.out} already holds a training run; pass --resume to continue it "
                                "or choose another --out")
        return Position(), None
    if not path.exists():
        raise TrainingError(f"nothing to resume: {path} does not exist (drop --resume to start a new run)")
    state = load_state(path)
    changed = changed_fields(state["options"], options.to_dict())
    if changed:
        raise TrainingError(f"--resume with options that differ from the run's: {', '.join(changed)} "
                            f"(see {options.run.out / OPTIONS_FILE})")
    position = Position.from_dict(state["position"])
    if int(state["world_size"]) != runtime.world_size and position.epoch_iter:
        raise TrainingError(f"the run stopped mid-epoch with {state['world_size']} processes; resume it with "
                            f"the same number (got {runtime.world_size})")
    task.load_state_dict(state["task"])
    warning = explain_resume(state.get("environment"), environment(runtime.device, options.run.deterministic))
    if warning and runtime.is_main:
        log.warning(warning)
    ranks = state["ranks"]
    return position, (ranks[runtime.rank] if runtime.rank < len(ranks) else None)


def _write_options(options: TrainOptions) -> None:
    with atomic_output(options.run.out / OPTIONS_FILE) as tmp:
        tmp.write_text(json.dumps(options.to_dict(), indent=2, sort_keys=True) + "\n")


def _epoch_outputs(task: Task, options: TrainOptions, epoch: int) -> None:
    """The epoch's sample grid and the refreshed loss curves (rank 0)."""
    run_dir = options.run.out
    with deferred_signals():  # matplotlib and Pillow write through C code; a signal is handled after them
        _write_epoch_outputs(task, options, epoch, run_dir)


def _write_epoch_outputs(task: Task, options: TrainOptions, epoch: int, run_dir: Path) -> None:
    if options.run.samples:
        count = min(options.run.samples, len(task.dataset))  # type: ignore[arg-type]
        save_rgb(task.sample_grid(count), run_dir / "samples" / f"epoch_{epoch:03d}.png")
    write_loss_curves(run_dir / LOG_FILE, task.losses, run_dir / LOSS_PLOT)  # type: ignore[attr-defined]


class StopRequest:
    """Set by the first Ctrl-C while :meth:`catching`: the loop checkpoints after the iteration and stops."""

    def __init__(self) -> None:
        self.requested = False

    @contextlib.contextmanager
    def catching(self, enabled: bool) -> Iterator[StopRequest]:
        """Catch SIGINT while inside (main thread only); the first sets ``requested``, a second raises."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handler(signum: int, frame: Any) -> None:
            signal.signal(signal.SIGINT, previous)
            self.requested = True
            log.info("stopping after this iteration (Ctrl-C again to interrupt at once)")

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


def run(options: TrainOptions, on_iteration: Callable[[int], None] | None = None,
        finish_on_interrupt: bool = False) -> TrainResult:
    """Train in this process (one rank of a DDP group when WORLD_SIZE > 1)."""
    options = with_device(options).resolved()
    with deterministic_mode(options.run.deterministic):  # before CUDA starts: it sets cuBLAS's workspace
        return _run(options, on_iteration, finish_on_interrupt)


def _run(options: TrainOptions, on_iteration: Callable[[int], None] | None, finish_on_interrupt: bool) -> TrainResult:
    runtime, created_group = setup_distributed(options.run.device)
    runlog: RunLog | None = None
    try:
        per_process_batch(int(options.optim.batch_size or 1), runtime.world_size, options.run.ddp_recipe)
        if options.run.threads:
            torch.set_num_threads(options.run.threads)
        options, why = with_speed(options, runtime.device)
        if runtime.is_main:
            log.info("training on %s%s", describe_device(runtime.device, runtime.world_size),
                     ", deterministic algorithms only" if options.run.deterministic else "")
        seed_everything(options.run.seed)  # the same initial weights on every rank
        task = build_task(options, runtime)
        if runtime.is_main:
            log.info("step: %s (%s)", task.speed.name, why)
            if warning := bf16_warning(task.speed, runtime.device):
                log.warning("%s", warning)
        if options.run.deterministic and runtime.device.type == "cuda":
            for net in task.nets.values():
                use_deterministic_padding(net)
        position, rank_state = _restore(task, options, runtime)
        task.wrap()
        # Each rank its own stream (dropout, noise), then exactly the stream of the checkpoint if resuming.
        seed_everything(options.run.seed + 1_000_003 * (runtime.rank + 1))
        if rank_state is not None:
            restore_rng(rank_state["rng"])
            task.load_rank_state(rank_state)
        if runtime.is_main:
            options.run.out.mkdir(parents=True, exist_ok=True)
            _write_options(options)
            runlog = RunLog(options.run.out / LOG_FILE, position.iteration)
            if options.run.resume:
                log.info("resuming %s at epoch %d, batch %d (iteration %d)", options.run.out,
                         position.epoch + 1, position.epoch_iter, position.iteration)
        checkpointer = Checkpointer(task, options, runtime)
        with StopRequest().catching(finish_on_interrupt and not runtime.distributed) as stop:
            finished = _iterate(task, options, runtime, position, checkpointer, runlog, on_iteration, stop)
        files = checkpointer.files or sorted(options.run.out.glob("*.safetensors"))
        rss, cuda = peak_memory()
        return TrainResult(options.run.out, position, finished, files, task.speed.name, rss, cuda)
    finally:
        if runlog is not None:
            runlog.close()
        if created_group and dist.is_initialized():
            dist.destroy_process_group()


class PendingLosses:
    """The iterations since the losses were last read back: their log entries wait here with the losses as
    device tensors, and :meth:`flush` reads them all in one transfer (the only time the step waits for the
    device), writes one log line per iteration and updates the progress bar.  ``seconds`` of each line is
    the wall time of its chunk divided by its iterations."""

    def __init__(self, runlog: RunLog | None, bar: Any, show: bool) -> None:
        self.runlog, self.bar, self.show = runlog, bar, show
        self.entries: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self.since = time.perf_counter()

    def add(self, entry: dict[str, Any], losses: dict[str, Any]) -> None:
        self.entries.append((entry, losses))

    def flush(self) -> None:
        if not self.entries:
            return
        tensors = [v.detach().float().reshape(()) for _, losses in self.entries for v in losses.values()
                   if isinstance(v, torch.Tensor)]
        read = iter(torch.stack(tensors).cpu().tolist() if tensors else [])
        seconds = (time.perf_counter() - self.since) / len(self.entries)
        last: dict[str, float] = {}
        for entry, losses in self.entries:  # the order in which the tensors were stacked
            last = {k: next(read) if isinstance(v, torch.Tensor) else float(v) for k, v in losses.items()}
            if self.runlog is not None:
                self.runlog.write({**entry, **last, "seconds": seconds})
        if self.show:
            self.bar.set_postfix_str(" ".join(f"{k}={v:.3f}" for k, v in last.items()), refresh=False)
        self.bar.update(len(self.entries))
        self.entries.clear()
        self.since = time.perf_counter()


def _iterate(task: Task, options: TrainOptions, runtime: Runtime, position: Position, checkpointer: Checkpointer,
             runlog: RunLog | None, on_iteration: Callable[[int], None] | None,
             stop: StopRequest | None = None) -> bool:
    """The epochs; advances ``position`` in place.  True when every epoch is done."""
    run, total = options.run, options.total_epochs
    plan = plan_batches(len(task.dataset), int(options.optim.batch_size or 1),  # type: ignore[arg-type]
                        runtime.world_size, run.ddp_recipe)
    batch_size = plan.per_process
    if runtime.is_main:
        log.info("%s", plan.describe())
    sampler = ResumableSampler(task.dataset, runtime.world_size, runtime.rank, run.seed)
    show = runtime.is_main and run.progress
    first = position.iteration + 1  # read back alone: it holds the compile and warm-up
    workers = loader_workers(options, task.device)
    while position.epoch < total:
        epoch = position.epoch
        sampler.set_epoch(epoch)
        sampler.set_start(position.epoch_iter * batch_size)
        per_epoch = math.ceil(sampler.num_samples / batch_size)
        loader = DataLoader(task.dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            generator=torch.Generator().manual_seed(run.seed + epoch),
                            pin_memory=task.device.type == "cuda")
        bar = tqdm(total=per_epoch, initial=position.epoch_iter, desc=f"epoch {epoch + 1}/{total}", unit="it",
                   disable=not show, dynamic_ncols=True, leave=False)
        pending = PendingLosses(runlog, bar, show)
        epoch_started, epoch_done = time.perf_counter(), 0
        try:
            for batch in loader:
                losses = task.step(batch)
                position.epoch_iter += 1
                position.iteration += 1
                epoch_done += 1
                pending.add({"iteration": position.iteration, "epoch": epoch + 1, "epoch_iter": position.epoch_iter,
                             "lr": task.lr}, losses)
                last = (run.max_iters and position.iteration >= run.max_iters) or (stop is not None and stop.requested)
                save = last or (run.save_every_iters and position.iteration % run.save_every_iters == 0
                                and position.epoch_iter < per_epoch)
                if save or position.iteration == first or position.iteration % run.log_every == 0:
                    pending.flush()
                if save:
                    checkpointer.save(position)
                if on_iteration is not None:
                    on_iteration(position.iteration)
                if last:
                    return False
            pending.flush()
        finally:
            bar.close()
        task.end_epoch()
        position.epoch, position.epoch_iter = epoch + 1, 0
        checkpointer.save(position)
        if runtime.is_main:
            _epoch_outputs(task, options, epoch + 1)
            rss, cuda = peak_memory()
            per_it = (time.perf_counter() - epoch_started) / max(1, epoch_done)
            log.info("epoch %d/%d done (iteration %d, lr %.2e, %.2f s/iteration, peak RSS %.0f MiB%s)", epoch + 1,
                     total, position.iteration, task.lr, per_it, rss, f", peak CUDA {cuda:.0f} MiB" if cuda else "")
    return True
