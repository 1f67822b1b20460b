"""Atomic outputs: write to a hidden temporary name beside the target, rename on success.

The temporary name carries the writer's PID (``.NAME.partial-PID.EXT``), so a later run can tell the
leftovers of a killed process (SIGKILL, power loss) from the files of one still writing, and remove them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

from cyclestream.engine.errors import OutputError

log = logging.getLogger("cyclestream")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what a plain open() would have given the file

# Failures that only a write can cause: they are about the output even when no file name comes with them.
_WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def partial_path(target: Path, pid: int | None = None) -> Path:
    """The temporary name for ``target``: hidden, same folder, same extension (muxers choose by it)."""
    return target.with_name(f".{target.stem}.partial-{os.getpid() if pid is None else pid}{target.suffix}")


def _partial_pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.stem)}\.partial-([0-9]+){re.escape(target.suffix)}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (one we may not signal counts as alive)."""
    if pid <= 0:
        return True  # not a PID we could have written: never treat it as dead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False  # larger than any PID
    return True


# Each folder is listed once per process, at the first atomic write into it (a folder of 10,000 images
# must not be listed 10,000 times): the hidden partial names found then, minus those removed since.
_partials_seen: dict[Path, list[str]] = {}
_partials_lock = threading.Lock()  # writers on several threads share the lists


def _partial_names(folder: Path) -> list[str]:
    key = folder.absolute()
    if key not in _partials_seen:
        try:
            with os.scandir(folder) as entries:
                names = [e.name for e in entries if e.name.startswith(".") and ".partial-" in e.name]
        except OSError:
            names = []
        _partials_seen[key] = names
    return _partials_seen[key]


def remove_dead_partials(target: Path) -> list[Path]:
    """Delete ``target``'s temporary files (``.STEM.partial-PID.EXT``) whose writer is no longer running."""
    pattern = _partial_pattern(target)
    removed = []
    with _partials_lock:
        names = _partial_names(target.parent)
        for name in list(names):
            match = pattern.fullmatch(name)
            if match is None or pid_alive(int(match.group(1))):
                continue
            path = target.with_name(name)
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                log.debug("could not remove %s: %s", path, e)
                continue
            names.remove(name)
            removed.append(path)
    if removed:
        log.info("removed %s, left by a process that no longer runs", ", ".join(str(p) for p in removed))
    return removed


def _about_output(e: OSError, target: Path, tmp: Path) -> bool:
    if e.filename is None:
        return e.errno in _WRITE_ERRNOS
    names = {str(e.filename)} | ({str(e.filename2)} if e.filename2 else set())
    ours = {str(tmp), str(target), *(str(p) for p in target.parents)}
    return bool(names & ours)


def _first_non_folder(target: Path) -> Path | None:
    """The first of ``target``'s parent folders that exists but is not a folder, if any."""
    for parent in reversed(target.parents):
        try:
            if parent.exists() and not parent.is_dir():
                return parent
        except OSError:  # a folder we may not look into
            return None
    return None


def output_error(target: Path, e: OSError) -> OutputError:
    """``cannot write TARGET: CAUSE``, naming the user's path, never the temporary one."""
    if (not_folder := _first_non_folder(target)) is not None:
        return OutputError(f"cannot write {target}: {not_folder} is a file, not a folder")
    return OutputError(f"cannot write {target}: {e.strerror or e}")


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on any error (or Ctrl-C)
    it is deleted, so no half-written file ever stands under the target's name.  Operating-system
    failures of the output (permission denied, disk full, a file where a folder should be) become an
    :class:`OutputError` naming ``target``."""
    target = Path(target)
    tmp = partial_path(target)
    try:
        if target.is_dir():
            raise OutputError(f"cannot write {target}: it is a folder")
        if target.exists() and not target.is_file():  # renaming over /dev/null or a pipe would replace it
            raise OutputError(f"cannot write {target}: it is not a regular file (a device, pipe or socket)")
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # e.g. a parent folder we may not enter (Path.is_dir raises for EACCES)
        raise output_error(target, e) from None
    remove_dead_partials(target)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, _FILE_MODE)  # some writers (safetensors) create 0600 files
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if _about_output(e, target, tmp):
            raise output_error(target, e) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
