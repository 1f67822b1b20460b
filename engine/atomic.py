"""Atomic outputs: write to a hidden temporary name beside the target, rename on success."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what a plain open() would have given the file


def partial_path(target: Path) -> Path:
    """The temporary name for ``target``: hidden, same folder, same extension (muxers choose by it)."""
    return target.with_name(f".{target.stem}.partial-{os.getpid()}{target.suffix}")


@contextlib.contextmanager
def atomic_output(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``target``, on any error (or Ctrl-C)
    it is deleted, so no half-written file ever stands under the target's name."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(target)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, _FILE_MODE)  # some writers (safetensors) create 0600 files
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
