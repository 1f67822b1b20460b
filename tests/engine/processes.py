"""A `cyclestream translate` in its own process, caught while it writes (for signal tests)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path


def translate_until_writing(src: Path, out: Path, model: Path) -> subprocess.Popen[str]:
    """Start translating ``src`` into ``out`` and return once its temporary file exists and some
    frames have gone into it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cyclestream", "-q", "translate", str(src), str(out), "--model", str(model)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    partial = f".{out.stem}.partial-*"
    deadline = time.monotonic() + 60
    while not list(out.parent.glob(partial)) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert list(out.parent.glob(partial)), "the job never started writing"
    time.sleep(0.3)  # some frames have been written to the temporary file
    return proc
