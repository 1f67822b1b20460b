"""A PNG's gAMA, cHRM and sRGB chunks go into a PNG output with the same values, beside an iCCP as the
input had them, and no chunk the input did not have is added; a format that cannot hold them names them in
one line as not kept.  The inputs are written byte by byte here (signature, IHDR, the colour chunks, IDAT,
IEND, each with its CRC) and the outputs' chunks are read back by walking the file, not through the code
under test."""

from __future__ import annotations

import io
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from cyclestream.cli import main

WIDTH, HEIGHT = 32, 24
SIGNATURE = b"\x89PNG\r\n\x1a\n"
GAMA = struct.pack(">I", 45455)  # 1/2.2, the value most PNGs carry (0.45455 is not exact as a float)
CHRM = struct.pack(">8I", 31270, 32900, 64000, 33000, 30000, 60000, 15000, 6000)  # white, red, green, blue
ODD_GAMA = struct.pack(">I", 55555)
ODD_CHRM = struct.pack(">8I", 34567, 35855, 73469, 26531, 27368, 71841, 16658, 1)
COLOUR_CHUNKS = (b"gAMA", b"cHRM", b"iCCP", b"sRGB")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(depth: int, *extra: tuple[bytes, bytes], grey: bool = False) -> bytes:
    """An RGB (or greyscale) PNG of WIDTH × HEIGHT at ``depth`` (8 or 16) bits per channel, a smooth gradient,
    with the chunks ``extra`` between IHDR and IDAT."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    top = 2**depth - 1
    pixels = np.dstack([x * top // (WIDTH - 1), y * top // (HEIGHT - 1), (x + y) * top // (WIDTH + HEIGHT - 2)])
    samples = (pixels[..., :1] if grey else pixels).astype(">u2" if depth == 16 else "u1")
    raw = b"".join(b"\0" + row.tobytes() for row in samples)  # filter type 0 on every row
    ihdr = struct.pack(">IIBBBBB", WIDTH, HEIGHT, depth, 0 if grey else 2, 0, 0, 0)
    body = [_chunk(b"IHDR", ihdr), *(_chunk(kind, data) for kind, data in extra)]
    return SIGNATURE + b"".join(body) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def chunks(path: Path) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk in a PNG file, in order, each CRC checked."""
    data = path.read_bytes()
    assert data[:8] == SIGNATURE
    found, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body), kind
        found.append((kind, body))
        at += 12 + length
    assert found[-1][0] == b"IEND"
    return found


def colour_chunks(path: Path) -> dict[bytes, bytes]:
    """The colour chunks of a PNG file, each once, all before the first IDAT."""
    found = chunks(path)
    first_idat = [kind for kind, _ in found].index(b"IDAT")
    colour = [(i, kind, body) for i, (kind, body) in enumerate(found) if kind in COLOUR_CHUNKS]
    assert all(i < first_idat for i, _, _ in colour)
    assert len({kind for _, kind, _ in colour}) == len(colour)
    return {kind: body for _, kind, body in colour}


def translate_cli(src: Path, dst: Path, model: Path) -> None:
    assert main(["translate", str(src), str(dst), "--model", str(model), "--no-preview"]) == 0


def _iccp(profile: bytes) -> bytes:
    return b"test profile\0\0" + zlib.compress(profile)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def grey_profile() -> bytes:
    """A minimal ICC v2 greyscale display profile (gamma 2.2), written byte by byte."""
    d50 = _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    tags = [
        (b"desc", b"desc\0\0\0\0" + struct.pack(">I", 5) + b"grey\0" + b"\0" * 78),
        (b"wtpt", b"XYZ \0\0\0\0" + d50),
        (b"kTRC", b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0233)),  # one u8Fixed8 gamma: 2.2
        (b"cprt", b"text\0\0\0\0none\0"),
    ]
    start = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += signature + struct.pack(">II", start + len(data), len(body))
        data += body
    header = struct.pack(">I", start + len(data)) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrGRAYXYZ "
    header += b"\0" * 12 + b"acsp" + b"\0" * 32 + d50
    return header.ljust(128, b"\0") + struct.pack(">I", len(tags)) + table + data


@pytest.mark.parametrize("depth", [16, 8])
@pytest.mark.parametrize("gama, chrm", [(GAMA, CHRM), (ODD_GAMA, ODD_CHRM)], ids=["srgb-values", "odd-values"])
def test_png_to_png_keeps_gama_and_chrm_byte_for_byte(
    tiny_model: Path, tmp_path: Path, depth: int, gama: bytes, chrm: bytes
) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes(depth, (b"gAMA", gama), (b"cHRM", chrm)))
    translate_cli(src, tmp_path / "out.png", tiny_model)
    assert colour_chunks(tmp_path / "out.png") == {b"gAMA": gama, b"cHRM": chrm}
    with Image.open(tmp_path / "out.png") as out:  # still a picture of the same size
        assert out.size == (WIDTH, HEIGHT)


def test_only_the_chunk_the_input_had_is_kept(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "gama.png").write_bytes(png_bytes(16, (b"gAMA", ODD_GAMA)))
    (tmp_path / "chrm.png").write_bytes(png_bytes(16, (b"cHRM", ODD_CHRM)))
    (tmp_path / "plain.png").write_bytes(png_bytes(16))
    for name in ("gama", "chrm", "plain"):
        translate_cli(tmp_path / f"{name}.png", tmp_path / f"{name}.out.png", tiny_model)
    assert colour_chunks(tmp_path / "gama.out.png") == {b"gAMA": ODD_GAMA}
    assert colour_chunks(tmp_path / "chrm.out.png") == {b"cHRM": ODD_CHRM}
    assert colour_chunks(tmp_path / "plain.out.png") == {}


def test_gama_and_chrm_are_kept_beside_an_rgb_icc_profile(tiny_model: Path, tmp_path: Path) -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes(16, (b"iCCP", _iccp(profile)), (b"gAMA", ODD_GAMA), (b"cHRM", ODD_CHRM)))
    translate_cli(src, tmp_path / "out.png", tiny_model)
    found = colour_chunks(tmp_path / "out.png")
    assert found.keys() == {b"iCCP", b"gAMA", b"cHRM"}  # no sRGB added beside the profile
    assert found[b"gAMA"] == ODD_GAMA and found[b"cHRM"] == ODD_CHRM
    _name, rest = found[b"iCCP"].split(b"\0", 1)
    assert rest[0] == 0 and zlib.decompress(rest[1:]) == profile


@pytest.mark.parametrize("intent", [b"\0", b"\3"], ids=["perceptual", "absolute"])
def test_an_srgb_png_keeps_its_srgb_gama_and_chrm_and_gets_no_profile(
    tiny_model: Path, tmp_path: Path, intent: bytes
) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes(16, (b"sRGB", intent), (b"gAMA", GAMA), (b"cHRM", CHRM)))
    translate_cli(src, tmp_path / "out.png", tiny_model)
    assert colour_chunks(tmp_path / "out.png") == {b"sRGB": intent, b"gAMA": GAMA, b"cHRM": CHRM}  # no iCCP


def test_an_srgb_chunk_alone_is_kept_alone(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.png"
    src.write_bytes(png_bytes(8, (b"sRGB", b"\1")))
    translate_cli(src, tmp_path / "out.png", tiny_model)
    assert colour_chunks(tmp_path / "out.png") == {b"sRGB": b"\1"}


def test_a_grey_profile_converted_to_srgb_takes_gama_and_chrm_with_it(tiny_model: Path, tmp_path: Path) -> None:
    """The pixels are converted through the grey profile on reading: the input's gAMA/cHRM describe the
    encoding they no longer have, so they are not written (nor is an sRGB chunk invented)."""
    src = tmp_path / "grey.png"
    src.write_bytes(png_bytes(8, (b"iCCP", _iccp(grey_profile())), (b"gAMA", ODD_GAMA), (b"cHRM", ODD_CHRM), grey=True))
    with Image.open(src) as image:  # the hand-made profile is one Pillow reads as a grey one
        assert ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"])).profile.xcolor_space.strip() == "GRAY"
    translate_cli(src, tmp_path / "out.png", tiny_model)
    assert colour_chunks(tmp_path / "out.png") == {}


@pytest.mark.parametrize("suffix, fmt", [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_a_format_that_cannot_hold_them_names_gama_and_chrm_in_one_line(
    tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, suffix: str, fmt: str
) -> None:
    src = tmp_path / "photo16.png"
    src.write_bytes(png_bytes(16, (b"gAMA", ODD_GAMA), (b"cHRM", ODD_CHRM)))
    with caplog.at_level(logging.WARNING):
        translate_cli(src, tmp_path / f"out{suffix}", tiny_model)
    lines = [record.getMessage() for record in caplog.records if "gAMA" in record.getMessage()]
    assert lines == [f"gAMA and cHRM not kept ({fmt} cannot hold them): photo16.png"]
    assert not any("cHRM" in record.getMessage() and record.getMessage() != lines[0] for record in caplog.records)
    with Image.open(tmp_path / f"out{suffix}") as out:
        assert out.format == fmt and out.size == (WIDTH, HEIGHT)


def test_a_png_without_them_gets_no_note(tiny_model: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "plain.png").write_bytes(png_bytes(16))
    with caplog.at_level(logging.WARNING):
        translate_cli(tmp_path / "plain.png", tmp_path / "out.jpg", tiny_model)
    assert not any("gAMA" in r.getMessage() or "cHRM" in r.getMessage() for r in caplog.records)
