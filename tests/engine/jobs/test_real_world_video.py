"""Files as phones, cameras and editors write them: what the model does not change comes out as it went in.

Inputs come from ``device_media`` (PyAV directly, not cyclestream's writers); expectations are
computed here from the decoded input and the model, never from the code under test.
"""

from __future__ import annotations

import itertools
import logging
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from cyclestream.engine.backends.options import RunOptions, prepare_backend
from cyclestream.engine.checkpoint import load_model
from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions
from tests.engine.device_media import (
    write_device_clip,
    write_duplicate_timestamps,
    write_editor_mkv,
    write_size_change_ts,
)
from tests.engine.media_checks import audio_packets, video_times

QUIET = TranslateOptions(temporal="off", progress=False)
LOSSLESS = TranslateOptions(temporal="off", progress=False,
                            encode=EncodeOptions(codec="ffv1", crf=None, preset=None, pix_fmt="bgr0"))
NEAR_LOSSLESS = TranslateOptions(temporal="off", progress=False,
                                 encode=EncodeOptions(crf=0, preset="ultrafast", pix_fmt="yuv444p"))
BT709 = {"colorspace": 1, "color_range": 1, "color_primaries": 1, "color_trc": 1}


def model_output(model_path: Path, images: list[np.ndarray]) -> np.ndarray:
    model = load_model(model_path)
    h, w = images[0].shape[:2]
    backend = prepare_backend(model, RunOptions(backend="eager"), h, w)
    return backend.run(torch.from_numpy(np.stack(images))).numpy()


def decoded(path: Path, **reformat: object) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.reformat(format="rgb24", **reformat).to_ndarray() for f in c.decode(video=0)]


def first_frame(path: Path) -> av.VideoFrame:
    with av.open(str(path)) as c:
        return next(c.decode(video=0))


def colour_tags(path: Path) -> tuple[int, int, int, int]:
    f = first_frame(path)
    return f.colorspace, f.color_range, f.color_primaries, f.color_trc


# ----------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_phone_rotation_is_applied_and_output_is_upright(tiny_model: Path, tmp_path: Path, rotation: int) -> None:
    src = tmp_path / "phone.mp4"
    write_device_clip(src, width=64, height=48, rotation=rotation)
    out = tmp_path / "out.mkv"

    translate(src, out, tiny_model, LOSSLESS)

    # A player shows the picture turned by -rotation degrees (the display matrix's angle is counter-clockwise).
    upright = [np.ascontiguousarray(np.rot90(img, rotation // 90)) for img in decoded(src)]
    expected = model_output(tiny_model, upright)
    got = np.stack(decoded(out))
    assert got.shape == expected.shape  # portrait stays portrait
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert first_frame(out).rotation == 0  # nothing left for the player to turn


def test_portrait_phone_mp4_keeps_audio_creation_time_and_location(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "IMG_0001.MOV"
    metadata = {"creation_time": "2026-05-01T12:34:56.000000Z",
                "com.apple.quicktime.location.ISO6709": "+48.8584+002.2945+035.000/",
                "com.apple.quicktime.make": "Apple"}
    write_device_clip(src, width=64, height=48, rotation=-90, metadata=metadata)
    out = tmp_path / "out.mp4"

    translate(src, out, tiny_model, QUIET)

    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (48, 64)
        for key, value in metadata.items():
            assert c.metadata.get(key) == value, key
    assert audio_packets(out) == audio_packets(src)
    assert video_times(out) == pytest.approx(video_times(src), abs=1e-3)


# ----------------------------------------------------------------------------- colour


@pytest.mark.parametrize(
    ("name", "size", "tags", "read_as"),
    [
        ("bt709-hd", (1280, 720), BT709, {}),
        ("untagged-hd", (1280, 720), None, {"src_colorspace": 1}),  # players read untagged HD as BT.709
        ("untagged-sd", (64, 48), None, {"src_colorspace": 5}),
        ("full-range", (64, 48), {**BT709, "color_range": 2}, {}),
        ("bt601-hd", (1280, 720), {"colorspace": 6, "color_range": 1, "color_primaries": 6, "color_trc": 6}, {}),
    ],
)
@pytest.mark.slow
def test_colour_matrix_range_and_tags_are_kept(
    tiny_model: Path, tmp_path: Path, name: str, size: tuple[int, int], tags: dict[str, int] | None, read_as: dict
) -> None:
    src = tmp_path / f"{name}.mp4"
    write_device_clip(src, width=size[0], height=size[1], frames=2, colour=tags, audio=False)
    out = tmp_path / "out.mp4"

    translate(src, out, tiny_model, NEAR_LOSSLESS)

    expected = model_output(tiny_model, decoded(src, **read_as)).astype(int)
    got = np.stack(decoded(out)).astype(int)  # decoded with the output's own tags, as a player does
    error = np.abs(got - expected).mean()
    assert error < 1.5, f"output colours are off by {error:.1f} levels on average"
    out_tags = colour_tags(out)
    if tags is not None:
        assert out_tags == tuple(tags[k] for k in ("colorspace", "color_range", "color_primaries", "color_trc"))
    else:
        hd = size[1] >= 720
        assert out_tags == ((1, 1, 1, 1) if hd else (6, 1, 6, 6))  # tagged explicitly as read


def test_hdr_ten_bit_stays_ten_bit_with_tags_and_a_note(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "hdr.mkv"
    pq = {"colorspace": 9, "color_range": 1, "color_primaries": 9, "color_trc": 16}
    write_device_clip(src, frames=2, colour=pq, pix_fmt="yuv420p10le", codec="libx265", audio=False)
    out = tmp_path / "out.mkv"
    options = TranslateOptions(temporal="off", progress=False,
                               encode=EncodeOptions(pix_fmt="yuv420p10le"))  # 10-bit x264

    report = translate(src, out, tiny_model, options)

    assert first_frame(out).format.name == "yuv420p10le"
    assert colour_tags(out) == (9, 1, 9, 16)
    assert any("HDR" in w and "SDR" in w for w in report.warnings)


# ----------------------------------------------------------------------------- every stream


def packets(path: Path, kind: str) -> list[tuple[float, bytes]]:
    with av.open(str(path)) as c:
        stream = getattr(c.streams, kind)[0]
        return [(float(p.pts * stream.time_base), bytes(p)) for p in c.demux(stream) if p.size]


def test_editor_mkv_keeps_every_stream_attachment_chapter_and_tag(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "edit.mkv"
    write_editor_mkv(src)
    out = tmp_path / "out.mkv"

    translate(src, out, tiny_model, QUIET)

    with av.open(str(src)) as a, av.open(str(out)) as b:
        def layout(c: av.container.InputContainer) -> list[tuple[str, str | None, str | None]]:
            return [(s.type, s.codec_context.name if s.codec_context else s.name, s.metadata.get("language"))
                    for s in c.streams]

        assert layout(b) == layout(a)
        assert b.metadata["title"] == "My film"
        assert [(ch["start"], ch["end"], ch["metadata"]) for ch in b.chapters()] == [
            (ch["start"], ch["end"], ch["metadata"]) for ch in a.chapters()
        ]
        assert bytes(b.streams[4].data) == bytes(a.streams[4].data)
    assert packets(out, "subtitles") == packets(src, "subtitles") != []
    assert audio_packets(out) == audio_packets(src)
    with av.open(str(src)) as a, av.open(str(out)) as b:  # the second video stream is copied, not translated
        assert [bytes(p) for p in a.demux(a.streams.video[1]) if p.size] == [
            bytes(p) for p in b.demux(b.streams.video[1]) if p.size
        ]


def test_mp4_output_names_what_it_cannot_hold(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "edit.mkv"
    write_editor_mkv(src)
    out = tmp_path / "out.mp4"

    with caplog.at_level(logging.WARNING, logger="cyclestream"):
        translate(src, out, tiny_model, QUIET)

    dropped = [r.getMessage() for r in caplog.records if "cannot hold" in r.getMessage()]
    assert len(dropped) == 1 and "subtitle" in dropped[0] and "font.ttf" in dropped[0]
    assert audio_packets(out) == audio_packets(src)
    with av.open(str(out)) as c:
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["Intro", "Main"]


@pytest.mark.parametrize("hops", [[".mkv"], [".mp4"], [".mp4", ".mkv"]], ids=["mkv", "mp4", "mp4-then-mkv"])
def test_cover_art_rides_along_untranslated(tiny_model: Path, tmp_path: Path, hops: list[str]) -> None:
    """Cover art stays cover art: in Matroska an image attachment (no track), in MP4 an attached-picture
    track; through one translation or two, the picture's bytes untouched."""
    cover = tmp_path / "cover.jpg"
    Image.new("RGB", (16, 16), (200, 0, 0)).save(cover)
    src = tmp_path / "with_cover.mkv"  # Matroska cover art: an image attachment, shown as an attached picture
    write_device_clip(src, frames=5, audio=False, attachments={"cover.jpg": ("image/jpeg", cover.read_bytes())})
    current = src
    for i, suffix in enumerate(hops):
        out = tmp_path / f"out{i}{suffix}"
        assert translate(current, out, tiny_model, QUIET).frames == 5
        current = out

    with av.open(str(current)) as b:
        assert [(s.codec_context.name, s.codec_context.width) for s in b.streams.video] == [("h264", 64), ("mjpeg", 16)]
        assert b.streams.video[1].disposition & av.stream.Disposition.attached_pic  # still the cover, not a track
        cover_out = [bytes(p) for p in b.demux(b.streams.video[1]) if p.size]
        assert cover_out[:1] == [cover.read_bytes()]  # the picture itself, untouched


# ----------------------------------------------------------------------------- timestamps and sizes


def test_duplicate_timestamps_into_mp4_are_repaired_with_a_note(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "dupes.mkv"
    write_duplicate_timestamps(src, [0, 40, 40, 80, 120, 120, 160])
    out = tmp_path / "out.mp4"

    report = translate(src, out, tiny_model, QUIET)

    times = video_times(out)
    assert len(times) == 7
    assert all(b > a for a, b in itertools.pairwise(times))
    assert times[0] == 0 and times[-1] == pytest.approx(0.160)
    assert any("2 frames" in w and "timestamps" in w for w in report.warnings)


def test_size_change_mid_stream_is_named_not_called_damage(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "switch.ts"
    write_size_change_ts(src, [(64, 48), (32, 24)])
    out = tmp_path / "out.mp4"

    report = translate(src, out, tiny_model, QUIET)

    assert report.frames == 12
    with av.open(str(out)) as c:
        assert (c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height) == (64, 48)
    assert not any("damaged" in w for w in report.warnings), report.warnings
    assert any("changes frame size" in w and "32x24" in w for w in report.warnings), report.warnings


# ----------------------------------------------------------------------------- frames that cannot fit


def test_too_small_frames_get_a_plain_message(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "tiny.mkv"
    write_device_clip(src, width=4, height=4, frames=2, codec="ffv1", pix_fmt="yuv444p", audio=False)
    with pytest.raises(Exception, match=r"4x4 are too small .* at least 5 pixels"):
        translate(src, tmp_path / "out.mkv", tiny_model, QUIET)
    assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".out*"))


def test_a_frame_too_large_for_memory_is_refused_up_front(tmp_path: Path) -> None:
    from cyclestream.engine.backends.fit import check_frame_fits
    from cyclestream.engine.errors import MediaError
    from cyclestream.engine.models import GeneratorSpec

    with pytest.raises(MediaError, match=r"16000x16000 frames needs about \d+\.\d GB .* --size"):
        check_frame_fits(GeneratorSpec(), 1, 16000, 16000, precision="fp32", device="cpu")
    check_frame_fits(GeneratorSpec(), 1, 1080, 1920, precision="fp32",
                     device="cpu")  # full HD fits in this machine's memory



def test_anamorphic_pixel_aspect_is_kept(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "dv.mkv"  # 64x48 stored, shown 4:3 wider (as DV and HDV cameras write)
    write_device_clip(src, frames=3, audio=False, sample_aspect_ratio=Fraction(4, 3))
    out = tmp_path / "out.mp4"

    translate(src, out, tiny_model, QUIET)

    with av.open(str(src)) as a, av.open(str(out)) as b:
        assert a.streams.video[0].sample_aspect_ratio == Fraction(4, 3)
        assert b.streams.video[0].sample_aspect_ratio == Fraction(4, 3)


def test_live_stream_keeps_the_sources_colour_tags(tiny_model: Path, tmp_path: Path) -> None:
    from cyclestream.engine.jobs.stream import StreamOptions, run_stream

    out = tmp_path / "live.mkv"
    source = ("lavfi:testsrc2=size=64x48:rate=10,format=yuv420p,"
              "setparams=colorspace=bt709:color_primaries=bt709:color_trc=bt709:range=tv")
    run_stream(StreamOptions(temporal="off", source=source, sink=str(out), model=tiny_model, duration=1.0,
                             stats_interval=0))
    assert colour_tags(out) == (1, 1, 1, 1)
