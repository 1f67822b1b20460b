"""The one error type that crosses the library boundary; the CLI prints it as one line."""


class CycleStreamError(Exception):
    """Something the user can act on: bad input, a wrong checkpoint, a missing dependency."""


class CheckpointError(CycleStreamError):
    """A file that is not a generator checkpoint we can load."""


class MediaError(CycleStreamError):
    """A video or image that cannot be read or written as asked."""


class PermanentMediaError(MediaError):
    """A source or sink that asking again cannot open (a protocol this FFmpeg lacks, HTTP 4xx): never retried."""


class BackendError(CycleStreamError):
    """A backend that cannot be prepared or run here."""


class OutputError(CycleStreamError):
    """An output that must not or cannot be written: it is the input, its folder is not writable, the disk is full."""


def first_line(e: BaseException) -> str:
    """An exception's first line for a one-line message (its type name when it has no text)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
