"""Numbers out of range are refused when the command line is read, side outputs before the work starts."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cyclestream.cli import build_parser
from tests.cli.test_bad_input import only_file_is, run_cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["translate", "a", "b", "--crf", "99"], "argument --crf: must be between 0 and 63, got 99"),
        (["translate", "a", "b", "--crf", "-1"], "argument --crf: must be between 0 and 63, got -1"),
        (["translate", "a", "b", "--crf", "high"], "argument --crf: invalid integer value: 'high'"),
        (["demo", "--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["translate", "a", "b", "--size", "0x10"], "argument --size: unsupported size 0x10"),
        (["stream", "--source", "s", "--duration", "0"], "argument --duration: must be a number greater than 0, got 0"),
        (["stream", "--source", "s", "--duration", "nan"], "argument --duration: must be a number greater than 0"),
        (["stream", "--source", "s", "--fps", "-5"], "argument --fps: must be a number greater than 0, got -5"),
        (["stream", "--source", "s", "--fps", "inf"], "argument --fps: must be a number greater than 0, got inf"),
        (["stream", "--source", "s", "--max-latency", "0"], "argument --max-latency: must be a number greater than 0"),
        (["stream", "--source", "s", "--reconnect-for", "-1"], "argument --reconnect-for: must be at least 0, got"),
        (["stream", "--source", "s", "--read-timeout", "0"], "argument --read-timeout: must be a number greater than"),
        (["stream", "--source", "s", "--crf", "64"], "argument --crf: must be between 0 and 63, got 64"),
        (["bench", "pipeline", "--input", "a", "--frames", "0"], "argument --frames: must be at least 1, got 0"),
        (["bench", "model", "--min-time", "-1"], "argument --min-time: must be a number greater than 0, got -1"),
        (["bench", "model", "--repeats", "0"], "argument --repeats: must be at least 1, got 0"),
        (["data", "demo-clip", "--crf", "52"], "argument --crf: must be between 0 and 51, got 52"),
    ],
)
def test_out_of_range_numbers_are_refused_when_parsing(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err.splitlines()[-1]


@pytest.mark.parametrize(
    ("argv", "attribute", "value"),
    [
        (["translate", "a", "b", "--crf", "63"], "crf", 63),
        (["translate", "a", "b", "--crf", "0"], "crf", 0),
        (["stream", "--source", "s", "--reconnect-for", "0"], "reconnect_for", 0),
        (["stream", "--source", "s", "--duration", "0.5"], "duration", 0.5),
        (["bench", "pipeline", "--input", "a", "--frames", "1"], "frames", 1),
    ],
)
def test_edges_of_the_ranges_are_accepted(argv: list[str], attribute: str, value: float) -> None:
    assert getattr(build_parser().parse_args(argv), attribute) == value


def test_crf_beyond_the_encoders_range_is_refused_when_it_opens(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    code, err = run_cli(["translate", str(src), str(tmp_path / "o.mp4"), "--model", str(tiny_model), "--crf", "55"],
                        capsys)
    assert code == 2
    assert err.splitlines()[-1] == "cyclestream: error: --crf for libx264 must be between 0 and 51, got 55"
    assert only_file_is(tmp_path, "in.mp4")


def test_crf_within_vp9s_range_is_used(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    out = tmp_path / "o.webm"
    code, err = run_cli(["translate", str(src), str(out), "--model", str(tiny_model), "--crf", "55",
                         "--codec", "libvpx-vp9", "--no-preview"], capsys)
    assert code == 0, err
    assert out.stat().st_size > 0


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    (path := tmp_path / "notes.txt").write_text("a file, not a folder")
    return path


def test_preview_under_a_file_is_refused_before_the_work(
    a_file: Path, make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    preview = a_file / "p.png"
    code, err = run_cli(
        ["translate", str(src), str(tmp_path / "o.mp4"), "--model", str(tiny_model), "--preview", str(preview)], capsys
    )
    assert code == 2
    assert err == f"cyclestream: error: --preview: cannot write {preview}: {a_file} is a file, not a folder"
    assert only_file_is(tmp_path, "in.mp4", "notes.txt")  # the video was not translated first


def test_preview_that_is_the_input_is_refused(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = make_clip("in.mp4", frames=3)
    before = src.read_bytes()
    code, err = run_cli(
        ["translate", str(src), str(tmp_path / "o.mp4"), "--model", str(tiny_model), "--preview", str(src)], capsys
    )
    assert code == 2
    assert err == f"cyclestream: error: refusing to write {src}: it is the input {src} (choose another output path)"
    assert only_file_is(tmp_path, "in.mp4") and src.read_bytes() == before


def test_preview_that_is_a_folder_is_refused_before_the_work(
    make_clip: Callable[..., Path], tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder := tmp_path / "previews").mkdir()
    code, err = run_cli(["demo", "--output", str(tmp_path / "o.mp4"), "--model", str(tiny_model),
                         "--preview", str(folder)], capsys)
    assert code == 2 and err == f"cyclestream: error: --preview: cannot write {folder}: it is a folder"
    assert only_file_is(tmp_path, "previews") and list(folder.iterdir()) == []


def test_stats_json_under_a_file_is_refused_before_the_stream_starts(
    a_file: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stats = a_file / "stats.json"
    code, err = run_cli(["stream", "--source", "lavfi:testsrc2=size=64x48:rate=10", "--model", str(tiny_model),
                         "--duration", "1", "--stats-json", str(stats)], capsys)
    assert code == 2
    assert err == f"cyclestream: error: --stats-json: cannot write {stats}: {a_file} is a file, not a folder"


def test_missing_folders_of_a_side_output_are_fine_and_not_created(
    a_file: Path, tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cyclestream.engine.paths import check_writable

    check_writable(tmp_path / "new" / "deeper" / "p.png", "--preview")
    assert only_file_is(tmp_path, "notes.txt")  # nothing created, the probe file removed


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_preview_in_a_read_only_folder_is_refused(tmp_path: Path) -> None:
    from cyclestream.engine.errors import OutputError
    from cyclestream.engine.paths import check_writable

    (locked := tmp_path / "locked").mkdir(mode=0o500)
    try:
        with pytest.raises(OutputError, match=r"^--preview: cannot write .*p\.png: Permission denied$"):
            check_writable(locked / "p.png", "--preview")
    finally:
        locked.chmod(0o700)


def test_a_reader_that_leaves_the_pipe_early_gets_no_error_line() -> None:
    """``cyclestream info MODEL | head -1``: the pipe closes before the output; exit 141 (SIGPIPE), no message."""
    import subprocess
    import sys

    from cyclestream.bundled import DEFAULT_MODEL

    proc = subprocess.Popen([sys.executable, "-m", "cyclestream", "info", "--json", str(DEFAULT_MODEL)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the model is even loaded
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141 and err == ""
