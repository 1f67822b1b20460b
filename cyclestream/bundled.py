"""The files that ship inside the package: the default model, the real-time student, the StarGAN, the demo
clip."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

ASSETS = Path(str(files("cyclestream") / "assets"))
DEFAULT_MODEL = ASSETS / "default_model.safetensors"
STUDENT_MODEL = ASSETS / "student_model.safetensors"  # distilled from DEFAULT_MODEL: cyclestream distill
STARGAN_MODEL = ASSETS / "stargan_emoji.safetensors"  # one generator to OpenMoji, Twemoji or Noto: --target
DEMO_CLIP = ASSETS / "demo.mp4"
SERVE_PAGE = ASSETS / "serve" / "index.html"  # the page `cyclestream serve` serves at /
