"""A live source's audio in a codec the output's container cannot hold, encoded anew beside the video.

An RTSP camera's G.711 (``pcm_mulaw``/``pcm_alaw``) cannot go into MP4, an MP3 or PCM track not
into FLV (RTMP), AAC not into WebM.  Where copying is impossible the packets are decoded, resampled
(libswresample, through PyAV's ``AudioResampler``) to the encoder's sample format in frames of its
frame size, and encoded as AAC, or Opus for WebM.  Times come from the packets (on the output
clock): the encoded samples run on continuously and re-anchor only where the source's time jumps
ahead (a reconnection), so the audio stays on the video's clock.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from typing import Any

import av

log = logging.getLogger("cyclestream")

BIT_RATES = {"aac": 128_000, "libopus": 96_000}
REANCHOR_SECONDS = 0.1  # the source's time ahead of the samples encoded by more than this: a gap, kept


def encoder_for(format_name: str) -> str:
    """The audio codec a muxer is given when it cannot hold the source's: Opus for WebM, else AAC."""
    return "libopus" if "webm" in format_name.split(",") else "aac"


class AudioEncoder:
    """Packets of ``template``'s codec in, packets of ``stream`` (added to ``output``) out."""

    def __init__(self, output: Any, template: Any) -> None:
        source = template.codec_context
        self.source_codec = source.name
        self.codec = encoder_for(output.format.name)
        rates = av.Codec(self.codec, "w").audio_rates or []
        rate = source.sample_rate if source.sample_rate in rates or not rates else 48000
        layout = "mono" if source.layout.nb_channels == 1 else "stereo"  # more channels: downmixed to two
        self.stream = output.add_stream(self.codec, rate=rate, layout=layout)
        # AAC carries at most 6 bits per sample and channel: G.711's 8 kHz mono gets 24 kb/s, not 128
        self.stream.codec_context.bit_rate = min(BIT_RATES[self.codec], 3 * rate * self.stream.codec_context.channels)
        self.rate = rate
        self._decoder = av.CodecContext.create(source.name, "r")
        self._decoder.sample_rate, self._decoder.layout = source.sample_rate, source.layout
        if source.extradata:
            self._decoder.extradata = source.extradata
        self._resampler: av.AudioResampler | None = None
        self._next: int | None = None  # the next encoded sample's time, in 1/rate
        self.undecodable = 0

    def encode(self, packet: av.Packet, pts: int, time_base: Fraction) -> list[av.Packet]:
        """The encoded packets that are ready after ``packet`` (stamped ``pts`` in ``time_base``)."""
        packet.pts = packet.dts = None
        try:
            frames = self._decoder.decode(packet)
        except av.error.FFmpegError:
            self.undecodable += 1
            return []
        start = float(pts * time_base) * self.rate
        out: list[av.Packet] = []
        for frame in frames:
            if self._next is None or start - self._next > REANCHOR_SECONDS * self.rate:
                self._next = round(start)
            start += frame.samples * self.rate / frame.sample_rate
            frame.pts = None
            out += self._encode(self._resample(frame))
        return out

    def flush(self) -> list[av.Packet]:
        """What the resampler and the encoder still hold, at the end."""
        out = self._encode(self._resample(None)) if self._resampler is not None else []
        return out + list(self.stream.encode(None))

    def _resample(self, frame: av.AudioFrame | None) -> list[av.AudioFrame]:
        if self._resampler is None:
            ctx = self.stream.codec_context
            self._resampler = av.AudioResampler(
                format=ctx.format, layout=ctx.layout, rate=self.rate, frame_size=ctx.frame_size or None
            )
        return self._resampler.resample(frame)

    def _encode(self, frames: list[av.AudioFrame]) -> list[av.Packet]:
        out: list[av.Packet] = []
        for frame in frames:
            assert self._next is not None
            frame.pts, frame.time_base = self._next, Fraction(1, self.rate)
            self._next += frame.samples
            out += self.stream.encode(frame)
        return out
