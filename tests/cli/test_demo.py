"""The README's main job: the bundled clip through the bundled model (scaled down to stay quick)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cyclestream.cli import DEFAULT_MODEL, DEMO_CLIP, main
from cyclestream.engine.checkpoint import load_model
from tests.engine.media_checks import audio_packets, stream_summary, video_times


def test_bundled_assets_are_a_model_and_a_clip_with_audio() -> None:
    model = load_model(DEFAULT_MODEL)
    assert model.format == "cyclestream" and model.spec.kind == "resnet"
    summary = stream_summary(DEMO_CLIP)
    assert summary["codec"] == "h264" and summary["audio"] == 1


@pytest.mark.slow
def test_demo_command_writes_video_and_preview(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo.mp4"
    assert main(["-q", "demo", "--output", str(out), "--size", "64x64"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "preview" in printed
    assert len(video_times(out)) == len(video_times(DEMO_CLIP))
    assert audio_packets(out) == audio_packets(DEMO_CLIP)
    assert (tmp_path / "demo.preview.png").stat().st_size > 1000


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    test_command = readme.split("Run the tests:", 1)[1].split("```bash\n", 1)[1].split("\n", 1)[0]
    assert (root / ".ci" / "run").read_text().rstrip().splitlines()[-1] == test_command


def test_demo_with_a_target_uses_the_bundled_stargan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cyclestream.bundled import STARGAN_MODEL
    from cyclestream.engine.conditioning import domain_names

    model = load_model(STARGAN_MODEL)
    assert model.spec.kind == "stargan" and sorted(domain_names(model)) == ["noto", "openmoji", "twemoji"]
    out = tmp_path / "noto.mp4"
    assert main(["-q", "demo", "--target", "noto", "--output", str(out), "--size", "64x64", "--temporal", "off",
                 "--no-preview"]) == 0  # fmt: skip
    assert "stargan_emoji.safetensors" in capsys.readouterr().out
    assert len(video_times(out)) == len(video_times(DEMO_CLIP)) and audio_packets(out) == audio_packets(DEMO_CLIP)
