"""Sinks: encode + mux translated frames with PyAV, remuxing audio packets untouched."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

import av

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.colour import ColourTags
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.passthrough import Passthrough, add_to, describe_stream
from cyclestream.engine.media.probe import VideoInfo

log = logging.getLogger("cyclestream")

# Codecs whose quality knob is called "crf" in FFmpeg, and the ones that call it "cq".
_CRF_CODECS = ("libx264", "libx265", "libvpx", "libvpx-vp9", "libsvtav1", "libaom-av1")
_CQ_CODECS = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")
_PRESET_CODECS = ("libx264", "libx265")
_QUALITY_MAX = {"libx264": 51, "libx265": 51, "h264_nvenc": 51, "hevc_nvenc": 51}  # the others: 0 to 63


def _codec_options(opts: EncodeOptions) -> dict[str, str]:
    out: dict[str, str] = {}
    if opts.crf is not None:
        if opts.codec in _CRF_CODECS:
            out["crf"] = str(opts.crf)
            if opts.codec.startswith("libvpx"):
                out["b"] = "0"  # constant-quality mode
        elif opts.codec in _CQ_CODECS:
            out["cq"] = str(opts.crf)
    if opts.preset and opts.codec in _PRESET_CODECS:
        out["preset"] = opts.preset
    if opts.encoder_tune and opts.codec in _PRESET_CODECS:
        out["tune"] = opts.encoder_tune
    if opts.gop:
        out["g"] = str(opts.gop)
    if opts.codec == "libx265":
        out["x265-params"] = "log-level=error"  # x265 prints a banner of settings to stderr otherwise
    return out


def check_quality(options: EncodeOptions) -> None:
    """``--crf`` within the encoder's own range (x264 and x265 would silently clamp 52..63 to 51)."""
    top = _QUALITY_MAX.get(options.codec, 63)
    if options.crf is not None and options.codec in _CRF_CODECS + _CQ_CODECS and not 0 <= options.crf <= top:
        raise MediaError(f"--crf for {options.codec} must be between 0 and {top}, got {options.crf}")


def check_video_codec(name: str) -> None:
    try:
        codec = av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise MediaError(f"unknown video encoder {name!r} (try libx264, libx265, libvpx-vp9, libsvtav1)") from None
    if codec.type != "video":
        raise MediaError(f"{name!r} encodes {codec.type}, not video (try libx264)")


def muxer_options(path: Path | str, passthrough: Passthrough) -> dict[str, str]:
    """MP4/MOV write only a few metadata keys unless asked to keep them all (a phone's location, make...)."""
    if passthrough.metadata and str(path).lower().endswith((".mp4", ".mov", ".m4v")):
        return {"movflags": "use_metadata_tags"}
    return {}


class Sink(Protocol):
    """Where translated frames go: a file, a network stream, a live page, or nowhere."""

    def write(self, frame: TranslatedFrame) -> None: ...

    def close(self) -> None:
        """Finish the output (flush the encoder, write the trailer)."""

    def abort(self) -> None:
        """Stop at once without flushing; what was written stays."""


class VideoFileSink:
    """Writes frames to a file (or a network URL) with the input's size, frame rate, timestamps and
    colour tags; the passthrough streams' packets are muxed untouched beside them.

    Timestamps are the input's, frame for frame; one that is not later than the one before (a
    duplicate, or backwards) is moved one tick past it, since encoders and most containers need
    them increasing, and ``repaired_timestamps`` counts them.
    """

    def __init__(
        self,
        path: Path | str,
        info: VideoInfo,
        *,
        passthrough: Passthrough | None = None,
        options: EncodeOptions | None = None,
        label: str = "",
    ) -> None:
        passthrough = Passthrough() if passthrough is None else passthrough
        options = EncodeOptions() if options is None else options
        label = label or (path.name if isinstance(path, Path) else path)  # the user's name, not the temporary one
        check_video_codec(options.codec)
        check_quality(options)
        pix_fmt = options.pix_fmt
        if pix_fmt == "yuv420p" and (info.width % 2 or info.height % 2):
            log.warning("odd frame size %dx%d cannot be 4:2:0; encoding yuv444p", info.width, info.height)
            pix_fmt = "yuv444p"
        self.pix_fmt = pix_fmt
        self.colour: ColourTags | None = info.colour.for_encoding(pix_fmt, info.width, info.height) \
            if info.colour else None
        try:
            self.container = av.open(str(path), mode="w", format=options.container_format,
                                     options={**muxer_options(path, passthrough), **dict(options.container_options)})
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise MediaError(f"cannot write {label}: {getattr(e, 'strerror', None) or e}") from None
        try:
            self.stream = self.container.add_stream(options.codec, rate=info.average_rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = info.width, info.height, pix_fmt
            self.stream.time_base = info.time_base
            ctx = self.stream.codec_context
            ctx.time_base = info.time_base
            ctx.options = _codec_options(options)
            if self.colour is not None:
                self.colour.tag(ctx, pix_fmt)
            if info.sample_aspect_ratio:
                ctx.sample_aspect_ratio = info.sample_aspect_ratio
            self.side_streams = add_to(self.container, self.stream, passthrough, label)
            self.container.start_encoding()
        except (av.error.FFmpegError, ValueError) as e:
            self.container.close()
            if isinstance(e, OSError):  # the disk or the network (EACCES, ENOSPC, EIO...), not the codec
                raise MediaError(f"cannot write {label}: {e.strerror or e}") from None
            raise MediaError(
                f"cannot encode {options.codec}/{pix_fmt} with "
                f"{[describe_stream(t) for t in passthrough.streams]} into {label}: "
                f"{getattr(e, 'strerror', None) or e} (try another --codec, or an .mkv output)"
            ) from None
        self.frames_written = 0
        self.repaired_timestamps = 0
        self._last_pts: int | None = None

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self.container.mux(packet)

    def mux_side(self, packets: list[Any]) -> None:
        """Copy other streams' packets (those the output holds) untouched."""
        for packet in packets:
            stream = self.side_streams.get(packet.stream.index)
            if stream is not None:
                packet.stream = stream
                self.container.mux(packet)

    def _pts(self, pts: int | None) -> int | None:
        if pts is not None and self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
            self.repaired_timestamps += 1
        self._last_pts = pts if pts is not None else self._last_pts
        return pts

    def write(self, frame: TranslatedFrame) -> None:
        self.mux_side(frame.source.side_packets)
        if self.colour is not None:
            out = self.colour.from_rgb(frame.image, self.pix_fmt)
        else:
            out = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        out.pts, out.time_base = self._pts(frame.source.pts), frame.source.time_base
        self._mux(self.stream.encode(out))
        self.frames_written += 1

    def timestamp_note(self, label: str) -> str | None:
        if not self.repaired_timestamps:
            return None
        return (f"{self.repaired_timestamps} frames of {label} had duplicate or backwards timestamps: each was "
                f"moved one tick ({self.stream.time_base} s) past the frame before")

    def close(self) -> None:
        """Flush the encoder and finish the file (the caller renames it into place)."""
        self._mux(self.stream.encode(None))
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # a broken muxer must not hide the error that got us here
            log.debug("closing an aborted output failed", exc_info=True)
