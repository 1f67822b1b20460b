"""SIGTERM and SIGHUP as Ctrl-C: the job unwinds the same way (temporary files removed, no output left)."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

TERMINATION_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread for SIGTERM or SIGHUP; every ``except KeyboardInterrupt`` handles it too."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """The shell's convention, 128 + signal number: 130 for Ctrl-C (SIGINT), 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + getattr(interrupt, "signum", signal.SIGINT)


def interrupted(interrupt: KeyboardInterrupt) -> str:
    """What to tell the user: "interrupted" (Ctrl-C), "interrupted by SIGTERM", "interrupted by SIGHUP"."""
    signum = getattr(interrupt, "signum", signal.SIGINT)
    return "interrupted" if signum == signal.SIGINT else f"interrupted by {signal.Signals(signum).name}"


# If the job has not unwound this long after the signal, the Terminated was lost (raised inside a
# finalizer or callback that swallows exceptions) or unwinding is stuck: raise it once more, and after
# twice as long end the process (its temporary files are removed by the next run, see atomic.py).
RERAISE_AFTER = 10.0


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread (once: a repeat
    while the job cleans up is ignored).  A watchdog makes sure the process ends: the signal is raised
    again ``RERAISE_AFTER`` seconds later if the job is still inside, and the process exits with
    128 + signal after twice that.  Elsewhere than the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised: list[int] = []  # the signal, once raised
    main = threading.main_thread().ident or 0
    done = threading.Event()
    reraise = threading.Event()

    def watchdog(signum: int) -> None:
        if done.wait(RERAISE_AFTER):
            return
        reraise.set()
        signal.pthread_kill(main, signum)  # a real signal: it also wakes a blocking call
        if done.wait(RERAISE_AFTER):
            return
        sys.stderr.write(f"cyclestream: {signal.Signals(signum).name}: the job did not stop; exiting\n")
        sys.stderr.flush()
        os._exit(128 + signum)

    def handler(signum: int, _frame: FrameType | None) -> None:
        if not raised:
            raised.append(signum)
            threading.Thread(target=watchdog, args=(signum,), name="cyclestream-terminate", daemon=True).start()
            raise Terminated(signum)
        if reraise.is_set():
            reraise.clear()
            raise Terminated(signum)

    previous = {sig: signal.signal(sig, handler) for sig in TERMINATION_SIGNALS}
    try:
        yield
    finally:
        done.set()
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP while a short write runs, and deliver them when it ends.

    For checkpoints: ``torch.save`` writes through a C++ writer that calls back into Python, and an
    exception raised by a signal handler inside such a callback does not unwind like one raised in
    Python — the writer's destructor then writes to the closed file and the process aborts (seen:
    "terminate called after throwing an instance of 'pybind11::error_already_set'"), or the error
    comes out as another exception.  Held, the signal arrives right after the file is complete, where
    the job's own handler (Ctrl-C, :func:`terminate_as_interrupt`) acts on it.  Elsewhere than the
    main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, *TERMINATION_SIGNALS)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
        for sig in dict.fromkeys(held):  # each signal once, in the order they came
            signal.raise_signal(sig)


def _interrupt(signum: int) -> KeyboardInterrupt:
    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated(signum)


@contextlib.contextmanager
def signals_not_swallowed() -> Iterator[None]:
    """Around a call into a library that may swallow the exception a signal handler raises (PyAV turns it
    into an error of its own: an open interrupted by SIGTERM fails with "Interrupted system call"): a
    SIGINT, SIGTERM or SIGHUP that arrives inside is handled as before and noted, and on the way out it is
    raised again — :class:`Terminated`, or KeyboardInterrupt for Ctrl-C — whatever the call raised or
    returned.  Signals without a Python handler (the default ends the process) are left alone.  Elsewhere
    than the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []
    previous = {sig: old for sig in (signal.SIGINT, *TERMINATION_SIGNALS) if callable(old := signal.getsignal(sig))}

    def note(signum: int, frame: FrameType | None) -> None:
        noted.append(signum)
        previous[signum](signum, frame)

    for sig in previous:
        signal.signal(sig, note)
    try:
        yield
    except KeyboardInterrupt:
        raise  # it came through
    except BaseException:
        if noted:
            raise _interrupt(noted[0]) from None
        raise
    else:
        if noted:
            raise _interrupt(noted[0])
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
