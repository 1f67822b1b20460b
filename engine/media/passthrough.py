"""What rides along untouched: every stream but the translated one, attachments, chapters, metadata.

The source names what the input has (``Passthrough.of``); the sink adds what the output container
can hold (``add_to``) and names what it cannot in one line.  Packets are copied, never re-encoded,
except a live source's audio in a codec the output cannot hold (``encode_audio``: see
:mod:`~cyclestream.engine.media.audio_encode`).  A
timecode track is not copied but carried as the translated video's ``timecode`` tag, from which the
MOV/MP4 muxer writes a new one (Matroska keeps it as a tag).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any

import av

from cyclestream.engine.media.audio_encode import AudioEncoder

log = logging.getLogger("cyclestream")

# Written by the muxer itself; copying the input's values would describe the old file.
_GENERATED_TAGS = frozenset({"encoder", "duration", "major_brand", "minor_version", "compatible_brands",
                             "handler_name", "vendor_id", "rotate", "number_of_frames", "number_of_bytes",
                             "_statistics_tags", "_statistics_writing_app", "_statistics_writing_date_utc", "bps"})


_ATTACHMENT_MUXERS = frozenset({"matroska", "webm"})
_CHAPTER_MUXERS = frozenset({"matroska", "webm", "mp4", "mov", "ipod", "3gp", "ogg"})
# Muxers that write a video stream's ``timecode`` tag: a tmcd track (QuickTime family), a tag (Matroska).
_TIMECODE_MUXERS = frozenset({"mov", "mp4", "ipod", "3gp", "3g2", "psp", "ismv", "matroska", "webm", "mxf"})


def kept_tags(metadata: dict[str, str]) -> dict[str, str]:
    """Metadata worth carrying: everything but what the muxer writes anew."""
    return {k: v for k, v in metadata.items() if k.lower() not in _GENERATED_TAGS and not k.lower().startswith("bps-")}


def is_attached_picture(stream: Any) -> bool:
    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def main_video_stream(container: Any) -> Any:
    """The video stream to translate: the first that is not cover art (an attached picture)."""
    videos = list(container.streams.video)
    return next((s for s in videos if not is_attached_picture(s)), videos[0])


def describe_stream(stream: Any) -> str:
    """'#2 subtitle srt (fra)': how a stream is named in warnings."""
    if stream.type == "attachment":
        return f"#{stream.index} attachment {stream.name}"
    codec = stream.codec_context.name if stream.codec_context is not None else "data"
    lang = stream.metadata.get("language")
    return f"#{stream.index} {stream.type} {codec}" + (f" ({lang})" if lang and lang != "und" else "")


@dataclass(frozen=True)
class CoverArt:
    """An attached picture as Matroska stores it: a file attachment (players show ``cover.*`` as the cover)."""

    name: str
    mimetype: str
    data: bytes


_IMAGE_TYPES = {"mjpeg": ("cover.jpg", "image/jpeg"), "png": ("cover.png", "image/png"),
                "bmp": ("cover.bmp", "image/bmp"), "webp": ("cover.webp", "image/webp")}


def _cover_art(path: str, stream: Any) -> CoverArt | None:
    """The picture of an attached-picture stream (its one packet, read from a second opening of the
    file), named by its tags or by its codec; None when it cannot be read."""
    codec = stream.codec_context.name if stream.codec_context is not None else ""
    tags = {k.lower(): v for k, v in stream.metadata.items()}
    name, mimetype = _IMAGE_TYPES.get(codec, (f"cover.{codec or 'bin'}", "application/octet-stream"))
    try:
        with av.open(path) as again:
            packet = next((p for p in again.demux(again.streams[stream.index]) if p.size), None)
    except (av.error.FFmpegError, OSError, IndexError):
        return None
    if packet is None:
        return None
    return CoverArt(tags.get("filename", name), tags.get("mimetype", mimetype), bytes(packet))


def is_timecode_track(stream: Any) -> bool:
    """A QuickTime/MP4 timecode track (``tmcd``: iPhone, camera and editor files): a data stream with no codec
    FFmpeg can copy, whose whole content is the start timecode its ``timecode`` tag gives."""
    return stream.type == "data" and stream.codec_context is None and bool(stream.metadata.get("timecode"))


@dataclass
class Passthrough:
    """The input's streams to copy (packets), its attachments, chapters and container metadata."""

    streams: list[Any] = field(default_factory=list)
    attachments: list[Any] = field(default_factory=list)
    chapters: list[Any] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    video_metadata: dict[str, str] = field(default_factory=dict)  # the translated stream's language, title...
    video_disposition: int = 0
    covers: dict[int, CoverArt] = field(default_factory=dict)  # attached-picture streams by index
    encode_audio: bool = False  # audio the output cannot hold is encoded anew (a live source's), not dropped

    @classmethod
    def of(cls, container: Any, video: Any) -> Passthrough:
        streams, attachments = [], []
        covers: dict[int, CoverArt] = {}
        video_tags = kept_tags(dict(video.metadata))
        for stream in container.streams:
            if stream.index == video.index:
                continue
            if is_timecode_track(stream):  # carried as the video's tag: MOV/MP4 write a new tmcd track from it,
                video_tags.setdefault("timecode", stream.metadata["timecode"])  # Matroska a TIMECODE tag
                continue
            (attachments if stream.type == "attachment" else streams).append(stream)
            if stream.type == "video" and is_attached_picture(stream) and (art := _cover_art(container.name, stream)):
                covers[stream.index] = art
        return cls(streams, attachments, container.chapters(), kept_tags(dict(container.metadata)), video_tags,
                   video.disposition, covers)

    @classmethod
    def audio_only(cls, container: Any) -> Passthrough:
        return cls(streams=list(container.streams.audio))


def _muxer_takes(format_name: str, stream: Any) -> bool:
    """Whether a muxer of this format writes a header for a copy of ``stream`` (tried in memory): the
    muxer's own answer where its codec list is partial (MPEG-TS lists 8 codecs, yet carries AAC)."""
    try:
        with av.open(io.BytesIO(), mode="w", format=format_name) as trial:
            trial.add_stream_from_template(stream)
            trial.start_encoding()
    except (av.error.FFmpegError, ValueError, TypeError):
        return False
    return True


# Audio codecs a muxer is taken at its word for only from a list.  FLV (RTMP): what every receiver plays
# (FFmpeg 8's FLV muxer aborts the process on a copy of PCM from Matroska, so others are never tried).
# MPEG-TS: what it maps to a stream type players read (it takes anything else as an opaque data stream).
_LISTED_AUDIO = {
    "flv": frozenset({"aac", "mp3", "mp3float"}),
    "mpegts": frozenset({"aac", "aac_latm", "mp2", "mp3", "mp3float", "ac3", "eac3", "opus", "dts", "truehd",
                         "s302m"}),
}


def _holds(output: Any, stream: Any) -> bool:
    """Whether the output muxer takes this codec; one it does not list is tried (``_muxer_takes``)."""
    supported = output.supported_codecs
    codec = stream.codec_context.name if stream.codec_context is not None else None
    muxer = output.format.name.split(",")[0]
    listed = _LISTED_AUDIO.get(muxer)
    if stream.type == "audio" and listed is not None:
        return codec in listed
    if codec is not None and (not supported or codec in supported):
        return True
    return _muxer_takes(muxer, stream)  # a codec-less data track: asked too


def add_to(output: Any, video: Any, passthrough: Passthrough, label: str) -> dict[int, Any]:
    """Add the passthrough streams, attachments, chapters and metadata to ``output`` (before its header
    is written), and the input video stream's tags to ``video``; returns {input stream index: output
    stream, or the AudioEncoder of audio encoded anew}.  What the container cannot hold is dropped with
    one warning naming it."""
    video.metadata.update(passthrough.video_metadata)
    video.disposition = passthrough.video_disposition
    mapping: dict[int, Any] = {}
    dropped: list[str] = []
    if "timecode" in passthrough.video_metadata and _TIMECODE_MUXERS.isdisjoint(output.format.name.split(",")):
        dropped.append(f"the timecode {passthrough.video_metadata['timecode']}")
    attaches = not _ATTACHMENT_MUXERS.isdisjoint(output.format.name.split(","))
    for stream in passthrough.streams:
        if attaches and (art := passthrough.covers.get(stream.index)) is not None:
            # Matroska has no attached-picture track: cover art is an attachment (as the input's was, or
            # an MP4's cover turned into one), which the demuxer shows as an attached picture again.
            output.add_attachment(art.name, art.mimetype, art.data)
            continue
        if stream.type == "audio" and passthrough.encode_audio and not _holds(output, stream):
            encoder = mapping[stream.index] = AudioEncoder(output, stream)
            log.info("%s cannot hold %s: encoded anew as %s", label, describe_stream(stream), encoder.codec)
            continue
        if stream.type not in ("audio", "video", "subtitle", "data") or not _holds(output, stream):
            dropped.append(describe_stream(stream))
            continue
        try:
            copy = output.add_stream_from_template(stream)
        except (av.error.FFmpegError, ValueError, TypeError):
            dropped.append(describe_stream(stream))
            continue
        if stream.type == "audio" and stream.codec_context.extradata and not copy.codec_context.extradata:
            copy.codec_context.extradata = stream.codec_context.extradata  # built for a live source's ADTS AAC
        copy.metadata.update(kept_tags(dict(stream.metadata)))
        copy.disposition = stream.disposition
        mapping[stream.index] = copy
    for attachment in passthrough.attachments:
        if not attaches:
            dropped.append(describe_stream(attachment))
            continue
        output.add_attachment(attachment.name, attachment.mimetype, bytes(attachment.data))
    if passthrough.chapters:
        if _CHAPTER_MUXERS.isdisjoint(output.format.name.split(",")):
            dropped.append(f"{len(passthrough.chapters)} chapters")
        else:
            output.set_chapters(passthrough.chapters)
    output.metadata.update(passthrough.metadata)
    if dropped:
        log.warning("%s cannot hold %s: dropped (an .mkv output keeps them)", label, ", ".join(dropped))
    return mapping
