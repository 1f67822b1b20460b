"""The Python API: translate frames in memory, files, and live streams from your own code.

    import cyclestream
    translator = cyclestream.load()                        # the bundled model; backend and device: auto
    out = translator(frame)                                # numpy HxWx3 uint8 / PIL image / torch tensor
    cyclestream.translate_file("in.mp4", "out.mp4", crf=20)   # audio, subtitles, metadata kept

Every keyword option is a field of an options dataclass (``RunOptions``: backend, device, precision,
batch_size, size, kernels; ``EncodeOptions``: codec, crf, preset, pix_fmt; ``TranslateOptions``: preview,
temporal, progress; ``StreamOptions``: fps, realtime, max_latency, reconnect_for, read_timeout, duration, …),
given flat, and checked when given: a bad value raises ``OptionError`` naming the field.  The defaults
are the command line's.  ``docs/api.md`` has runnable examples.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cyclestream.bundled import DEFAULT_MODEL

if TYPE_CHECKING:
    from cyclestream.engine.jobs.frames import Translator
    from cyclestream.engine.jobs.live_frames import LiveFrames
    from cyclestream.engine.jobs.translate import TranslateReport

PathLike = str | os.PathLike[str]


def _model_path(model: PathLike | None) -> Path:
    return DEFAULT_MODEL if model is None else Path(model)


def load(model: PathLike | None = None, **options: Any) -> Translator:
    """A :class:`~cyclestream.engine.jobs.frames.Translator` for ``model`` (an official ``*_net_G.pth`` or a
    cyclestream ``.safetensors``; the bundled model when None).  ``options``: backend, device, precision,
    batch_size, kernels, temporal (for ``Translator.stream``)."""
    from cyclestream.engine.checkpoint import load_model
    from cyclestream.engine.jobs.frames import Translator
    from cyclestream.engine.jobs.options import TranslatorOptions
    from cyclestream.engine.options import from_keywords

    settings = from_keywords(TranslatorOptions, options)  # checked before the model is read
    return Translator(load_model(_model_path(model)), options=settings)


def translate_file(source: PathLike, output: PathLike, model: PathLike | None = None,
                   **options: Any) -> TranslateReport:
    """Translate a video file, an image or a folder of images into ``output``, as ``cyclestream translate``
    does (every other stream, the colour tags, orientation and timestamps kept; the output appears only
    when complete).  ``options``: any field of TranslateOptions, RunOptions or EncodeOptions.  Returns the
    report (``output``, ``frames``, ``fps``, ``backend``, ``warnings``, ``preview``)."""
    from cyclestream.engine.jobs.options import TranslateOptions
    from cyclestream.engine.jobs.translate import translate
    from cyclestream.engine.options import from_keywords

    settings = from_keywords(TranslateOptions, options)
    return translate(source, output, _model_path(model), settings)


def open_stream(source: str, model: PathLike | None = None, **options: Any) -> LiveFrames:
    """A live source (a camera such as ``/dev/video0``, ``udp://@:5000``, ``rtsp://…``, ``rtmp://…``,
    ``lavfi:testsrc2``, or a file) whose translated frames you iterate inside a ``with`` block: numpy
    (H, W, 3) uint8, the newest when your loop is slower than the model.  ``options``: any field of
    StreamOptions or RunOptions (``duration``, ``fps``, ``size``, ``temporal``, ``reconnect_for``, …)."""
    from cyclestream.engine.jobs.live_frames import LiveFrames
    from cyclestream.engine.jobs.options import StreamOptions
    from cyclestream.engine.options import from_keywords

    if "sink" in options:
        raise TypeError("open_stream hands the frames to you: it takes no sink (cyclestream stream --sink writes one)")
    settings = from_keywords(StreamOptions, {"source": source, "model": _model_path(model)} | options)
    return LiveFrames(settings)
