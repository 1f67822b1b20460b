"""Sinks: encode + mux translated frames with PyAV, remuxing audio packets untouched."""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from cyclestream.engine.errors import MediaError, PermanentMediaError
from cyclestream.engine.media.audio_encode import AudioEncoder
from cyclestream.engine.media.colour import ColourTags, has_alpha
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.media.frame import TranslatedFrame
from cyclestream.engine.media.passthrough import Passthrough, add_to, describe_stream
from cyclestream.engine.media.pipes import StdoutWriter
from cyclestream.engine.media.probe import PERMANENT_ERRORS, VideoInfo, permanent_reason

AVFMT_VARIABLE_FPS = 0x0400  # a muxer without it (AVI) stores one frame per tick of its time base

log = logging.getLogger("cyclestream")


def encoder_options(codec: str) -> dict[str, Any]:
    """The encoder's own private AVOptions by name (crf, cq, preset, tune...); empty for an unknown encoder."""
    try:
        return {o.name: o for o in av.codec.CodecContext.create(codec, "w").supported_options.private}
    except (av.codec.codec.UnknownCodecError, ValueError, av.error.FFmpegError):
        return {}


def _quality_knob(known: dict[str, Any]) -> str | None:
    """The encoder's constant-quality option: ``crf``, else ``cq`` (NVENC); None when it has neither."""
    return next((k for k in ("crf", "cq") if k in known), None)


def _codec_options(opts: EncodeOptions, defaults: EncodeOptions) -> dict[str, str]:
    known = encoder_options(opts.codec)
    out: dict[str, str] = {}
    knob = _quality_knob(known)
    if opts.crf is not None and knob is not None:
        out[knob] = str(opts.crf)
        if knob == "crf" and opts.codec.startswith("libvpx"):
            out["b"] = "0"  # constant-quality mode
    if (
        opts.preset
        and "preset" in known
        and (opts.preset != defaults.preset or known["preset"].type.name == "STRING")
    ):
        out["preset"] = opts.preset
    if opts.encoder_tune and "tune" in known:
        out["tune"] = opts.encoder_tune
    if opts.gop:
        out["g"] = str(opts.gop)
    if "x265-params" in known:
        out["x265-params"] = "log-level=error"  # x265 prints a banner of settings to stderr otherwise
    return out


def check_quality(options: EncodeOptions, defaults: EncodeOptions | None = None) -> None:
    """``--crf``, ``--preset`` and the tune asked of the encoder's own options: within its range (x264 and
    x265 take any float but clamp above 51), refused in one line by an encoder that has no such option.
    ``defaults``: the job's declared encoding (``EncodeOptions()``; live output: ``LIVE_ENCODE``), whose
    values are left out quietly for such an encoder."""
    defaults = EncodeOptions() if defaults is None else defaults
    known = encoder_options(options.codec)
    if not known and options.codec not in av.codecs_available:
        return  # check_video_codec names the unknown encoder
    knob = _quality_knob(known)
    if options.crf is not None:
        if knob is None:
            if options.crf != defaults.crf:
                raise MediaError(
                    f"{options.codec} has no constant-quality option: --crf {options.crf} cannot be "
                    "given to it (leave --crf out, or pick an encoder such as libx264)"
                )
        else:
            top = known[knob].max
            top = int(top) if 0 < top <= 63 else 51
            if not 0 <= options.crf <= top:
                raise MediaError(f"--crf for {options.codec} must be between 0 and {top}, got {options.crf}")
    if options.preset and "preset" not in known and options.preset != defaults.preset:
        raise MediaError(f"{options.codec} has no preset option: --preset {options.preset} cannot be given to it")
    if options.encoder_tune and "tune" not in known and options.encoder_tune != defaults.encoder_tune:
        raise MediaError(f"{options.codec} has no tune option: tune {options.encoder_tune!r} cannot be given to it")


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


def _tag_alpha(stream: Any, alpha: bool) -> None:
    """VP8/VP9 say their alpha in the container (``alpha_mode`` 1, which Matroska's muxer writes as AlphaMode);
    a tag copied from an input with alpha is taken off an output without it."""
    for key in [k for k in stream.metadata if k.lower() == "alpha_mode"]:
        del stream.metadata[key]
    if alpha and stream.codec_context.name in ("libvpx", "libvpx-vp9"):
        stream.metadata["alpha_mode"] = "1"


KEEPS_CLOCK = frozenset({"mpegts"})  # broadcast timing: a TS output keeps the clock its input came with


def rebase_start(container: Any, start: float | None) -> float:
    """Have ``container`` (an output not yet started) move every timestamp back by the input's ``start``
    (seconds) when its format expects them from zero, as FFmpeg's own command does: every format but
    MPEG-TS, which keeps the input's clock (a TS that starts at 10 h made a 10-hour MP4).  Returns the
    seconds moved, 0 for none; libavformat's ``output_ts_offset`` moves every stream's packets alike."""
    if start is None or start <= 0 or container.format.name in KEEPS_CLOCK:
        return 0.0
    container.container_options["output_ts_offset"] = f"{-start:.6f}"
    return start


def rebase_note(label: str, seconds: float, output: str) -> str | None:
    """One line when an input's start of a second or more was taken off (less is a muxer's usual delay)."""
    if seconds < 1:
        return None
    hours, rest = divmod(seconds, 3600)
    clock = f"{int(hours):02d}:{int(rest // 60):02d}:{rest % 60:06.3f}"
    return (f"{label} starts at {clock}: the timestamps of {output} start at zero, as its container expects "
            "(every stream moved alike; a .ts output keeps the input's clock)")


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
        path: Path | str | StdoutWriter,
        info: VideoInfo,
        *,
        passthrough: Passthrough | None = None,
        options: EncodeOptions | None = None,
        defaults: EncodeOptions | None = None,
        label: str = "",
        rebase_from: float | None = None,
    ) -> None:
        """``rebase_from``: the input's start time (seconds), taken off every timestamp where the output's
        container expects them from zero (``rebase_start``; ``rebased`` says how much); None: kept."""
        passthrough = Passthrough() if passthrough is None else passthrough
        options = EncodeOptions() if options is None else options
        defaults = EncodeOptions() if defaults is None else defaults  # the job's own encoding (check_quality)
        label = label or (path if isinstance(path, str) else path.name)  # the user's name, not the temporary one
        check_video_codec(options.codec)
        check_quality(options, defaults)
        pix_fmt = options.pix_fmt
        if pix_fmt == "yuv420p" and (info.width % 2 or info.height % 2):
            log.warning("odd frame size %dx%d cannot be 4:2:0; encoding yuv444p", info.width, info.height)
            pix_fmt = "yuv444p"
        self.pix_fmt = pix_fmt
        # transparency goes back where the encoder's pixel format holds it; else it is named (alpha_note)
        self.keeps_alpha = info.alpha and has_alpha(pix_fmt)
        self.colour: ColourTags | None = info.colour.for_encoding(pix_fmt, info.width, info.height) \
            if info.colour else None
        try:
            target = path if isinstance(path, StdoutWriter) else str(path)  # `-`: written front to back
            self.container = av.open(target, mode="w", format=options.container_format,
                                     options={**muxer_options(label if isinstance(path, StdoutWriter) else path,
                                                              passthrough), **dict(options.container_options)})
        except (av.error.FFmpegError, ValueError, OSError) as e:
            raise MediaError(f"cannot write {label}: {getattr(e, 'strerror', None) or e}") from None
        self.rebased = rebase_start(self.container, rebase_from)
        # A muxer that cannot hold a variable frame rate (AVI) writes 1 / its time base as the frame rate:
        # it gets the input's average rate, as FFmpeg gives it, and frames their index at that rate.
        constant = not self.container.format.flags & AVFMT_VARIABLE_FPS and bool(info.average_rate)
        self.time_base = 1 / Fraction(info.average_rate).limit_denominator(1001) if constant else info.time_base
        try:
            self.stream = self.container.add_stream(options.codec, rate=info.average_rate)
            self.stream.width, self.stream.height, self.stream.pix_fmt = info.width, info.height, pix_fmt
            self.stream.time_base = self.time_base
            ctx = self.stream.codec_context
            ctx.time_base = self.time_base
            ctx.options = _codec_options(options, defaults)
            self.hdr_lost = None  # HDR metadata the encoder cannot write (hdr_note)
            if info.hdr is not None:
                if (hdr_options := info.hdr.encoder_options(options.codec)) is None:
                    self.hdr_lost = info.hdr
                else:
                    ctx.options = {**ctx.options, **hdr_options}
            if self.colour is not None:
                self.colour.tag(ctx, pix_fmt)
            if info.sample_aspect_ratio:
                ctx.sample_aspect_ratio = info.sample_aspect_ratio
            self.side_streams = add_to(self.container, self.stream, passthrough, label)
            _tag_alpha(self.stream, self.keeps_alpha)
            self.container.start_encoding()
        except (av.error.FFmpegError, ValueError) as e:
            self.container.close()
            if isinstance(e, PERMANENT_ERRORS):  # a protocol this FFmpeg lacks (srt://), an HTTP refusal
                raise PermanentMediaError(f"cannot write {label}: {permanent_reason(label, e)}") from None
            if isinstance(e, OSError):  # the disk or the network (EACCES, ENOSPC, EIO...), not the codec
                raise MediaError(f"cannot write {label}: {e.strerror or e}") from None
            raise MediaError(
                f"cannot encode {options.codec}/{pix_fmt} with "
                f"{[describe_stream(t) for t in passthrough.streams]} into {label}: "
                f"{getattr(e, 'strerror', None) or e} (try another --codec"
                f"{'' if self.container.format.name.startswith('matroska') else ', or an .mkv output'})"
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

    def write_packet(self, template: Any, packet: Any, pts: int, time_base: Fraction) -> None:
        """A packet of the passthrough stream ``template``, stamped anew (a live source's audio on the
        output clock); nothing when the output does not hold that stream."""
        stream = self.side_streams.get(template.index)
        if isinstance(stream, AudioEncoder):
            self._mux(stream.encode(packet, pts, time_base))
            return
        if stream is None:
            return
        packet.stream = stream
        packet.time_base = time_base
        packet.pts = packet.dts = pts
        self.container.mux(packet)

    def written_as(self, template: Any) -> str | None:
        """How the passthrough stream ``template`` is written: "copied", the codec it is encoded anew as, or
        None (not held)."""
        stream = self.side_streams.get(template.index)
        return stream.codec if isinstance(stream, AudioEncoder) else "copied" if stream is not None else None

    def _pts(self, pts: int | None) -> int | None:
        if pts is not None and self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
            self.repaired_timestamps += 1
        self._last_pts = pts if pts is not None else self._last_pts
        return pts

    def write(self, frame: TranslatedFrame) -> None:
        self.mux_side(frame.source.side_packets)
        alpha = frame.source.alpha if self.keeps_alpha else None
        if self.colour is not None:
            out = self.colour.from_rgb(frame.image, self.pix_fmt, alpha)
        elif alpha is not None:
            out = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.dstack([frame.image, alpha])), format="rgba")
        else:
            out = av.VideoFrame.from_ndarray(frame.image, format="rgb24")
        pts = frame.source.pts
        if pts is not None and frame.source.time_base != self.time_base:  # to the output's ticks, repaired there
            pts = round(pts * frame.source.time_base / self.time_base)
        out.pts, out.time_base = self._pts(pts), self.time_base
        self._mux(self.stream.encode(out))
        self.frames_written += 1

    def alpha_note(self, label: str, info: VideoInfo) -> str | None:
        if not info.alpha or self.keeps_alpha:
            return None
        return (f"the transparency of {label} is not kept: {self.stream.codec_context.name}/{self.pix_fmt} has no "
                "alpha (the model saw it on white; --codec libvpx-vp9 --pix-fmt yuva420p in .webm/.mkv, or "
                "--codec prores_ks --pix-fmt yuva444p10le in .mov, keep it)")

    def hdr_note(self, label: str) -> str | None:
        if self.hdr_lost is None:
            return None
        codec = self.stream.codec_context.name
        return (f"the HDR metadata of {label} ({self.hdr_lost.describe()}) is not kept: {codec} cannot write it "
                "(--codec libx265 or libsvtav1 can)")

    def timestamp_note(self, label: str) -> str | None:
        if not self.repaired_timestamps:
            return None
        return (f"{self.repaired_timestamps} frames of {label} had duplicate or backwards timestamps: each was "
                f"moved one tick ({self.stream.time_base} s) past the frame before")

    def close(self) -> None:
        """Flush the encoders and finish the file (the caller renames it into place)."""
        self._mux(self.stream.encode(None))
        for side in self.side_streams.values():
            if isinstance(side, AudioEncoder):
                self._mux(side.flush())
        self.container.close()

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # a broken muxer must not hide the error that got us here
            log.debug("closing an aborted output failed", exc_info=True)
