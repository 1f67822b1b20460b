"""Long videos in pieces: split at keyframes, translate the pieces anywhere, join them without re-encoding.

``scan`` reads the main video stream's packets once (no decoding): each one's pts, dts, duration and
keyframe flag, in decode order.  ``plan_segments`` cuts there at *clean* keyframes — keyframes before
which, in decode order, lies exactly every frame that is shown before them — so a segment is a run of
packets that decodes on its own into exactly its frames.  ``SegmentSource`` is a ``VideoFileSource`` that
seeks to a segment (or a few frames before it: warm-up for the temporal stabiliser) and reads only its
packets, with the whole video's orientation, colour tags and frame size.  Each segment is encoded with
the same settings into its own file; ``join_segments`` concatenates their video packets, gives every
frame the original's timestamp, and muxes the original's other streams untouched beside them.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from cyclestream.engine.errors import MediaError
from cyclestream.engine.media.deinterlace import Deinterlace
from cyclestream.engine.media.frame import VideoFrame
from cyclestream.engine.media.passthrough import Passthrough, add_to, is_attached_picture, main_video_stream
from cyclestream.engine.media.probe import VideoInfo, open_input
from cyclestream.engine.media.sinks import muxer_options, rebase_start
from cyclestream.engine.media.sources import VideoFileSource

log = logging.getLogger("cyclestream")

SEGMENT_SUFFIX = ".mkv"  # segment files: Matroska holds every codec; timestamps come from the plan, not from it


@dataclass(frozen=True)
class VideoIndex:
    """The main video stream's packets in decode order (from ``scan``)."""

    time_base: Fraction
    pts: list[int | None]
    dts: list[int | None]
    durations: list[int]
    keyframes: list[bool]

    @property
    def seconds(self) -> float:
        known = [p for p in self.pts if p is not None]
        return float((max(known) - min(known)) * self.time_base) if known else 0.0


def scan(path: str | os.PathLike[str]) -> VideoIndex:
    """Demux (not decode) the main video stream once.  Cost: reading the file."""
    with open_input(path) as container:
        video = main_video_stream(container)
        pts: list[int | None] = []
        dts: list[int | None] = []
        durations: list[int] = []
        keys: list[bool] = []
        try:
            for packet in container.demux(video):
                if not packet.size:
                    continue
                pts.append(packet.pts)
                dts.append(packet.dts)
                durations.append(packet.duration or 0)
                keys.append(bool(packet.is_keyframe))
        except av.error.FFmpegError as e:
            raise MediaError(f"cannot read {path}: {e.strerror or e}") from None
        return VideoIndex(video.time_base or Fraction(1, 90000), pts, dts, durations, keys)


@dataclass(frozen=True)
class Segment:
    """A run of packets that decodes on its own, with what is needed to read and join it."""

    number: int  # 0-based
    count: int  # segments of the video
    seek_pts: int  # the keyframe decoding starts at (before ``frame_pts[0]`` when warming up)
    end_pts: int | None  # the next segment's keyframe, where reading stops; None: read to the end
    warmup_pts: int  # frames from here up to frame_pts[0] are warm-up (translated, not written)
    frame_pts: tuple[int, ...]  # this segment's frames, in presentation order (the original's pts)
    frame_durations: tuple[int, ...]
    time_base: Fraction
    warmup_frames: int = 0

    @property
    def frames(self) -> int:
        return len(self.frame_pts)

    def describe(self) -> str:
        start = float(self.frame_pts[0] * self.time_base)
        return f"segment {self.number + 1}/{self.count} ({self.frames} frames from {start:.2f} s)"


def plan_segments(index: VideoIndex, seconds: float, warmup: int = 0) -> list[Segment] | str:
    """Segments of at least ``seconds`` each (the last may be shorter), cut at clean keyframes, each
    warming up from ``warmup`` frames before its start; or a one-line reason why the video cannot be cut."""
    n = len(index.pts)
    if n == 0:
        return "it has no video packets"
    if any(p is None for p in index.pts):
        return "some packets have no presentation timestamp"
    pts: list[int] = index.pts  # type: ignore[assignment]
    ordered = sorted(pts)
    if any(b <= a for a, b in itertools.pairwise(ordered)):
        return "two frames share a timestamp"
    millis = [round(p * index.time_base * 1000) for p in ordered]
    if any(b <= a for a, b in itertools.pairwise(millis)):
        return "frames less than 1 ms apart"
    suffix_min = pts[:]
    for k in range(n - 2, -1, -1):
        suffix_min[k] = min(pts[k], suffix_min[k + 1])
    clean, seen_max = [], None
    for k in range(n):
        if index.keyframes[k] and pts[k] == suffix_min[k] and (seen_max is None or seen_max < pts[k]):
            clean.append(k)
        seen_max = pts[k] if seen_max is None else max(seen_max, pts[k])
    if not clean or clean[0] != 0:
        return "it does not start with a keyframe"
    step = seconds / index.time_base
    cuts = [0]
    for k in clean[1:]:
        if pts[k] - pts[cuts[-1]] >= step:
            cuts.append(k)
    if len(cuts) < 2:
        return f"no keyframe {seconds:g} s or more after its start"
    by_pts = {p: d for p, d in zip(pts, index.durations, strict=True)}
    clean_pts = [pts[k] for k in clean]
    bounds = [*cuts, n]
    segments = []
    for i in range(len(cuts)):
        first, end = bounds[i], bounds[i + 1]
        frame_pts = tuple(sorted(pts[first:end]))
        start = bisect.bisect_left(ordered, frame_pts[0])
        warm_pts = ordered[max(0, start - warmup)]
        seek = clean[bisect.bisect_right(clean_pts, warm_pts) - 1]  # the last clean keyframe at or before it
        segments.append(Segment(
            number=i, count=len(cuts), seek_pts=pts[seek], end_pts=pts[end] if end < n else None,
            warmup_pts=warm_pts, frame_pts=frame_pts,
            frame_durations=tuple(by_pts[p] for p in frame_pts), time_base=index.time_base,
            warmup_frames=start - max(0, start - warmup),
        ))
    return segments


class SegmentSource(VideoFileSource):
    """The frames of one segment (after its warm-up frames, marked ``warmup``), read as the whole video is:
    ``like`` is the whole video's ``frame_info`` and ``quarter_turns``, so every segment has the same
    orientation, colour conversion and frame size.  Ends with a MediaError if the frames read are not
    exactly the segment's (a damaged file), so a short segment is never written."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        segment: Segment,
        like: VideoInfo,
        quarter_turns: int,
        deinterlace: Deinterlace = "auto",
    ) -> None:
        self.segment = segment
        self.kept = 0  # frames of the segment itself read so far (warm-up not counted)
        super().__init__(path, size=(like.width, like.height), audio=False, deinterlace=deinterlace)
        self._like = like
        self.quarter_turns = quarter_turns  # type: ignore[misc]  # set, not read from the first frame
        self.colour = like.colour  # type: ignore[misc]

    @property
    def start_time(self) -> float | None:
        """None: a segment's file keeps the original's timestamps; ``join_segments`` moves the whole output."""
        return None

    @property
    def frame_info(self) -> VideoInfo:
        return self._like

    def _packets(self) -> Iterator[Any]:
        """The segment's packets (from its seek keyframe, up to the next segment), then None to flush.

        Packets are told by their pts: before a clean keyframe (in decode order) every pts is smaller
        than its own, from it on none is, so the keyframe is the first packet whose pts is not smaller,
        and the next segment's keyframe the first whose pts reaches it."""
        seg = self.segment
        for attempt in (seg.seek_pts, None):  # a seek that lands past the keyframe: read from the start
            if attempt is None:
                self.container.seek(0)
            else:
                self.container.seek(attempt, backward=True, any_frame=False, stream=self.video)
            packets = (p for p in self.container.demux(self.video) if p.size and p.pts is not None)
            first = next((p for p in packets if p.pts >= seg.seek_pts), None)
            if first is None or first.pts != seg.seek_pts:
                continue
            yield first
            for packet in packets:
                if seg.end_pts is not None and packet.pts >= seg.end_pts:
                    break
                yield packet
            yield None
            return
        raise MediaError(f"{self.path}: cannot find the keyframe {seg.describe()} starts at")

    def _decoded_frames(self) -> Iterator[tuple[av.VideoFrame, list[Any]]]:
        try:
            for packet in self._packets():
                for frame in self._decode(packet):
                    if frame.pts is not None and frame.pts >= self.segment.warmup_pts:
                        yield frame, []
        except av.error.FFmpegError as e:  # truncated or damaged: the count check below says so
            self.read_error = e.strerror or str(e)

    def _frame(self, frame: av.VideoFrame, side: list[Any]) -> VideoFrame:
        out = super()._frame(frame, side)
        out.warmup = out.pts is not None and out.pts < self.segment.frame_pts[0]
        self.kept += not out.warmup
        return out

    def frames(self) -> Iterator[VideoFrame]:
        yield from super().frames()
        if self.kept != self.segment.frames:
            reason = f" ({self.read_error})" if self.read_error else ""
            raise MediaError(f"{self.path}: {self.segment.describe()} decoded {self.kept} frames{reason}")

    def damage_report(self) -> str | None:
        return None  # frames() fails on any loss


# ----------------------------------------------------------------------------- joining


@dataclass
class _Part:
    """One encoded segment file as the join sees it: its presentation ranks in decode order."""

    segment: Segment
    path: Path
    ranks: list[int]  # decode-order packet j shows as the segment's ranks[j]-th frame


def _read_part(segment: Segment, path: Path, reference: Any | None) -> tuple[_Part, Any]:
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        ctx = stream.codec_context
        params = (ctx.name, ctx.width, ctx.height, ctx.format.name if ctx.format else None, bytes(ctx.extradata or b""))
        if reference is not None and params != reference:
            raise MediaError(f"segment {segment.number + 1} of {path.parent.name} was encoded differently from "
                             "segment 1 (codec, size, pixel format or parameter sets): it cannot be joined")
        packets = [(p.pts, p.is_keyframe) for p in c.demux(stream) if p.size]
    if len(packets) != segment.frames or not packets or not packets[0][1] or None in (p for p, _ in packets):
        raise MediaError(f"{path}: {len(packets)} packets for a segment of {segment.frames} frames, or it does "
                         "not start with a keyframe")
    order = sorted(range(len(packets)), key=lambda j: packets[j][0])
    ranks = [0] * len(packets)
    for rank, j in enumerate(order):
        ranks[j] = rank
    return _Part(segment, path, ranks), params


def join_segments(
    original: str | os.PathLike[str],
    parts: Sequence[tuple[Segment, Path]],
    output: Path,
    label: str = "",
) -> int:
    """Write ``output`` (the caller's temporary path; ``label`` names the real one) from the encoded
    segments of ``original``, in order: video packets copied, each frame given the original's pts,
    decode timestamps made increasing; every other stream, the attachments, chapters and metadata of
    the original copied as ``translate`` copies them.  Returns the number of video frames."""
    label = label or str(output)
    reference = None
    read: list[_Part] = []
    for segment, path in parts:
        part, reference = _read_part(segment, path, reference)
        read.append(part)
    all_pts = [p for part in read for p in part.segment.frame_pts]
    durations = [d for part in read for d in part.segment.frame_durations]
    time_base = read[0].segment.time_base
    # Reorder depth: a decoder shows decode-order packet j no earlier than as frame j - depth; a dts of
    # the (j - depth)-th pts is then never after the packet's pts and always increasing.
    depth = max(max(j - r for j, r in enumerate(part.ranks)) for part in read)
    with open_input(original) as source:
        video = main_video_stream(source)
        passthrough = Passthrough.of(source, video)
        with av.open(str(parts[0][1])) as first:
            template = first.streams.video[0]
            try:
                out = av.open(str(output), mode="w", options=muxer_options(output, passthrough))
            except (av.error.FFmpegError, ValueError, OSError) as e:
                raise MediaError(f"cannot write {label}: {getattr(e, 'strerror', None) or e}") from None
            start = source.start_time
            rebase_start(out, None if start is None else start / av.time_base)  # as translate's sink does
            try:
                out_video = out.add_stream_from_template(template)
                out_video.time_base = time_base
                rate = video.average_rate or video.base_rate  # what the single-file sink declares
                if rate:
                    out_video.codec_context.framerate = rate  # muxers that write a frame rate read it here
                side_streams = add_to(out, out_video, passthrough, label)
            except BaseException:
                out.close()
                raise
        try:
            videos = _video_packets(read, all_pts, durations, depth, time_base, out_video)
            sides = _side_packets(source, passthrough, side_streams)
            for _, _, packet in heapq.merge(videos, sides, key=lambda item: (item[0], item[1])):
                out.mux(packet)
            out.close()
        except av.error.FFmpegError as e:
            out.close()
            raise MediaError(f"cannot join the segments of {label}: {e.strerror or e}") from None
        except BaseException:
            out.close()
            raise
    return len(all_pts)


def _video_packets(
    parts: list[_Part], all_pts: list[int], durations: list[int], depth: int, time_base: Fraction, stream: Any
) -> Iterator[tuple[float, int, Any]]:
    offset = 0
    first_pts, step = all_pts[0], (all_pts[1] - all_pts[0] if len(all_pts) > 1 else 1)
    for part in parts:
        with av.open(str(part.path)) as c:
            packets = (p for p in c.demux(c.streams.video[0]) if p.size)
            for j, packet in enumerate(packets):
                g = offset + j
                rank = offset + part.ranks[j]
                dts = all_pts[g - depth] if g >= depth else first_pts - (depth - g) * step
                packet.pts, packet.dts = all_pts[rank], dts
                packet.time_base = time_base
                packet.duration = durations[rank] or (
                    all_pts[rank + 1] - all_pts[rank] if rank + 1 < len(all_pts) else durations[rank - 1] if rank else 0
                )
                packet.stream = stream
                yield float(dts * time_base), 0, packet
        offset += part.segment.frames


def _side_packets(source: Any, passthrough: Passthrough, streams: dict[int, Any]) -> Iterator[tuple[float, int, Any]]:
    """The original's other streams, as the single-file source reads them (cover art untimed at 0)."""
    if not streams:
        return
    for packet in source.demux(*[s for s in passthrough.streams if s.index in streams]):
        if not packet.size:
            continue
        if packet.dts is None and is_attached_picture(packet.stream):
            packet.pts = packet.dts = 0
        if packet.dts is None:
            continue
        when = float(packet.dts * packet.time_base)
        packet.stream = streams[packet.stream.index]
        yield when, 1, packet


def segment_files(folder: Path, segments: Sequence[Segment]) -> list[Path]:
    """Where each segment's encoded file goes."""
    return [folder / f"{s.number:05d}-of-{s.count:05d}{SEGMENT_SUFFIX}" for s in segments]

