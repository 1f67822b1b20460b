"""Running batch units on Ray: one actor per worker (model loaded once), retries when a worker dies.

Ray is optional and imported only here.  ``connect`` starts a local instance (``local``) or joins a
cluster (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``); a process already connected keeps its connection.
A local instance listens on the loopback address only (Ray runs code for whoever reaches its ports), with
no dashboard; one that would not is refused.
``RayPool.run`` keeps one unit in flight per ready worker, longest units first.  A worker process that
dies (killed, out of memory, a crashing decoder) is restarted by Ray and its unit retried there
(``max_restarts`` / ``max_task_retries``); the unit's output is atomic, so a retry never finds a
half-written file under the output's name (the dead writer's hidden partial file is removed by the
next write).  A worker that has used up its restarts is replaced.  Ctrl-C kills the workers and removes
the partial files of the units they were writing.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from cyclestream.engine.atomic import pid_alive
from cyclestream.engine.errors import CycleStreamError, first_line
from cyclestream.engine.jobs.batch_worker import BatchWorker, Unit, UnitResult

log = logging.getLogger("cyclestream")

_HOST_PORT = re.compile(r"(?:ray://)?(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})")
LOCAL_OBJECT_STORE = 128 * 1024 * 1024  # units and results are small; the pixels never go through Ray
# Ray gives a node it starts the address this machine has on the network, and its servers (GCS, raylet,
# workers, the driver) then listen on every interface; asking for 127.0.0.1 (``_node_ip_address``) is turned
# back into that address.  A machine Ray is told is no cluster ("0": what Windows and macOS get by default)
# takes the loopback address instead, and every server binds to it.  Ray reads the variable when imported
# (``ray_constants``); the processes it starts read it from the environment.
SINGLE_MACHINE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise CycleStreamError("--ray needs Ray, which is not installed: pip install 'cyclestream[ray]' "
                               "(or pip install 'ray>=2.9')") from None
    return ray


def check_address(address: str) -> None:
    """``local``, ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``; a HOST:PORT must accept a connection."""
    if address in ("local", "auto"):
        return
    match = _HOST_PORT.fullmatch(address)
    if match is None:
        raise CycleStreamError(f"--ray {address!r}: expected local, auto, HOST:PORT or ray://HOST:PORT")
    host, port = match["host"].strip("[]"), int(match["port"])
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as e:
        raise CycleStreamError(f"--ray {address}: cannot reach {host}:{port} ({e.strerror or e})") from None


def preflight(address: str) -> None:
    """Before any work: Ray is installed and ``address`` is well formed and reachable."""
    ray = import_ray()
    if not ray.is_initialized():
        check_address(address)


@contextlib.contextmanager
def connect(address: str, cpus: int) -> Iterator[Any]:
    """Ray, initialised for ``address`` (a local instance gets ``cpus`` CPUs) and shut down afterwards;
    a process that is already connected (a notebook, the tests) keeps its connection."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    check_address(address)
    kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    local = address == "local"
    if local:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        kwargs.update(address="local", num_cpus=cpus, include_dashboard=False,
                      object_store_memory=LOCAL_OBJECT_STORE)
    else:
        kwargs.update(address=address)
    try:
        with _single_machine() if local else contextlib.nullcontext():
            ray.init(**kwargs)
    except Exception as e:  # ConnectionError, ValueError, RuntimeError...: Ray's own words, first line
        raise CycleStreamError(f"cannot start or join Ray at {address}: {first_line(e)}") from None
    try:
        if local:
            _check_loopback(ray)
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _single_machine() -> Iterator[None]:
    """While a local instance starts: Ray is told this machine is no cluster (see ``SINGLE_MACHINE_ENV``)."""
    constants: Any
    try:
        from ray._private import ray_constants as constants
    except ImportError:  # another layout: _check_loopback decides
        constants = None
    env, flag = os.environ.get(SINGLE_MACHINE_ENV), getattr(constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[SINGLE_MACHINE_ENV] = "0"
    if flag is not None:
        constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if env is None:
            os.environ.pop(SINGLE_MACHINE_ENV, None)
        else:
            os.environ[SINGLE_MACHINE_ENV] = env
        if flag is not None:
            constants.ENABLE_RAY_CLUSTER = flag


def _check_loopback(ray: Any) -> None:
    """A local instance on another address than loopback listens on every interface: stop it, refuse."""
    ip = ray.util.get_node_ip_address()
    try:
        loopback = ipaddress.ip_address(ip).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise CycleStreamError(f"--ray local: Ray {ray.__version__} started on {ip}, where it listens on every "
                               f"interface; stopped (with {SINGLE_MACHINE_ENV}=0 exported, start one yourself "
                               "with ray start --head and use --ray auto)")


def default_workers(ray: Any, cpus: float, gpus: float, workers: int | None) -> int:
    """``workers``, or as many as the cluster's GPUs (or CPUs, for CPU workers) hold at once; an error
    when the cluster cannot hold even one."""
    total = ray.cluster_resources()
    have_cpus, have_gpus = float(total.get("CPU", 0)), float(total.get("GPU", 0))
    if have_gpus < gpus:
        raise CycleStreamError(f"--gpus-per-worker {gpus:g}, but the Ray cluster has {have_gpus:g} GPUs")
    if have_cpus < cpus:
        raise CycleStreamError(f"--cpus-per-worker {cpus:g}, but the Ray cluster has {have_cpus:g} CPUs")
    if workers:
        return workers
    return max(1, int(have_gpus // gpus) if gpus > 0 else int(have_cpus // cpus))


def _actor_class(ray: Any) -> Any:
    class RayBatchWorker(BatchWorker):
        def __init__(self, *args: Any, threads: int = 1, **kwargs: Any) -> None:
            import torch

            torch.set_num_threads(threads)
            BatchWorker.__init__(self, *args, **kwargs)
            self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)

        @ray.method(concurrency_group="poll")
        def ready(self) -> str:
            return BatchWorker.ready(self)

        @ray.method(concurrency_group="poll")
        def progress(self) -> int:
            return BatchWorker.progress(self)

    # "poll" runs beside the work (one unit at a time in the default group), so progress can be asked.
    return ray.remote(concurrency_groups={"poll": 1})(RayBatchWorker)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if "Error" in line and not line.startswith(("ray.", "File "))]
    return (useful or lines or [type(error).__name__])[-1][:300]


class RayPool:
    """``workers`` actors, each with ``cpus`` CPUs and ``gpus`` GPUs, restarted up to ``retries`` times."""

    def __init__(self, ray: Any, worker_args: tuple[Any, ...], workers: int, cpus: float, gpus: float,
                 retries: int) -> None:
        self.ray, self.worker_args, self.retries = ray, worker_args, retries
        self.actor_class = _actor_class(ray).options(
            num_cpus=cpus, num_gpus=gpus, max_restarts=retries, max_task_retries=retries
        )
        self.threads = max(1, int(cpus))
        self.actors: list[Any] = []
        self.names: dict[Any, str] = {}  # actor → "host:pid" once ready (a restart gets a new pid)
        self.starting: dict[Any, Any] = {}  # ready ref → actor
        self.ready_at: float | None = None  # time.perf_counter() when the first worker was ready
        self.replacements = workers * (retries + 1)
        for _ in range(workers):
            self._start()

    def _start(self) -> None:
        actor = self.actor_class.remote(*self.worker_args, threads=self.threads)
        self.actors.append(actor)
        self.starting[actor.ready.remote()] = actor

    def run(
        self,
        units: Sequence[Unit],
        on_result: Callable[[Unit, UnitResult], None],
        on_progress: Callable[[int], None],
    ) -> None:
        """Every unit, longest first; ``on_result`` for each (in the calling thread), ``on_progress`` with
        the frames read so far by the units in flight, about twice a second."""
        ray = self.ray
        queue = deque(sorted(units, key=lambda u: -u.frames))
        idle: list[Any] = []
        running: dict[Any, tuple[Any, Unit]] = {}  # run ref → (actor, unit)
        start_errors: list[str] = []
        polled, began, warned = 0.0, time.monotonic(), False
        try:
            while queue or running:
                while idle and queue:
                    actor, unit = idle.pop(), queue.popleft()
                    running[actor.run.remote(unit)] = (actor, unit)
                if not running and not self.starting:
                    reason = start_errors[-1] if start_errors else "every worker died"
                    raise CycleStreamError(f"no batch worker could start: {reason}")
                if self.ready_at is None and time.monotonic() - began > 60 and not warned:
                    warned = True
                    log.warning("no batch worker has started after 60 s: is the Ray cluster busy, or short of "
                                "the CPUs/GPUs a worker asks for (--cpus-per-worker, --gpus-per-worker)?")
                done, _ = ray.wait([*self.starting, *running], num_returns=1, timeout=0.25)
                for ref in done:
                    if ref in self.starting:
                        actor = self.starting.pop(ref)
                        try:
                            self.names[actor] = ray.get(ref)
                            idle.append(actor)
                            self.ready_at = self.ready_at or time.perf_counter()
                        except Exception as e:  # the model could not load there, or the worker died starting
                            start_errors.append(_first_line(e))
                            log.warning("a batch worker could not start: %s", start_errors[-1])
                        continue
                    actor, unit = running.pop(ref)
                    try:
                        result = ray.get(ref)
                        if result.worker:
                            self.names[actor] = result.worker
                        idle.append(actor)
                    except Exception as e:  # the worker died more often than it may be restarted
                        result = UnitResult(unit.id, False, error=f"its worker died {self.retries + 1} times "
                                            f"({_first_line(e)})")
                        self._replace(actor)
                        remove_partials(unit.output, self._our_pids())
                    on_result(unit, result)
                if time.monotonic() - polled > 0.5:
                    polled = time.monotonic()
                    on_progress(self._progress([actor for actor, _ in running.values()]))
        except BaseException:
            self._abort([unit for _, unit in running.values()])
            raise

    def _replace(self, actor: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.kill(actor, no_restart=True)
        if self.replacements > 0:
            self.replacements -= 1
            self._start()

    def _progress(self, busy: list[Any]) -> int:
        refs = [actor.progress.remote() for actor in busy]
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0.2) if refs else ([], [])
        total = 0
        for ref in ready:
            with contextlib.suppress(Exception):
                total += int(self.ray.get(ref))
        return total

    def _our_pids(self) -> set[int]:
        return {int(name.rsplit(":", 1)[1]) for name in self.names.values()}

    def _abort(self, units: list[Unit]) -> None:
        """Kill the workers; remove the partial files of the units they were writing (once the local
        workers are gone)."""
        self.close()
        here = socket.gethostname()
        local = {int(n.rsplit(":", 1)[1]) for n in self.names.values() if n.rsplit(":", 1)[0] == here}
        deadline = time.monotonic() + 5
        while any(pid_alive(p) for p in local) and time.monotonic() < deadline:
            time.sleep(0.05)
        for unit in units:
            remove_partials(unit.output, self._our_pids())

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):
                self.ray.kill(actor, no_restart=True)
        self.actors.clear()


def remove_partials(target: Path, ours: set[int]) -> None:
    """Remove ``target``'s hidden partial files (``.STEM.partial-PID.EXT``) written by one of ``ours`` or by
    a process that no longer runs here."""
    prefix, suffix = f".{target.stem}.partial-", target.suffix
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
                continue
            pid = entry.name[len(prefix) : len(entry.name) - len(suffix)]
            if pid.isdigit() and (int(pid) in ours or not pid_alive(int(pid))):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
