"""``-`` as a file job's input or output, FFmpeg's convention for pipes: standard input read through PyAV
without seeking, standard output written in a container that streams (MPEG-TS, Matroska).

``ffmpeg -i x.mp4 -f mpegts - | cyclestream translate - - | ffplay -``: nothing but the media bytes go
to standard output (progress, logs and the report go to standard error).
"""

from __future__ import annotations

import os
import sys
from typing import Any, BinaryIO

import av

from cyclestream.engine.errors import MediaError, OutputError

STDIO = "-"
STDIN_NAME = "standard input"
STDOUT_NAME = "standard output"
STDOUT_DEFAULT = "mpegts"
# The containers FFmpeg writes front to back, never seeking back (MP4/MOV write their index at the end).
_STDOUT_FORMATS = {"mpegts": "mpegts", "ts": "mpegts", "matroska": "matroska", "mkv": "matroska"}
STDOUT_CHOICES = "--format mpegts|matroska"


def is_stdio(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is ``-``: standard input as an input, standard output as an output."""
    return os.fspath(path) == STDIO


class _StdinReader:
    """Standard input as PyAV's file object: read as the bytes come, never seekable (a pipe cannot seek),
    named ``standard input`` in FFmpeg's messages."""

    name = STDIN_NAME

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int) -> bytes:
        read1 = getattr(self._raw, "read1", None)
        return read1(size) if read1 is not None else self._raw.read(size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


class StdoutWriter:
    """Standard output as PyAV's file object: written front to back, never seekable, flushed (not closed)
    when the container closes."""

    name = STDOUT_NAME

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def write(self, data: bytes) -> int:
        self._raw.write(data)
        return len(data)

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self._raw.flush()


def open_stdin(format: str | None = None) -> Any:
    """Standard input opened for reading by PyAV; ``format``: its container, when FFmpeg cannot tell it
    from the bytes.  Every failure is one line naming standard input."""
    try:
        return av.open(_StdinReader(sys.stdin.buffer), mode="r", format=format)
    except av.error.FFmpegError as e:  # before ValueError: InvalidDataError is both
        hint = "" if format else " (empty, or a container FFmpeg cannot tell from its bytes: name it with --format)"
        raise MediaError(f"cannot read {STDIN_NAME}: {e.strerror or e}{hint}") from None
    except (ValueError, OSError) as e:  # an unknown format name; a closed descriptor
        raise MediaError(f"cannot read {STDIN_NAME}: {getattr(e, 'strerror', None) or e}") from None


def stdout_format(name: str | None) -> str:
    """The muxer standard output is written with: MPEG-TS unless ``name`` asks for Matroska; a container
    that needs seeking (MP4, MOV...) is refused."""
    if name is None:
        return STDOUT_DEFAULT
    muxer = _STDOUT_FORMATS.get(name.lower())
    if muxer is None:
        raise OutputError(
            f"cannot write {name} to {STDOUT_NAME}: a pipe takes only a container written front "
            f"to back ({STDOUT_CHOICES}; MP4 and MOV need to seek back to their index)"
        )
    return muxer


def check_stdout() -> None:
    """Refuse a terminal as standard output: binary video is not for a terminal."""
    if sys.stdout.isatty():
        raise OutputError(
            f"{STDOUT_NAME} is a terminal: binary video is not for a terminal (pipe it, e.g. "
            "`cyclestream translate IN - | ffplay -`, or name an output file)"
        )


def stdout_writer() -> StdoutWriter:
    return StdoutWriter(sys.stdout.buffer)
