"""HDR10 static metadata is carried: a PQ HEVC from Debian's ``ffmpeg``/x265 with a mastering display and a
content light level came out with neither.  Encoders that write them (x265, SVT-AV1) are given them; one that
cannot (x264) is named in one line.  Outputs are read back with ``ffprobe``'s frame side data."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import pytest

from cyclestream.engine.jobs.translate import TranslateOptions, translate
from cyclestream.engine.media.encode_options import EncodeOptions

pytestmark = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="needs Debian's ffmpeg and ffprobe (tests/system_packages.sh)",
)
# A P3-D65 mastering display of 1000 cd/m² (x265's units: 0.00002 for x/y, 0.0001 cd/m²), MaxCLL 1000, MaxFALL 400
MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
WANT = {"red_x": Fraction(34000, 50000), "green_y": Fraction(34500, 50000), "white_point_x": Fraction(15635, 50000),
        "max_luminance": Fraction(1000), "min_luminance": Fraction(50, 10000)}  # fmt: skip


@pytest.fixture(scope="module")
def hdr_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hdr") / "hdr10.mkv"
    try:
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-t", "0.4",
                        "-pix_fmt", "yuv420p10le", "-c:v", "libx265", "-x265-params",
                        f"log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:master-display="
                        f"{MASTER}:max-cll=1000,400", "-color_primaries", "bt2020", "-color_trc", "smpte2084",
                        "-colorspace", "bt2020nc", str(path)], check=True, capture_output=True)  # fmt: skip
    except subprocess.CalledProcessError as e:
        pytest.skip(f"Debian's ffmpeg could not write HDR10 HEVC: {e.stderr.decode()[-200:]}")
    return path


def _side_data(path: Path) -> dict[str, dict]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_frames", "-read_intervals", "%+#1", "-show_entries",
                          "frame=side_data_list", "-of", "json", str(path)], check=True, capture_output=True,
                         text=True).stdout  # fmt: skip
    items = json.loads(out)["frames"][0].get("side_data_list", [])
    return {item["side_data_type"]: item for item in items}


def _close(value: str, want: Fraction) -> bool:
    return abs(float(Fraction(value)) - float(want)) <= 1e-3 * max(1.0, float(want))


@pytest.mark.parametrize("codec", ["libx265", "libsvtav1"])
def test_mastering_display_and_light_level_are_carried(
    hdr_clip: Path, tiny_model: Path, tmp_path: Path, codec: str
) -> None:
    assert "Mastering display metadata" in _side_data(hdr_clip)  # the producer wrote it
    out = tmp_path / f"out_{codec}.mkv"
    encode = EncodeOptions(codec=codec, pix_fmt="yuv420p10le", crf=None, preset=None)
    report = translate(hdr_clip, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False,
                                                                   encode=encode))  # fmt: skip
    side = _side_data(out)
    display, light = side["Mastering display metadata"], side["Content light level metadata"]
    for key, want in WANT.items():
        assert _close(display[key], want), (key, display[key])
    assert (light["max_content"], light["max_average"]) == (1000, 400)
    assert not any("HDR metadata" in w for w in report.warnings)


def test_an_encoder_that_cannot_write_it_is_named(hdr_clip: Path, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    report = translate(hdr_clip, out, tiny_model, TranslateOptions(temporal="off", progress=False, preview=False))
    (note,) = [w for w in report.warnings if "HDR metadata" in w]
    assert str(hdr_clip) in note and "libx264 cannot write it" in note and "MaxCLL 1000" in note
    assert "Mastering display metadata" not in _side_data(out)
