"""Reading outputs with Debian's ``ffprobe``, independently of the PyAV the code under test uses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def ffprobe_streams(path: Path) -> list[dict[str, Any]]:
    """Every stream of ``path`` as ``ffprobe -show_streams`` describes it."""
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return list(json.loads(out)["streams"])
