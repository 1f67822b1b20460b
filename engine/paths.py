"""Paths: outputs checked before any work starts (never the input itself, somewhere we can write), and a
file's content digest (what records and model provenance name a file by)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from cyclestream.engine.atomic import output_error
from cyclestream.engine.errors import OutputError


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # the same path, a symbolic link to it, or a hard link (st_dev, st_ino)
    except OSError:
        return False  # one of them does not exist (yet): nothing to overwrite


def check_not_input(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Refuse an output that is the input file (or folder): writing it would destroy the source.
    An existing folder as the output of a file stands for FOLDER/INPUT_NAME."""
    src, dst = Path(src), Path(dst)
    try:
        into_folder = src.is_file() and dst.is_dir()
    except OSError:  # a folder we may not look into: writing there fails later, with its own message
        into_folder = False
    if _same_file(src, dst) or (into_folder and _same_file(src, dst / src.name)):
        raise OutputError(f"refusing to write {dst}: it is the input {src} (choose another output path)")


def check_writable(path: str | os.PathLike[str], what: str) -> None:
    """Check, writing nothing that stays, that ``path`` could be written: it is not a folder, and its
    nearest existing parent folder accepts a new file (the missing folders below it get created)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise OutputError(f"{what}: cannot write {path}: it is a folder")
        folder = next(p for p in path.absolute().parents if p.exists())
        if not folder.is_dir():
            raise NotADirectoryError
        fd, probe = tempfile.mkstemp(prefix=".cyclestream-write-check-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{what}: {output_error(path, e)}") from None
