"""Live outputs: ``--sink`` as null, a network URL, or a recording that stays playable if the job is
killed (written under its final name, no index at the end)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

from cyclestream.engine.errors import CycleStreamError
from cyclestream.engine.media.encode_options import LIVE_ENCODE, EncodeOptions
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.passthrough import Passthrough
from cyclestream.engine.media.probe import VideoInfo
from cyclestream.engine.media.sinks import VideoFileSink

log = logging.getLogger("cyclestream")

_SINK_FORMATS = {
    "udp": "mpegts",
    "srt": "mpegts",
    "tcp": "mpegts",
    "rtp": "rtp_mpegts",
    "rtmp": "flv",
    "rtmps": "flv",
    "rtsp": "rtsp",
}


class NullSink:
    """``--sink null``: frames are counted by the pipeline and dropped."""

    def write(self, frame: TranslatedFrame) -> None:
        pass

    def write_packet(self, template: Any, packet: Any, pts: int, time_base: Fraction) -> None:
        pass

    def written_as(self, template: Any) -> str | None:
        return None

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


# Recording formats that are playable up to the last second even if the job is killed (no index
# written at the end): name → (muxer, muxer options, what the log says).
_FLUSH = (("flush_packets", "1"),)  # every packet reaches the file at once, not when a buffer fills
_FRAGMENTED = (("movflags", "frag_keyframe+empty_moov+default_base_moof"), ("frag_duration", "1000000"))
_RECORDING_FORMATS: dict[str, tuple[str, tuple[tuple[str, str], ...], str]] = {
    ".ts": ("mpegts", _FLUSH, "MPEG-TS"),
    ".m2ts": ("mpegts", _FLUSH, "MPEG-TS"),
    ".mkv": ("matroska", (*_FLUSH, ("cluster_time_limit", "1000")), "Matroska, a cluster a second"),
    ".webm": ("webm", (*_FLUSH, ("cluster_time_limit", "1000")), "WebM, a cluster a second"),
    ".mp4": ("mp4", (*_FLUSH, *_FRAGMENTED), "fragmented MP4"),
    ".m4v": ("mp4", (*_FLUSH, *_FRAGMENTED), "fragmented MP4"),
    ".mov": ("mov", (*_FLUSH, *_FRAGMENTED), "fragmented MOV"),
    ".flv": ("flv", _FLUSH, "FLV"),
}


class RecordingFormatError(CycleStreamError):
    """A live recording asked for in a format that would be lost if the job were killed."""


def recording_options(target: Path, encode: EncodeOptions) -> tuple[EncodeOptions, str]:
    """The encode options that make ``target`` a crash-safe recording, and the format's description."""
    found = _RECORDING_FORMATS.get(target.suffix.lower())
    if found is None:
        raise RecordingFormatError(
            f"cannot record a live stream to {target}: use {', '.join(_RECORDING_FORMATS)} "
            "(formats that stay playable if the job is interrupted)"
        )
    fmt, options, description = found
    return dataclasses.replace(encode, container_format=fmt, container_options=options), description


@contextlib.contextmanager
def open_live_sink(
    target: str, info: VideoInfo, encode: EncodeOptions, audio: Any | None = None
) -> Iterator[NullSink | VideoFileSink]:
    """The sink for ``--sink``: null, a network URL, or a recording written under its final name.
    ``audio``: the source's audio stream, copied beside the video where the output holds its codec,
    else encoded anew (its packets through ``write_packet``)."""
    passthrough = Passthrough(streams=[audio] if audio is not None else [], encode_audio=True)
    if target == "null":
        yield NullSink()
        return
    rate = float(info.average_rate or 30)
    encode = dataclasses.replace(encode, gop=encode.gop or max(1, round(2 * rate)))
    scheme = target.split("://", 1)[0].lower() if "://" in target else ""
    if scheme:
        fmt = encode.container_format or _SINK_FORMATS.get(scheme)
        if fmt is None:
            raise CycleStreamError(f"unsupported sink scheme {scheme}:// (udp, srt, tcp, rtp, rtmp, rtsp)")
        sink = VideoFileSink(target, info, options=dataclasses.replace(encode, container_format=fmt),
                             defaults=LIVE_ENCODE, passthrough=passthrough)
    else:
        path = Path(target)
        encode, description = recording_options(path, encode)
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = VideoFileSink(path, info, options=encode, defaults=LIVE_ENCODE, passthrough=passthrough)
        log.info("recording to %s (%s: playable even if interrupted)", path, description)
    try:
        yield sink
    except BaseException as e:
        sink.abort()  # a second Ctrl-C or an error: stop without flushing, keep what is recorded
        if not scheme:
            e.add_note(f"{target} keeps the {sink.frames_written} frames recorded so far")
        raise
    sink.close()

