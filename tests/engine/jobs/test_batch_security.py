"""`cyclestream batch` against hostile inputs, each made the way an attacker would make it: a manifest
written by hand with ``../`` lines, links planted in the output folder, FIFOs, sockets and devices among
the inputs, a looping link, a folder where a record goes, an output replaced by other bytes of the same
size, SIGTERM while the job plans, and what a local Ray instance listens on."""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cyclestream.cli import main
from cyclestream.engine.errors import CycleStreamError, MediaError, OutputError
from cyclestream.engine.jobs.batch import BatchFailed, BatchOptions, run_batch
from cyclestream.engine.jobs.batch_plan import find_items, record_path
from cyclestream.engine.jobs.batch_ray import _check_loopback
from cyclestream.engine.jobs.batch_state import BatchState
from cyclestream.engine.jobs.batch_worker import BatchWorker
from cyclestream.engine.jobs.translate import TranslateOptions
from cyclestream.engine.media.encode_options import EncodeOptions
from tests.engine.batch_faults import REPO
from tests.engine.jobs.test_batch import _picture, _touch
from tests.engine.jobs.test_batch_clips import write_camera_clip
from tests.engine.media_checks import video_times

QUIET = BatchOptions(translate=TranslateOptions(encode=EncodeOptions(preset="ultrafast"), progress=False),
                     progress=False)


def _clip(path: Path) -> Path:
    write_camera_clip(path, seconds=0.5, audio=False)
    return path


def _batch(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`cyclestream -q batch ARGS` in its own process (a hang fails the test instead of stopping the run)."""
    return subprocess.run([sys.executable, "-m", "cyclestream", "-q", "batch", *args], capture_output=True,
                          text=True, timeout=timeout)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "error:" in line]


# ----------------------------------------------------------------------------- outputs stay inside --out


def test_a_manifest_line_that_climbs_out_is_refused_before_any_work(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib, job = tmp_path / "lib", tmp_path / "job"
    _clip(lib / "a.mp4")
    _clip(tmp_path / "elsewhere" / "victim.mp4")
    victim = _touch(job / "elsewhere" / "victim.mp4", b"precious")  # where OUT/../elsewhere/victim.mp4 lands
    (lib / "list.txt").write_text("a.mp4\n../elsewhere/victim.mp4\n")  # written by hand, as an attacker would
    out = job / "out"
    code = main(["-q", "batch", str(lib / "list.txt"), "--out", str(out), "--model", str(tiny_model)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "list.txt:2" in err and "leads outside" in err
    assert victim.read_bytes() == b"precious"
    assert not out.exists() and not (job / ".cyclestream").exists()  # nothing done: no output, no record


def test_names_that_would_escape_are_refused_and_outside_inputs_get_their_own_name(tmp_path: Path) -> None:
    lib, out = tmp_path / "a" / "lib", tmp_path / "out"
    _touch(lib / "a.mp4")
    (lib / "sub").mkdir()
    _touch(tmp_path / "x.mp4")
    outside = _touch(tmp_path / "far" / "far.mp4")
    manifest = lib / "list.txt"
    lines = {"../../x.mp4": "leads outside", "sub/../../../x.mp4": "leads outside",
             ".cyclestream/done/a.mp4.json": "the batch's own records"}
    _touch(lib / ".cyclestream" / "done" / "a.mp4.json")
    for line, message in lines.items():
        manifest.write_text(f"a.mp4\n{line}\n")
        with pytest.raises(OutputError, match=message):
            find_items([manifest], out)
    manifest.write_text(f"a.mp4\n{outside}\nsub/../a.mp4\n")  # absolute: its own name; sub/..: the same file
    assert sorted(i.rel for i in find_items([manifest], out)) == ["a.mp4", "far.mp4"]
    os.symlink(outside, lib / "link.mp4")  # a link in an input folder to a file elsewhere: read there, written here
    assert {i.rel: i.output for i in find_items([lib], out)}["link.mp4"] == out / "link.mp4"
    with pytest.raises(OutputError, match="expected a file suffix"):
        find_items([lib / "a.mp4"], out, container="../../x")


def test_links_planted_in_the_output_folder_are_refused(tiny_model: Path, tmp_path: Path) -> None:
    _clip(tmp_path / "lib" / "sub" / "b.mp4")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere, out / "sub")  # OUT/sub/b.mp4 would be written in elsewhere/
    with pytest.raises(OutputError, match="leads outside"):
        run_batch([tmp_path / "lib"], out, tiny_model, QUIET)
    (out / "sub").unlink()
    (out / ".cyclestream").mkdir()
    os.symlink(elsewhere, out / ".cyclestream" / "done")  # the records would be written (and removed) there
    with pytest.raises(OutputError, match="leads outside"):
        run_batch([tmp_path / "lib"], out, tiny_model, QUIET)
    assert not list(elsewhere.iterdir())


def test_segment_clean_up_never_removes_anything_outside_out(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "film.mp4"
    write_camera_clip(src, seconds=3.0, audio=False)
    victim = tmp_path / "victim"
    keep = _touch(victim / "film.mp4.0123456789abcdef" / "keep.txt", b"mine")  # named like stale segments
    out = tmp_path / "out"
    (out / ".cyclestream").mkdir(parents=True)
    os.symlink(victim, out / ".cyclestream" / "segments")
    options = BatchOptions(translate=QUIET.translate, segment_seconds=1.0, progress=False)
    with pytest.raises(BatchFailed) as caught:
        run_batch([src], out, tiny_model, options)
    (failed,) = caught.value.report.of("failed")
    assert "segments" in failed.reason and "leads outside" in failed.reason
    assert keep.read_bytes() == b"mine"


# ----------------------------------------------------------------------------- only regular files are read


def _specials(folder: Path) -> list[str]:
    """A FIFO, a listening Unix socket and a link to a device, each named like a video."""
    os.mkfifo(folder / "pipe.mp4")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(folder / "sock.mp4"))
    server.listen()
    os.symlink("/dev/zero", folder / "zero.mp4")
    return ["pipe.mp4", "sock.mp4", "zero.mp4"]


@pytest.mark.slow
def test_fifos_sockets_and_devices_in_a_folder_are_skipped_with_a_line(tiny_model: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    _clip(lib / "good.mp4")
    specials = _specials(lib)
    out = tmp_path / "out"
    run = _batch(str(lib), "--out", str(out), "--model", str(tiny_model), "--preset", "ultrafast", timeout=90)
    assert run.returncode == 0, run.stderr
    assert "1 item: 1 done" in run.stdout
    for name in specials:
        (line,) = [line for line in run.stderr.splitlines() if name in line]
        assert "skipped" in line and "not a regular file" in line
    assert "FIFO" in run.stderr and "socket" in run.stderr and "character device" in run.stderr
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["good.mp4"]


def test_a_fifo_named_directly_or_in_a_manifest_is_refused(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lib, out = tmp_path / "lib", tmp_path / "out"
    lib.mkdir()
    os.mkfifo(lib / "x.mp4")
    (lib / "list.txt").write_text("x.mp4\n")
    os.mkfifo(lib / "m.txt")  # a manifest that is a FIFO is a FIFO named directly
    for named, message in ((lib / "x.mp4", r"x\.mp4 is a FIFO"), (lib / "list.txt", r"list\.txt:1: .* is a FIFO"),
                           (lib / "m.txt", r"m\.txt is a FIFO")):
        with pytest.raises(MediaError, match=message + r".*not a regular file"):
            find_items([named], out)
    code = main(["-q", "batch", str(lib / "x.mp4"), "--out", str(out), "--model", str(tiny_model)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a regular file" in err, err


# ----------------------------------------------------------------------------- one bad entry fails alone


def test_a_looping_link_in_a_folder_fails_that_item_alone(tiny_model: Path, tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    _clip(lib / "good.mp4")
    os.symlink("loop.mp4", lib / "loop.mp4")
    with pytest.raises(BatchFailed, match="1 of 2 items failed") as caught:
        run_batch([lib], tmp_path / "out", tiny_model, QUIET)
    (failed,) = caught.value.report.of("failed")
    assert failed.item.rel == "loop.mp4" and "Too many levels of symbolic links" in failed.reason
    assert [o.item.rel for o in caught.value.report.of("done")] == ["good.mp4"]


def test_a_folder_where_a_record_goes_fails_that_item_alone(tiny_model: Path, tmp_path: Path) -> None:
    lib, out = tmp_path / "lib", tmp_path / "out"
    _clip(lib / "a.mp4")
    _clip(lib / "b.mp4")
    record_path(out, "a.mp4").mkdir(parents=True)  # a folder in the place of a.mp4's record
    with pytest.raises(BatchFailed, match="1 of 2 items failed") as caught:
        run_batch([lib], out, tiny_model, QUIET)
    (failed,) = caught.value.report.of("failed")
    assert failed.item.rel == "a.mp4" and "cannot remove its record" in failed.reason
    assert not (out / "a.mp4").exists()  # refused before any work
    assert (out / "b.mp4").is_file() and record_path(out, "b.mp4").is_file()


# ----------------------------------------------------------------------------- records carry the output's fingerprint


def test_an_output_replaced_by_other_bytes_of_the_same_size_is_redone(tiny_model: Path, tmp_path: Path) -> None:
    src, out = _clip(tmp_path / "lib" / "a.mp4"), tmp_path / "out"
    run_batch([tmp_path / "lib"], out, tiny_model, QUIET)
    output = out / "a.mp4"
    good, stat = output.read_bytes(), output.stat()
    assert len(good) < 2 << 20  # small enough for its whole content to be fingerprinted
    output.write_bytes(bytes(reversed(good)))  # same size, other bytes ...
    os.utime(output, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # ... and the old modification time
    again = run_batch([tmp_path / "lib"], out, tiny_model, QUIET)
    assert [o.status for o in again.outcomes] == ["done"]
    assert video_times(output) == pytest.approx(video_times(src), abs=0.002)
    assert "output_ends_sha256" in json.loads(record_path(out, "a.mp4").read_text())
    assert [o.status for o in run_batch([tmp_path / "lib"], out, tiny_model, QUIET).outcomes] == ["skipped"]


# ----------------------------------------------------------------------------- signals and threads


# Planning opens each input with PyAV; here that open is made to block on a FIFO (the real PyAV call, a
# real blocking open), which is where PyAV turns the signal's exception into "Interrupted system call".
_PLAN_BLOCKS = """
import sys
from pathlib import Path
from cyclestream.cli import main
from cyclestream.engine.jobs import batch_state
fifo, marker = Path(sys.argv[1]), Path(sys.argv[2])
real = batch_state.open_input
def blocking_open(path, *args, **kwargs):
    marker.write_text("opening")
    return real(fifo, *args, **kwargs)
batch_state.open_input = blocking_open
sys.exit(main(["-q", "batch", *sys.argv[3:]]))
"""


@pytest.mark.slow
def test_sigterm_while_planning_ends_the_job_with_143(tiny_model: Path, tmp_path: Path) -> None:
    lib, out = tmp_path / "lib", tmp_path / "out"
    _clip(lib / "a.mp4")
    _clip(lib / "b.mp4")
    fifo, marker = tmp_path / "slow.mkv", tmp_path / "planning"
    os.mkfifo(fifo)
    proc = subprocess.Popen([sys.executable, "-c", _PLAN_BLOCKS, str(fifo), str(marker), str(lib), "--out",
                             str(out), "--model", str(tiny_model)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the job never started planning"
        time.sleep(0.5)  # inside the open, waiting for a writer
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert stderr.strip().splitlines() == ["cyclestream: interrupted by SIGTERM; no output was left behind"], stderr
    assert not list(out.glob("*.mp4"))


def test_every_thread_the_job_starts_is_joined_before_it_returns(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(2):
        _picture(tmp_path / "lib" / f"p{i}.png")
    polled = threading.Event()
    advance, run = BatchState.advance, BatchWorker.run

    def slow_poll(self: BatchState, running: int) -> None:  # the progress thread takes its time ...
        if threading.current_thread() is not threading.main_thread():
            polled.set()
            time.sleep(0.5)
        advance(self, running)

    def after_a_poll(self: BatchWorker, unit: object) -> object:  # ... and is polling as the job ends
        polled.wait(10)
        return run(self, unit)  # type: ignore[arg-type]

    monkeypatch.setattr(BatchState, "advance", slow_poll)
    monkeypatch.setattr(BatchWorker, "run", after_a_poll)
    before = set(threading.enumerate())
    report = run_batch([tmp_path / "lib"], tmp_path / "out", tiny_model, QUIET)
    assert [o.status for o in report.outcomes] == ["done", "done"] and polled.is_set()
    assert [t.name for t in threading.enumerate() if t not in before] == []


# ----------------------------------------------------------------------------- Ray local listens on loopback


def _listening(pids: set[int]) -> list[tuple[int, str]]:
    """(pid, address) of every listening TCP socket of ``pids`` (from /proc: an inode per socket)."""
    addresses = {}
    for table, ipv6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            # /proc prints each 32-bit word of the address in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            addresses[fields[9]] = socket.inet_ntop(socket.AF_INET6 if ipv6 else socket.AF_INET, words)
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:  # it ended meanwhile
            continue
        for fd in fds:
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:[") and link[8:-1] in addresses:
                found.append((pid, addresses[link[8:-1]]))
    return found


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += children.get(pid, [])
    return found


def _is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback  # ::ffff:127.0.0.1 too


_ON_LOCAL_RAY = """
import sys
from pathlib import Path
from cyclestream.engine.jobs.batch import BatchOptions, run_batch
from cyclestream.engine.jobs.translate import TranslateOptions
from tests.engine.batch_faults import PauseAtFirst
started, go, src, out, model = map(Path, sys.argv[1:6])
options = BatchOptions(translate=TranslateOptions(progress=False), ray="local", workers=1, progress=False)
print(run_batch([src], out, model, options, on_unit=PauseAtFirst(started, go)).lines()[0])
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads listening sockets from Linux's /proc")
def test_ray_local_listens_on_loopback_only(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'cyclestream[ray]')")
    src = _clip(tmp_path / "a.mp4")
    started, go = tmp_path / "started", tmp_path / "go"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-c", _ON_LOCAL_RAY, str(started), str(go), str(src),
                             str(tmp_path / "out"), str(tiny_model)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started.exists(), proc.communicate(timeout=30)
        worker = int(started.read_text())  # the actor, paused in its first unit: every Ray process is up
        pids = _descendants(proc.pid)
        assert worker in pids
        sockets = _listening(pids)
        go.write_text("go")
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "1 done" in stdout, stderr
    assert len({pid for pid, _ in sockets}) >= 3, sockets  # the driver, GCS, raylet, the worker ...
    assert [s for s in sockets if not _is_loopback(s[1])] == [], sockets


def test_a_local_ray_on_another_address_than_loopback_is_refused() -> None:
    for address in ("127.0.0.1", "::1"):
        _check_loopback(SimpleNamespace(util=SimpleNamespace(get_node_ip_address=lambda a=address: a)))
    exposed = SimpleNamespace(util=SimpleNamespace(get_node_ip_address=lambda: "192.0.2.2"), __version__="2.x")
    with pytest.raises(CycleStreamError, match="listens on every interface"):
        _check_loopback(exposed)
