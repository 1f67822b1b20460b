"""Sinks: encode + mux translated frames with PyAV, remuxing audio packets untouched."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.probe import VideoInfo

log = logging.getLogger("cyclestream")

# Codecs whose quality knob is called "crf" in FFmpeg, and the ones that call it "cq".
_CRF_CODECS = ("libx264", "libx265", "libvpx", "libvpx-vp9", "libsvtav1", "libaom-av1")
_CQ_CODECS = ("h264_nvenc", "hevc_nvenc", "av1_nvenc")
_PRESET_CODECS = ("libx264", "libx265")


@dataclass(frozen=True)
class EncodeOptions:
    codec: str = "libx264"
    crf: int | None = 18
    preset: str | None = "medium"
    pix_fmt: str = "yuv420p"
    tune: str | None = None  # x264/x265: "zerolatency" for live output
    gop: int | None = None  # frames between keyframes (live viewers can join at each one)
    container_format: str | None = None  # e.g. "mpegts" for udp://, "flv" for rtmp://; None: from the name


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
    if opts.tune and opts.codec in _PRESET_CODECS:
        out["tune"] = opts.tune
    if opts.gop:
        out["g"] = str(opts.gop)
    return out


def check_video_codec(name: str) -> None:
    try:
        codec = av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise MediaError(f"unknown video encoder {name!r} (try libx264, libx265, libvpx-vp9, libsvtav1)") from None
    if codec.type != "video":
        raise MediaError(f"{name!r} encodes {codec.type}, not video (try libx264)")


class VideoFileSink:
    """Writes frames to a file (or a network URL) with the input's size, frame rate and timestamps."""

    def __init__(
        self,
        path: Path | str,
        info: VideoInfo,
        audio_templates: list[Any],
        options: EncodeOptions,
        label: str = "",
    ) -> None:
        label = label or (path.name if isinstance(path, Path) else path)  # the user's name, not the temporary one
        check_video_codec(options.codec)
        pix_fmt = options.pix_fmt
        if pix_fmt == "yuv420p" and (info.width % 2 or info.height % 2):
            log.warning("odd frame size %dx%d cannot be 4:2:0; encoding yuv444p", info.width, info.height)
            pix_fmt = "yuv444p"
        try:
            self.container = av.open(str(path), mode="w", format=options.container_format)
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise MediaError(f"cannot write {label}: {getattr(e, 'strerror', None) or e}") from None
        try:
            self.stream = self.container.add_stream(options.codec, rate=info.average_rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = info.width, info.height, pix_fmt
            self.stream.time_base = info.time_base
            self.stream.codec_context.time_base = info.time_base
            self.stream.codec_context.options = _codec_options(options)
            self.audio = {t.index: self.container.add_stream_from_template(t) for t in audio_templates}
            self.container.start_encoding()
        except (av.error.FFmpegError, ValueError) as e:
            self.container.close()
            raise MediaError(
                f"cannot encode {options.codec}/{pix_fmt} with audio "
                f"{[t.codec_context.name for t in audio_templates]} into {label}: "
                f"{getattr(e, 'strerror', None) or e} (try another --codec, or an .mkv output)"
            ) from None
        self.frames_written = 0

    def _mux(self, packets: Any) -> None:
        for packet in packets:
            self.container.mux(packet)

    def write(self, frame: TranslatedFrame) -> None:
        for packet in frame.source.side_packets:
            packet.stream = self.audio[packet.stream.index]
            self.container.mux(packet)
        out = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        out.pts, out.time_base = frame.source.pts, frame.source.time_base
        self._mux(self.stream.encode(out))
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file (the caller renames it into place)."""
        self._mux(self.stream.encode(None))
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # a broken muxer must not hide the error that got us here
            log.debug("closing an aborted output failed", exc_info=True)
