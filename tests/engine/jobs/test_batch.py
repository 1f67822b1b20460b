"""`cyclestream batch` without Ray: finding items, skip records, a folder in-process, failures, errors, Ctrl-C."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclestream.cli import main
from cyclestream.engine.errors import CycleStreamError, MediaError, OutputError
from cyclestream.engine.jobs import batch_worker
from cyclestream.engine.jobs.batch import BatchFailed, BatchOptions, run_batch
from cyclestream.engine.jobs.batch_plan import find_items, record_path
from cyclestream.engine.jobs.translate import TranslateOptions
from cyclestream.engine.media.encode_options import EncodeOptions
from tests.engine.jobs.test_batch_clips import write_camera_clip
from tests.engine.media_checks import audio_packets, stream_summary, video_times

FAST = EncodeOptions(preset="ultrafast")
QUIET = BatchOptions(translate=TranslateOptions(encode=FAST, progress=False), progress=False)


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _picture(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(path)
    return path


# ----------------------------------------------------------------------------- finding items


def test_folders_are_searched_recursively_for_videos_and_images(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    for name in ("a.mp4", "sub/b.MKV", "sub/deeper/c.png", "notes.txt", ".hidden.mp4", ".cache/d.mp4", "x.srt"):
        _touch(lib / name)
    out = lib / "out"  # an output folder inside the input: never read as input
    _touch(out / "a.mp4")
    items = find_items([lib], out)
    assert sorted((i.rel, i.kind) for i in items) == [("a.mp4", "video"), ("sub/b.MKV", "video"),
                                                      ("sub/deeper/c.png", "image")]
    assert all(i.output == out / i.rel for i in items)
    assert {i.output.suffix for i in find_items([lib], out, container="mkv") if i.kind == "video"} == {".mkv"}


def test_manifest_lists_paths_relative_to_itself(tmp_path: Path) -> None:
    _touch(tmp_path / "clips" / "a.mp4")
    _touch(tmp_path / "clips" / "more" / "b.mov")
    elsewhere = _touch(tmp_path.parent / f"{tmp_path.name}-other.mp4")
    manifest = tmp_path / "list.txt"
    manifest.write_text(f"# my clips\n\nclips/a.mp4\n  clips/more  \n{elsewhere}\n")
    items = find_items([manifest], tmp_path / "out")
    assert sorted(i.rel for i in items) == ["clips/a.mp4", "clips/more/b.mov", elsewhere.name]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a.mp4\nmissing.mp4\n", "list.txt:2: not found: missing.mp4"),
        (b"a.mp4\n\xff\xfe bad\n", "list.txt:2: not UTF-8 text"),
    ],
)
def test_a_bad_manifest_line_is_one_clear_error(tmp_path: Path, content: bytes, message: str) -> None:
    _touch(tmp_path / "a.mp4")
    (tmp_path / "list.txt").write_bytes(content)
    with pytest.raises(MediaError, match=message):
        find_items([tmp_path / "list.txt"], tmp_path / "out")


def test_two_inputs_with_one_output_and_output_equal_to_input_are_refused(tmp_path: Path) -> None:
    a, b = _touch(tmp_path / "x" / "clip.mp4"), _touch(tmp_path / "y" / "clip.mp4")
    with pytest.raises(OutputError, match="would both be written"):
        find_items([a, b], tmp_path / "out")
    with pytest.raises(OutputError, match="it is the input"):
        find_items([tmp_path / "x"], tmp_path / "x")
    with pytest.raises(MediaError, match="input not found"):
        find_items([tmp_path / "nope.mp4"], tmp_path / "out")


# ----------------------------------------------------------------------------- a folder, in-process


def _library(root: Path) -> dict[str, Path]:
    clips = {
        "cfr.mp4": {"seconds": 2.0},
        "vfr.mkv": {"seconds": 2.0, "vfr": True},
        "nested/deeper/clip.mp4": {"seconds": 1.0, "audio": False},
    }
    made = {}
    for rel, kwargs in clips.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_camera_clip(path, **kwargs)
        made[rel] = path
    made["nested/pic.png"] = _picture(root / "nested" / "pic.png")
    return made


def check_library_outputs(made: dict[str, Path], out: Path) -> None:
    """Every output complete: frames, each timestamp, audio bytes, size; no temporary file left."""
    for rel, src in made.items():
        dst = out / rel
        assert dst.is_file(), rel
        if src.suffix == ".png":
            assert Image.open(dst).size == Image.open(src).size
            continue
        assert video_times(dst) == pytest.approx(video_times(src), abs=0.002), rel
        assert audio_packets(dst) == audio_packets(src), rel
        before, after = stream_summary(src), stream_summary(dst)
        assert (after["width"], after["height"], after["rate"]) == (before["width"], before["height"], before["rate"])
        assert json.loads(record_path(out, rel).read_text())["frames"] == len(video_times(src))
    assert not list(out.rglob("*partial*"))


@pytest.mark.slow
def test_folder_in_process_then_rerun_skips_finished_work(tiny_model: Path, tmp_path: Path) -> None:
    made = _library(tmp_path / "lib")
    out = tmp_path / "out"
    report = run_batch([tmp_path / "lib"], out, tiny_model, QUIET)
    assert [o.status for o in report.outcomes] == ["done"] * 4 and report.where == "in-process"
    assert report.frames == 48 + 32 + 24 + 1
    check_library_outputs(made, out)

    again = run_batch([tmp_path / "lib"], out, tiny_model, QUIET)  # same model, same options: nothing to do
    assert [o.status for o in again.outcomes] == ["skipped"] * 4 and again.where == "nothing to run"

    record_path(out, "cfr.mp4").unlink()  # an output without its record is redone
    _touch(out / "vfr.mkv", b"damaged")  # an output that is not what its record says is redone
    third = run_batch([tmp_path / "lib"], out, tiny_model, QUIET)
    assert sorted(o.item.rel for o in third.of("done")) == ["cfr.mp4", "vfr.mkv"]
    check_library_outputs(made, out)

    temporal = "off" if QUIET.translate.temporal != "off" else "blend"  # another setting that changes pixels
    other = dataclasses.replace(QUIET, translate=dataclasses.replace(QUIET.translate, temporal=temporal))
    fourth = run_batch([tmp_path / "lib"], out, tiny_model, other)  # options that change pixels: all redone
    assert [o.status for o in fourth.outcomes] == ["done"] * 4


@pytest.mark.slow
def test_a_bad_item_fails_alone_with_its_reason(tiny_model: Path, tmp_path: Path) -> None:
    write_camera_clip(tmp_path / "lib" / "good.mp4", seconds=1.0)
    _touch(tmp_path / "lib" / "broken.mp4", b"not a video at all")
    with pytest.raises(BatchFailed, match="1 of 2 items failed") as caught:
        run_batch([tmp_path / "lib"], tmp_path / "out", tiny_model, QUIET)
    report = caught.value.report
    (failed,) = report.of("failed")
    assert failed.item.rel == "broken.mp4" and "cannot open" in failed.reason
    assert [o.item.rel for o in report.of("done")] == ["good.mp4"]
    assert (tmp_path / "out" / "good.mp4").is_file() and not (tmp_path / "out" / "broken.mp4").exists()


@pytest.mark.slow
def test_ctrl_c_mid_item_leaves_finished_items_and_no_partial_output(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("a.mp4", "b.mp4"):
        write_camera_clip(tmp_path / "lib" / name, seconds=1.5)
    real = batch_worker.translate_video

    def interrupt_b(*args: object, **kwargs: object) -> object:
        if "b.mp4" in str(args[0]):
            source = kwargs["source"]
            original = source.frames

            def frames() -> object:
                for i, frame in enumerate(original()):
                    if i == 10:
                        raise KeyboardInterrupt  # Ctrl-C arrives while b.mp4 is half written
                    yield frame

            source.frames = frames
        return real(*args, **kwargs)

    monkeypatch.setattr(batch_worker, "translate_video", interrupt_b)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt) as caught:
        run_batch([tmp_path / "lib"], out, tiny_model, QUIET)
    assert "1 item finished before stopping" in " ".join(caught.value.__notes__)
    assert (out / "a.mp4").is_file() and record_path(out, "a.mp4").is_file()
    assert not (out / "b.mp4").exists() and not list(out.rglob("*partial*"))


# ----------------------------------------------------------------------------- the command line


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", "batch", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_errors_are_one_line(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = _touch(tmp_path / "a.mp4")
    out = str(tmp_path / "out")
    cases = [
        ((str(tmp_path / "missing.mp4"), "--out", out), "input not found"),
        ((str(clip), "--out", out, "--workers", "2"), "need --ray"),
        ((str(clip), "--out", out, "--model", str(tmp_path / "none.safetensors")), "model file not found"),
        ((str(clip), "--out", out, "--model", str(tiny_model), "--ray", "not an address"), "expected local, auto"),
        ((str(clip), "--out", out, "--model", str(tiny_model), "--ray", "127.0.0.1:9"), "cannot reach 127.0.0.1:9"),
    ]
    for args, message in cases:
        code, _, err = _cli(capsys, *args)
        assert code == 2 and message in err and err.count("\n") == 1, (args, err)
    monkeypatch.setitem(sys.modules, "ray", None)  # Ray not installed
    code, _, err = _cli(capsys, str(clip), "--out", out, "--model", str(tiny_model), "--ray", "local")
    assert code == 2 and "pip install 'cyclestream[ray]'" in err and err.count("\n") == 1


@pytest.mark.slow
def test_cli_summary_and_exit_code(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    write_camera_clip(tmp_path / "lib" / "good.mp4", seconds=1.0)
    _touch(tmp_path / "lib" / "bad.mkv", b"garbage")
    args = (str(tmp_path / "lib"), "--out", str(tmp_path / "out"), "--model", str(tiny_model), "--preset", "ultrafast")
    code, out, err = _cli(capsys, *args)
    assert code == 2
    assert "2 items: 1 done, 0 skipped" in out and "1 failed" in out
    assert "failed: bad.mkv: cannot open" in caplog.text and "1 of 2 items failed" in err
    (tmp_path / "lib" / "bad.mkv").unlink()
    code, out, _ = _cli(capsys, *args)
    assert code == 0 and "1 item: 0 done, 1 skipped" in out


def test_library_errors_are_cyclestream_errors() -> None:
    assert issubclass(BatchFailed, CycleStreamError)


def test_every_choice_that_changes_the_pixels_is_in_the_settings_digest() -> None:
    """A rerun with another --target, z, norm statistics, dropout or upsampling translates again instead
    of keeping the outputs of the first choice as done."""
    from cyclestream.engine.backends.options import RunOptions
    from cyclestream.engine.jobs.batch_plan import settings_digest

    base = TranslateOptions()
    digest = settings_digest("m", base)
    for change in ({"target": "noto"}, {"z_seed": 3}, {"z_walk": 2.0}, {"norm_stats": "running"},
                   {"dropout": "on"}, {"upsample": "align"}):  # fmt: skip
        other = dataclasses.replace(base, run=dataclasses.replace(RunOptions(), **change))
        assert settings_digest("m", other) != digest, change
    same = dataclasses.replace(base, run=dataclasses.replace(RunOptions(), backend="onnxruntime"))
    assert settings_digest("m", same) == digest  # float rounding at most: not a new output
