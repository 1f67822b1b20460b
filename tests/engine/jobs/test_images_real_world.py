"""Real-world image files (phones, cameras, editors, animations): what the model does not change comes out
as it went in, and what cannot be kept is named in one line.  Every file is made here with Pillow."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms

from cyclestream.cli import main
from cyclestream.engine.errors import MediaError
from cyclestream.engine.jobs.translate import ImagesFailed, TranslateOptions, translate
from cyclestream.engine.media.images import load_rgb, read_picture, to_rgb

QUIET = TranslateOptions(temporal="off", progress=False)
ORIENTATION = ExifTags.Base.Orientation
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
       b'tiff:Orientation="6" xmp:CreatorTool="TestCam"/></rdf:RDF></x:xmpmeta>')


def noise(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def camera_jpeg(path: Path, upright: np.ndarray) -> None:
    """A JPEG as a phone held upright writes it: pixels stored turned 90° left, EXIF Orientation 6 (display
    rotated 90° clockwise), a camera make, an sRGB ICC profile, XMP repeating the orientation."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[ExifTags.Base.Make] = "TestCam"
    Image.fromarray(np.rot90(upright, k=1)).save(path, quality=95, exif=exif, icc_profile=SRGB_ICC, xmp=XMP)


def test_exif_orientation_is_applied_and_the_tag_removed(tiny_model: Path, tmp_path: Path) -> None:
    camera_jpeg(tmp_path / "phone.jpg", noise(40, 24))
    with Image.open(tmp_path / "phone.jpg") as stored:
        assert stored.size == (24, 40)  # stored on its side
        upright = np.rot90(np.asarray(stored), k=-1)  # exactly the pixels a viewer shows
    Image.fromarray(upright).save(tmp_path / "upright.png")

    translate(tmp_path / "phone.jpg", tmp_path / "from_phone.png", tiny_model, QUIET)
    translate(tmp_path / "upright.png", tmp_path / "from_upright.png", tiny_model, QUIET)

    out = load_rgb(tmp_path / "from_phone.png")
    assert out.shape == (24, 40, 3)
    assert np.array_equal(out, load_rgb(tmp_path / "from_upright.png"))  # translated upright, not on its side

    report = translate(tmp_path / "phone.jpg", tmp_path / "out.jpg", tiny_model, QUIET)
    assert report.warnings == []
    with Image.open(tmp_path / "out.jpg") as written:
        assert written.size == (40, 24)
        exif = written.getexif()
        assert ORIENTATION not in exif  # upright pixels: no viewer may turn them again
        assert exif[ExifTags.Base.Make] == "TestCam"  # the rest of the EXIF is kept
        assert written.info["icc_profile"] == SRGB_ICC
        assert b'xmp:CreatorTool="TestCam"' in written.info["xmp"] and b"Orientation" not in written.info["xmp"]
    with Image.open(tmp_path / "from_phone.png") as png:
        assert png.info["icc_profile"] == SRGB_ICC and ORIENTATION not in png.getexif()
        assert png.getexif()[ExifTags.Base.Make] == "TestCam"
        assert 'xmp:CreatorTool="TestCam"' in png.info["XML:com.adobe.xmp"]


def test_metadata_a_format_cannot_hold_is_named(tiny_model: Path, tmp_path: Path) -> None:
    camera_jpeg(tmp_path / "phone.jpg", noise(16, 8))
    report = translate(tmp_path / "phone.jpg", tmp_path / "out.bmp", tiny_model, QUIET)
    assert report.warnings == ["ICC profile, EXIF and XMP not kept (BMP cannot hold them): phone.jpg"]
    assert load_rgb(tmp_path / "out.bmp").shape == (8, 16, 3)


def grey16_gradient(path: Path) -> np.ndarray:
    values = np.linspace(0, 65535, 64 * 8).astype(np.uint16).reshape(8, 64)
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode == "I;16"
    return values


def test_16_bit_grey_png_is_scaled_not_clipped(tiny_model: Path, tmp_path: Path) -> None:
    values = grey16_gradient(tmp_path / "depth.png")
    rgb = load_rgb(tmp_path / "depth.png")
    expected = np.rint(values / 257).astype(np.uint8)
    assert np.array_equal(rgb, np.repeat(expected[..., None], 3, axis=2))

    report = translate(tmp_path / "depth.png", tmp_path / "out.png", tiny_model, QUIET)
    assert report.warnings == ["I;16 pixels scaled to 8 bits per channel: depth.png"]


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I", [0, 1000, 65535], [0, 4, 255]),  # 16-bit data opened as 32-bit integers
        ("I", [0, 128, 255], [0, 128, 255]),  # 8-bit data in a 32-bit image
        ("F", [0.0, 0.5, 1.0], [0, 128, 255]),  # floats from 0 to 1
    ],
)
def test_32_bit_modes_are_scaled_by_their_range(mode: str, values: list[float], expected: list[int]) -> None:
    dtype = np.int32 if mode == "I" else np.float32
    image = Image.fromarray(np.array([values], dtype=dtype), mode)
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == expected


def test_48_bit_rgb_png_keeps_its_levels(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16)[None, :, None], (8, 1, 3))
    with av.open(str(tmp_path / "rgb48.png"), "w", format="image2") as container:
        stream = container.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = 64, 8, "rgb48be"
        frame = av.VideoFrame.from_ndarray(ramp, format="rgb48le")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    picture = read_picture(tmp_path / "rgb48.png")
    assert np.abs(picture.frames[0].astype(int) - ramp // 257).max() <= 1
    assert picture.lost == ["16-bit channels scaled to 8 bits"]


def test_palette_grey_alpha_and_cmyk_become_rgb(tmp_path: Path) -> None:
    la = Image.fromarray(np.array([[[50, 255], [50, 0]]], np.uint8), "LA")
    assert np.asarray(to_rgb(la))[0].tolist() == [[50, 50, 50], [255, 255, 255]]
    palette = Image.new("P", (2, 1))
    palette.putpalette([255, 0, 0, 0, 0, 255])
    palette.putpixel((1, 0), 1)
    palette.info["transparency"] = 1
    assert np.asarray(to_rgb(palette))[0].tolist() == [[255, 0, 0], [255, 255, 255]]
    Image.new("CMYK", (4, 2), (0, 255, 0, 0)).save(tmp_path / "print.jpg", quality=100)
    picture = read_picture(tmp_path / "print.jpg")
    assert np.abs(picture.frames[0].astype(int) - [255, 0, 255]).max() <= 2
    assert picture.lost == ["CMYK converted to RGB without a colour profile"]


def animation(count: int = 3, size: tuple[int, int] = (24, 16)) -> list[Image.Image]:
    return [Image.fromarray(noise(*size, seed=i)) for i in range(count)]


def frame_info(path: Path) -> tuple[int, list[float], int | None, str | None]:
    with Image.open(path) as im:
        durations = []
        for index in range(im.n_frames):
            im.seek(index)
            im.load()  # WebP sets the duration when the frame is decoded
            durations.append(im.info["duration"])
        return im.n_frames, durations, im.info.get("loop"), im.format


@pytest.mark.parametrize(
    ("name", "save", "loop"),
    [
        ("palette.gif", {"optimize": False}, 0),
        ("once.gif", {}, None),  # no loop block: the output plays once too
        ("anim.webp", {"lossless": True}, 2),
        ("anim.png", {}, 3),  # APNG
    ],
)
def test_animations_keep_frames_durations_and_loop(
    tiny_model: Path, tmp_path: Path, name: str, save: dict[str, object], loop: int | None
) -> None:
    frames = animation()
    if name.endswith(".gif"):
        frames = [f.convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
    extra = {} if loop is None else {"loop": loop}
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], duration=[100, 200, 300],
                   **extra, **save)
    assert frame_info(tmp_path / name)[:3] == (3, [100, 200, 300], loop)

    report = translate(tmp_path / name, tmp_path / f"out_{name}", tiny_model, QUIET)

    assert report.frames == 3
    count, durations, out_loop, fmt = frame_info(tmp_path / f"out_{name}")
    assert (count, durations, out_loop) == (3, [100, 200, 300], loop)
    assert fmt == frame_info(tmp_path / name)[3]


@pytest.mark.parametrize(
    ("name", "animated", "message"),
    [
        ("o.jpg", True, r"cannot write an animation \(3 frames\) as '\.jpg': .*o\.jpg \(use \.gif, \.webp or \.png\)$"),
        ("o.mp4", False, r"cannot write a still image as .\.mp4.: .*o\.mp4 \(use .*an animation can be written as"),
        ("o.avi", True, r"cannot write an image as '\.avi'"),
    ],
)
def test_suffixes_that_cannot_hold_the_picture_are_refused(
    tiny_model: Path, tmp_path: Path, name: str, animated: bool, message: str
) -> None:
    frames = animation(3 if animated else 1)
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], duration=100)
    with pytest.raises(MediaError, match=message) as error:
        translate(tmp_path / "a.webp", tmp_path / name, tiny_model, QUIET)
    assert "\n" not in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.webp"]


def broken_folder(src: Path) -> None:
    """a.jpg, b.jpg (cut in half), c.gif (animated), d.png, e.png (too small for the model)."""
    src.mkdir()
    Image.fromarray(noise(16, 16, 1)).save(src / "a.jpg")
    buffer = io.BytesIO()
    Image.fromarray(noise(64, 64, 2)).save(buffer, "JPEG")
    (src / "b.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    frames = [f.convert("P") for f in animation(2, (16, 16))]
    frames[0].save(src / "c.gif", save_all=True, append_images=frames[1:], duration=[50, 70], loop=0)
    Image.fromarray(noise(8, 16, 3)).save(src / "d.png")
    Image.fromarray(noise(2, 2, 4)).save(src / "e.png")


def test_folder_writes_every_good_image_and_lists_the_broken_one(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    broken_folder(src := tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(ImagesFailed) as error:
        translate(src, out, tiny_model, QUIET)
    assert str(error.value) == (
        f"2 of 5 images could not be translated (listed above); the other 3 were written to {out}"
    )
    assert error.value.report.frames == 1 + 2 + 1  # c.gif has two frames
    failures = [w for w in error.value.report.warnings if "b.jpg" in w or "e.png" in w]
    assert len(failures) == 2 and "truncated" in failures[0]
    assert failures[1].startswith(f"{src / 'e.png'}: frames of 2x2 are too small")  # named, though the error isn't
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "c.gif", "d.png"]  # no partial files
    assert frame_info(out / "c.gif")[:3] == (2, [50, 70], 0)

    code = main(["-q", "translate", str(src), str(tmp_path / "cli"), "--model", str(tiny_model), "--no-preview"])
    captured = capsys.readouterr()
    assert code == 2
    assert f"wrote {tmp_path / 'cli'} (4 frames" in captured.out
    assert [m for m in caplog.messages if "b.jpg" in m or "e.png" in m] == failures  # the CLI logs each, one line
    assert captured.err.strip().splitlines()[-1].startswith("cyclestream: error: 2 of 5 images could not")


def test_output_folder_inside_the_input_is_never_read(tiny_model: Path, tmp_path: Path) -> None:
    src = tmp_path / "photos"
    src.mkdir()
    for i, name in enumerate(["a.png", "b.jpg"]):
        Image.fromarray(noise(8, 8, i)).save(src / name)
    Image.fromarray(noise(8, 8)).save(src / ".a.partial-99999.png")  # a hidden leftover is not an image to do
    for _ in range(2):  # the rerun finds the first run's outputs inside the input folder
        report = translate(src, src / "translated", tiny_model, QUIET)
        assert report.frames == 2
        assert sorted(p.name for p in (src / "translated").iterdir()) == ["a.png", "b.jpg"]


def test_ctrl_c_in_a_folder_says_what_was_written(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import cyclestream.engine.jobs.translate as translate_module

    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    for i in range(4):
        Image.fromarray(noise(8, 8, i)).save(src / f"{i}.png")
    real_write = translate_module.write_picture
    calls = []

    def write_then_interrupt(picture: object, path: Path) -> list[str]:
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(picture, path)  # type: ignore[arg-type]

    monkeypatch.setattr(translate_module, "write_picture", write_then_interrupt)
    code = main(["-q", "translate", str(src), str(out), "--model", str(tiny_model), "--no-preview"])
    err = capsys.readouterr().err
    assert code == 130
    assert f"interrupted; wrote 2 of 4 images to {out} before stopping" in err
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png"]


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns about the damaged TIFF tags it skips
@pytest.mark.parametrize(("suffix", "animated"), [(".png", False), (".jpg", False), (".tif", False),
                                                  (".gif", True), (".webp", True), (".png", True)])
def test_damaged_files_give_one_line_never_a_traceback(tmp_path: Path, suffix: str, animated: bool) -> None:
    import random

    frames = animation(3 if animated else 1, (48, 32))
    buffer = io.BytesIO()
    frames[0].save(buffer, Image.registered_extensions()[suffix], save_all=animated, append_images=frames[1:])
    rng = random.Random(0)
    for trial in range(60):
        data = bytearray(buffer.getvalue())
        if trial % 2:
            data = data[: rng.randrange(len(data))]
        else:
            for _ in range(rng.randrange(1, 10)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        (path := tmp_path / f"{trial}{suffix}").write_bytes(bytes(data))
        try:
            read_picture(path)
        except MediaError as e:
            assert str(e).startswith(f"cannot read image {path}: ") and "\n" not in str(e)


def test_transparency_goes_back_unchanged_where_the_format_holds_it(tiny_model: Path, tmp_path: Path) -> None:
    rgba = np.dstack([noise(24, 16), np.zeros((16, 24), np.uint8)])
    rgba[4:12, 6:18, 3] = 255  # an opaque block on a transparent background
    rgba[0, 0, 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "sticker.png")

    assert translate(tmp_path / "sticker.png", tmp_path / "out.png", tiny_model, QUIET).warnings == []
    with Image.open(tmp_path / "out.png") as out:
        assert out.mode == "RGBA"
        assert np.array_equal(np.asarray(out)[..., 3], rgba[..., 3])
    translate(tmp_path / "sticker.png", tmp_path / "flat.bmp", tiny_model, QUIET)  # what the model saw: on white
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png"))[..., :3], load_rgb(tmp_path / "flat.bmp"))

    report = translate(tmp_path / "sticker.png", tmp_path / "out.jpg", tiny_model, QUIET)
    assert report.warnings == ["transparency not kept (JPEG cannot hold it; flattened onto white): sticker.png"]


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_animations_keep_their_transparent_pixels(tiny_model: Path, tmp_path: Path, suffix: str) -> None:
    frames = []
    for i in range(3):
        rgba = np.dstack([noise(24, 16, i), np.full((16, 24), 255, np.uint8)])
        rgba[:, : 4 + 4 * i, 3] = 0  # a growing transparent band on the left
        frames.append(Image.fromarray(rgba, "RGBA"))
    extra = {"disposal": 2} if suffix == ".gif" else {"lossless": True} if suffix == ".webp" else {}
    frames[0].save(tmp_path / f"a{suffix}", save_all=True, append_images=frames[1:], duration=80, loop=0, **extra)

    translate(tmp_path / f"a{suffix}", tmp_path / f"out{suffix}", tiny_model, QUIET)

    with Image.open(tmp_path / f"out{suffix}") as out:
        assert out.n_frames == 3
        for i in range(3):
            out.seek(i)
            alpha = np.asarray(out.convert("RGBA"))[..., 3]
            assert (alpha[:, : 4 + 4 * i] == 0).all() and (alpha[:, 4 + 4 * i :] == 255).all()


def test_temporal_steadies_an_animation_as_it_does_a_video(tiny_model: Path, tmp_path: Path) -> None:
    """A still scene with sensor noise, as an APNG: `--temporal on` carries the stabiliser across the
    frames (the output flickers less than each frame translated alone); `off` is every frame on its own."""
    rng = np.random.default_rng(0)
    scene = np.asarray(Image.fromarray(noise(32, 24, 1)).resize((32, 24))).astype(np.int16)
    frames = [Image.fromarray(np.clip(scene + rng.normal(0, 6, scene.shape), 0, 255).astype(np.uint8))
              for _ in range(8)]
    frames[0].save(tmp_path / "still.png", save_all=True, append_images=frames[1:], duration=40)

    def flicker(temporal: str) -> float:
        out = tmp_path / f"{temporal}.png"
        translate(tmp_path / "still.png", out, tiny_model, TranslateOptions(progress=False, temporal=temporal))
        translated = read_picture(out).frames
        assert len(translated) == 8
        steps = [np.abs(a.astype(int) - b.astype(int)).mean() for a, b in itertools.pairwise(translated)]
        return float(np.mean(steps))

    assert flicker("on") < 0.7 * flicker("off")


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_an_animation_written_as_video_keeps_every_frame_and_its_timing(
    tiny_model: Path, tmp_path: Path, suffix: str
) -> None:
    from tests.engine.media_checks import decoded_frames, video_times

    frames = animation(4, size=(32, 24))
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=[100, 200, 50, 150], loop=0)
    out = tmp_path / f"a{suffix}"

    from cyclestream.engine.media.encode_options import EncodeOptions

    near_lossless = EncodeOptions(crf=0, pix_fmt="yuv444p")  # the noise pictures would not survive 4:2:0
    report = translate(tmp_path / "a.gif", out, tiny_model,
                       TranslateOptions(encode=near_lossless, progress=False, temporal="off"))

    assert report.frames == 4
    assert video_times(out) == pytest.approx([0.0, 0.1, 0.3, 0.35], abs=0.002)  # each frame as long as it was
    assert any("loop count not kept" in w for w in report.warnings)
    with av.open(str(out)) as c:
        video = c.streams.video[0]
        assert (video.codec_context.width, video.codec_context.height) == (32, 24)
        assert video.codec_context.color_primaries == 1  # BT.709, the primaries of sRGB pictures
    # the same pixels as the animation translated to an animation, within codec noise
    translate(tmp_path / "a.gif", tmp_path / "b.png", tiny_model, TranslateOptions(progress=False, temporal="off"))
    expected = read_picture(tmp_path / "b.png").frames
    for got, want in zip(decoded_frames(out), expected, strict=True):
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 2
