"""Interlaced video deinterlaced before the model, with FFmpeg's ``bwdif`` through PyAV's filter graph.

Woven fields fed to a model come out with their combing baked in.  ``bwdif`` (motion-adaptive, Bob
Weaver) runs in ``send_frame`` mode: one frame out for every frame in, each at its own timestamp, so the
frame count, rate and timestamps stay the input's.  Field parity comes from each frame (``parity=auto``)
when the first is flagged interlaced; fields in frames flagged progressive are taken as top field first
(``parity=tff``: FFmpeg 5's ``auto`` did so, later ones take them as bottom first).

``--deinterlace``: ``auto`` (the default) deinterlaces when the first frame is flagged interlaced, and
then only the frames flagged so (``deint=interlaced``: a broadcast that switches to progressive passes
through); ``on`` deinterlaces every frame whatever its flags (``deint=all``: content that is interlaced
but tagged progressive); ``off`` hands the woven frames to the model.  The option's type imports no PyAV.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import av

Deinterlace = Literal["off", "auto", "on"]
DEINTERLACE_CHOICES: tuple[Deinterlace, ...] = ("off", "auto", "on")
FILTER = "bwdif"


def wanted(mode: Deinterlace, first: av.VideoFrame) -> bool:
    """Whether frames starting with ``first`` go through the deinterlacer under ``mode``."""
    return mode == "on" or (mode == "auto" and bool(first.interlaced_frame))


class Deinterlacer:
    """``bwdif`` on decoded frames: ``push(frame)`` returns the frames ready so far (one frame's delay),
    ``push(None)`` flushes the rest.  A change of frame size or pixel format starts a new graph after
    flushing the old one.  Output frames carry the input's time base."""

    def __init__(self, time_base: Fraction, *, every_frame: bool, flagged: bool = True) -> None:
        """``flagged``: the frames say they are interlaced (and which field is first)."""
        self.time_base = time_base
        parity = "auto" if flagged else "tff"
        self.args = f"mode=send_frame:parity={parity}:deint={'all' if every_frame else 'interlaced'}"
        self._graph: Any = None
        self._key: tuple[int, int, str] | None = None

    def describe(self) -> str:
        return f"FFmpeg's {FILTER} ({self.args})"

    def _open(self, frame: av.VideoFrame) -> None:
        import av

        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                  time_base=self.time_base)  # fmt: skip
        node = graph.add(FILTER, self.args)
        sink = graph.add("buffersink")
        source.link_to(node)
        node.link_to(sink)
        graph.configure()
        self._graph, self._key = graph, (frame.width, frame.height, frame.format.name)

    def _pull(self) -> list[av.VideoFrame]:
        import av

        out = []
        while True:
            try:
                frame = self._graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
            if frame.pts is not None and frame.time_base and frame.time_base != self.time_base:
                frame.pts = round(frame.pts * frame.time_base / self.time_base)  # bwdif halves the time base
            frame.time_base = self.time_base
            out.append(frame)

    def _flush(self) -> list[av.VideoFrame]:
        if self._graph is None:
            return []
        self._graph.push(None)
        out = self._pull()
        self._graph = self._key = None
        return out

    def push(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        if frame is None:
            return self._flush()
        out = []
        if self._key is not None and self._key != (frame.width, frame.height, frame.format.name):
            out += self._flush()
        if self._graph is None:
            self._open(frame)
        self._graph.push(frame)
        return out + self._pull()
