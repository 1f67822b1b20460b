"""The user's files are safe: an output never overwrites its input, SIGTERM and SIGHUP clean up like
Ctrl-C, the leftovers of killed processes are removed, and OS failures are one line naming the user's path."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.engine.atomic import atomic_output, partial_path, pid_alive
from cyclestream.engine.errors import OutputError
from cyclestream.engine.media.synthetic import write_clip
from cyclestream.engine.signals import Terminated, exit_code, terminate_as_interrupt
from cyclestream.trainer.state import save_state
from tests.cli.test_bad_input import only_file_is, run_cli
from tests.engine.processes import translate_until_writing


def listing(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


# ----------------------------------------------------------------------------- the output is the input


def _video(tmp: Path) -> tuple[Path, Path]:
    write_clip(tmp / "v.mp4", frames=3)
    return tmp / "v.mp4", tmp / "v.mp4"


def _symlink(tmp: Path) -> tuple[Path, Path]:
    write_clip(tmp / "v.mp4", frames=3)
    (tmp / "link.mp4").symlink_to("v.mp4")
    return tmp / "v.mp4", tmp / "link.mp4"


def _hard_link(tmp: Path) -> tuple[Path, Path]:
    write_clip(tmp / "v.mp4", frames=3)
    os.link(tmp / "v.mp4", tmp / "hard.mp4")
    return tmp / "v.mp4", tmp / "hard.mp4"


def _image(tmp: Path) -> tuple[Path, Path]:
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp / "a.png")
    return tmp / "a.png", tmp / "a.png"


def _image_into_its_folder(tmp: Path) -> tuple[Path, Path]:
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp / "a.png")
    return tmp / "a.png", tmp  # an output folder stands for FOLDER/a.png


@pytest.mark.parametrize("case", [_video, _symlink, _hard_link, _image, _image_into_its_folder],
                         ids=["same-path", "symlink", "hard-link", "image", "image-into-its-folder"])
def test_output_that_is_the_input_is_refused(
    case: Callable[[Path], tuple[Path, Path]], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (work := tmp_path / "work").mkdir()
    src, dst = case(work)
    before = listing(work)
    code, err = run_cli(["translate", str(src), str(dst), "--model", str(tiny_model)], capsys)
    assert code == 2
    assert err == f"cyclestream: error: refusing to write {dst}: it is the input {src} (choose another output path)"
    assert listing(work) == before  # the source untouched, nothing added


# ----------------------------------------------------------------------------- SIGTERM and SIGHUP


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips") / "long.mkv"
    write_clip(path, width=160, height=120, frames=2000)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_clean_up_like_ctrl_c(
    signum: int, code: int, long_clip: Path, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.mp4"
    proc = translate_until_writing(long_clip, out, tiny_model)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code  # 128 + the signal's number, as a shell reports a process it killed
    name = signal.Signals(signum).name
    assert err.strip().splitlines()[-1] == f"cyclestream: interrupted by {name}; no output was left behind"
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # neither out.mp4 nor its temporary file


@pytest.mark.slow
def test_sigterm_stops_training_like_ctrl_c(tmp_path: Path) -> None:
    from tests.trainer.helpers import sigterm_and_wait, start_training_until_checkpoint

    proc, out = start_training_until_checkpoint(tmp_path, 6)
    time.sleep(0.5)
    err = sigterm_and_wait(proc, timeout=60)
    assert proc.returncode == 143, err[-3000:]
    assert err.strip().splitlines()[-1] == (
        f"cyclestream: interrupted by SIGTERM; continue from the last checkpoint with --resume --out {out}"
    )
    assert not [p.name for p in out.rglob("*") if ".partial-" in p.name]


def _swallow(_signum: int, _frame: object) -> None:
    pass


@pytest.fixture
def signals_swallowed() -> Iterator[None]:
    """If terminate_as_interrupt installed nothing, these handlers swallow the signals (not kill pytest)."""
    originals = {sig: signal.signal(sig, _swallow) for sig in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for sig, old in originals.items():
        signal.signal(sig, old)


def test_termination_raises_in_the_main_thread_once_and_is_undone(signals_swallowed: None) -> None:
    caught: Terminated | None = None
    with terminate_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        except Terminated as e:
            caught = e
        try:
            os.kill(os.getpid(), signal.SIGHUP)  # a second signal while the job cleans up is ignored
            time.sleep(0.1)
        except Terminated:
            pytest.fail("a second signal interrupted the clean-up")
    assert all(signal.getsignal(sig) is _swallow for sig in (signal.SIGTERM, signal.SIGHUP))  # previous ones back
    assert isinstance(caught, KeyboardInterrupt) and exit_code(caught) == 143
    assert exit_code(KeyboardInterrupt()) == 130


# ----------------------------------------------------------------------------- leftovers of killed processes


@pytest.fixture
def pids() -> Iterator[tuple[int, int]]:
    """(a PID whose process has exited and been reaped, the PID of a running process)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        yield dead.pid, live.pid
    finally:
        live.kill()
        live.wait()


def test_translate_removes_only_dead_leftovers_of_its_own_output(
    pids: tuple[int, int],
    make_clip: Callable[..., Path],
    tiny_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead, live = pids
    src = make_clip("in.mp4", frames=3)
    (out := tmp_path / "out").mkdir()  # a folder nothing has been written to yet in this process
    target = out / "o.mp4"
    removed = partial_path(target, dead)
    kept = [
        partial_path(target, live),  # a job still writing o.mp4
        partial_path(out / "other.mp4", dead),  # another target's
        partial_path(out / "x.o.mp4", dead),  # another target's, whose name ends like ours
        out / f".o.partial-{dead}.mp4.bak",  # not our name
        partial_path(out / "o.mkv", dead),  # another extension's
        out / f"o.partial-{dead}.mp4",  # not hidden: not our name
    ]
    for path in [removed, *kept]:
        path.write_bytes(b"half a video")

    with caplog.at_level(logging.INFO, logger="cyclestream"):
        code, err = run_cli(["translate", str(src), str(target), "--model", str(tiny_model), "--no-preview"], capsys)

    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in [target, *kept])
    assert f"removed {removed}, left by a process that no longer runs" in caplog.text


def test_a_process_we_may_not_signal_counts_as_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    assert pid_alive(1)  # init: as a user, os.kill(1, 0) raises PermissionError

    def not_permitted(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "kill", not_permitted)  # what a user gets for another user's process, even as root here
    assert pid_alive(12345)


def test_training_state_removes_dead_leftovers(pids: tuple[int, int], tmp_path: Path) -> None:
    live = pids[1]
    (run := tmp_path / "run").mkdir()
    for pid in pids:
        partial_path(run / "state.pt", pid).write_bytes(b"0.4 GB of a killed run")
    save_state(run / "state.pt", {"position": {"epoch": 0, "epoch_iter": 0, "iteration": 0}})
    assert sorted(p.name for p in run.iterdir()) == sorted([f".state.partial-{live}.pt", "state.pt"])


# ----------------------------------------------------------------------------- operating-system failures


def test_output_under_a_file(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = tmp_path / "notes.txt" / "o.mp4"
    code, err = run_cli(["translate", str(src), str(out), "--model", str(tiny_model)], capsys)
    assert code == 2
    assert err == f"cyclestream: error: cannot write {out}: {tmp_path / 'notes.txt'} is a file, not a folder"


def test_video_output_that_is_a_folder(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    (out := tmp_path / "out").mkdir()
    code, err = run_cli(["translate", str(src), str(out), "--model", str(tiny_model)], capsys)
    assert code == 2 and err.splitlines()[-1] == f"cyclestream: error: cannot write {out}: it is a folder"
    assert list(out.iterdir()) == [] and only_file_is(tmp_path, "in.mp4", "out")


def test_a_device_or_pipe_is_not_replaced(tmp_path: Path) -> None:
    os.mkfifo(pipe := tmp_path / "pipe.json")
    with pytest.raises(OutputError, match="it is not a regular file"), atomic_output(pipe) as tmp:
        tmp.write_text("{}")
    assert pipe.is_fifo() and only_file_is(tmp_path, "pipe.json")


def _disk_full(target: Path) -> None:
    """Make this process's temporary file for ``target`` a link to /dev/full: every write fails with ENOSPC."""
    partial_path(target).symlink_to("/dev/full")


def test_disk_full_while_translating(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=30)
    out = tmp_path / "o.mp4"
    _disk_full(out)
    code, err = run_cli(["translate", str(src), str(out), "--model", str(tiny_model)], capsys)
    assert code == 2
    assert err.splitlines()[-1] == f"cyclestream: error: cannot write {out}: No space left on device"
    assert "--codec" not in err  # not the codec's fault
    assert only_file_is(tmp_path, "in.mp4")  # neither the output nor the temporary link


def test_disk_full_while_saving_training_state(tmp_path: Path) -> None:
    target = tmp_path / "state.pt"
    _disk_full(target)
    with pytest.raises(OutputError, match=f"^cannot write {target}: No space left on device$"):
        save_state(target, {"weights": torch.zeros(100_000)})
    assert list(tmp_path.iterdir()) == []


def test_errors_that_are_not_about_the_output_pass_through(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), atomic_output(tmp_path / "o.txt"):
        open(tmp_path / "missing-input.txt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_permission_denied(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    (locked := tmp_path / "locked").mkdir(mode=0o500)
    out = locked / "o.mp4"
    try:
        code, err = run_cli(["translate", str(src), str(out), "--model", str(tiny_model)], capsys)
    finally:
        locked.chmod(0o700)
    assert code == 2 and err.splitlines()[-1] == f"cyclestream: error: cannot write {out}: Permission denied"
    assert list(locked.iterdir()) == []


def test_a_swallowed_termination_is_raised_again(monkeypatch: pytest.MonkeyPatch, signals_swallowed: None) -> None:
    """A Terminated lost inside code that eats KeyboardInterrupt (a finalizer, a callback) comes back."""
    import cyclestream.engine.signals as signals

    monkeypatch.setattr(signals, "RERAISE_AFTER", 0.3)
    again: Terminated | None = None
    with terminate_as_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            pass  # swallowed, as a finalizer would
        try:
            time.sleep(5)  # the watchdog raises it again within RERAISE_AFTER
        except Terminated as e:
            again = e
    assert again is not None and again.signum == signal.SIGTERM


def test_a_signal_during_a_deferred_write_is_handled_when_the_write_is_complete() -> None:
    from cyclestream.engine.signals import Terminated, deferred_signals, terminate_as_interrupt

    written: list[str] = []
    with pytest.raises(Terminated), terminate_as_interrupt():
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)  # a handler would have run by now
            written.append("checkpoint")  # the write goes on to its end
        written.append("after")  # never: the held SIGTERM is raised as the block ends
    assert written == ["checkpoint"]
    with pytest.raises(KeyboardInterrupt):
        with deferred_signals():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            written.append("again")
    assert written == ["checkpoint", "again"]
