"""cyclestream: real-time image-to-image translation of video files, images and live streams.

    import cyclestream
    translator = cyclestream.load()                       # the bundled model
    out = translator(frame)                               # a numpy / PIL / torch frame back
    cyclestream.translate_file("in.mp4", "out.mp4")       # audio, subtitles, metadata kept

Importing this package is cheap: the API and the option classes are imported when first used, and
no backend library (TensorRT, ONNX Runtime, Triton, OpenVINO) is imported until a backend is chosen.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "load": "cyclestream.api",
    "translate_file": "cyclestream.api",
    "open_stream": "cyclestream.api",
    "Translator": "cyclestream.engine.jobs.frames",
    "LiveFrames": "cyclestream.engine.jobs.live_frames",
    "TranslateReport": "cyclestream.engine.jobs.translate",
    "TranslateOptions": "cyclestream.engine.jobs.options",
    "TranslatorOptions": "cyclestream.engine.jobs.options",
    "StreamOptions": "cyclestream.engine.jobs.options",
    "RunOptions": "cyclestream.engine.backends.options",
    "EncodeOptions": "cyclestream.engine.media.encode_options",
    "OptionError": "cyclestream.engine.options",
    "CycleStreamError": "cyclestream.engine.errors",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'cyclestream' has no attribute {name!r}")
