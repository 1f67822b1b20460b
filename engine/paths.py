"""Paths: outputs checked before any work starts (never the input itself, inside the folder the user named,
somewhere we can write), and a file's content digest (what records and model provenance name a file by)."""

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


def ends_sha256(path: str | os.PathLike[str], span: int = 1 << 20) -> str:
    """The SHA-256 of a file's size, its first ``span`` bytes and its last ``span`` bytes (the whole file
    when it is no longer than twice that): a cheap fingerprint of a large output.  A container keeps its
    header and index at its ends, so another encode of the same size differs there; bytes changed only in
    the middle are not seen."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        digest = hashlib.sha256(f"{size}\n".encode())
        digest.update(f.read(span))
        if size > span:
            f.seek(max(span, size - span))
            digest.update(f.read(span))
    return digest.hexdigest()


def check_inside(path: str | os.PathLike[str], folder: str | os.PathLike[str], what: str) -> None:
    """Refuse ``path`` unless, with every link resolved, it lies inside ``folder`` (resolved too): a name
    taken from the user's input (a manifest line, a file found in a folder) must not lead a write or a
    removal anywhere else.  ``what`` names the entry for the message."""
    try:
        real, root = Path(path).resolve(), Path(folder).resolve()
    except (OSError, RuntimeError) as e:  # RuntimeError: a loop of symbolic links (Python < 3.13)
        raise OutputError(f"{what}: cannot follow the links of {path}: {getattr(e, 'strerror', None) or e}") from None
    if not real.is_relative_to(root):
        raise OutputError(f"{what}: refusing to write {path}: it leads outside {folder} (to {real})")


def same_file(a: Path, b: Path) -> bool:
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
    if same_file(src, dst) or (into_folder and same_file(src, dst / src.name)):
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
