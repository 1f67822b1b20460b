"""AAC's decoder configuration from an ADTS header, for muxers that need it before the first packet.

MPEG-TS carries AAC as ADTS: every frame starts with a header holding the profile, sample rate and
channels, and the stream has no AudioSpecificConfig.  MP4, Matroska and FLV need that config in
their header, which a live recording writes before any packet (fragmented MP4's empty ``moov``), and
raw frames after it (FFmpeg's MP4 muxer refuses ADTS).  So the 2-byte config (ISO/IEC 14496-3,
1.6.2.1) is built from the first header, and each frame's header is taken off (``raw_frame``); the
MPEG-TS muxer writes ADTS headers again from the config.
"""

from __future__ import annotations


def config_from_adts(data: bytes) -> bytes | None:
    """The AudioSpecificConfig an ADTS frame describes; None when ``data`` does not start with one."""
    if len(data) < 7 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0:  # sync word, layer 0
        return None
    object_type = (data[2] >> 6) + 1  # the ADTS profile is the object type minus one
    frequency = (data[2] >> 2) & 0x0F
    channels = ((data[2] & 0x01) << 2) | (data[3] >> 6)
    if frequency > 12:
        return None
    config = (object_type << 11) | (frequency << 7) | (channels << 3)
    return config.to_bytes(2, "big")


def raw_frame(data: bytes) -> bytes | None:
    """The AAC frame inside one ADTS frame; None when ``data`` is not one (or holds several blocks)."""
    if config_from_adts(data) is None or data[6] & 0x03:  # more than one raw data block: not split here
        return None
    header = 7 if data[1] & 0x01 else 9  # protection_absent, else a 2-byte CRC follows
    length = ((data[3] & 0x03) << 11) | (data[4] << 3) | (data[5] >> 5)
    return data[header:length] if header < length <= len(data) else None
