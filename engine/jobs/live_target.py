"""Switching a live job's conditioning while it runs: one line on standard input per change.

For a model with a label input (StarGAN) each line is a ``--target`` (a domain name, an index or the
whole vector); for one with a latent input (BicycleGAN) a ``--z-seed``.  The new values are set on the
prepared backend (``Backend.conditioning``: the next batch uses them); a line that names nothing the model
takes is logged in one line and the job goes on with the values it had.  Models without a conditioning
input read nothing from standard input.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.conditioning import conditioning_inputs
from cyclestream.engine.errors import CycleStreamError

log = logging.getLogger("cyclestream")


def apply_line(model: LoadedModel, backend: Backend, line: str) -> bool:
    """Set the values ``line`` names on ``backend``; False (logged) when it names none of the model's."""
    text = line.strip()
    if not text:
        return False
    latent = any(c.kind == "latent" for c in model.family.conditioning)
    try:
        if latent and not any(c.kind == "label" for c in model.family.conditioning):
            if not text.isdigit():
                raise CycleStreamError(f"{text!r} is not a z seed (a whole number)")
            values = conditioning_inputs(model, None, int(text))
        else:
            values = conditioning_inputs(model, text, None)
    except CycleStreamError as e:
        log.warning("ignored %s", e)
        return False
    backend.conditioning = values
    log.info("conditioning now: %s", text)
    return True


def follow_stdin(model: LoadedModel, backend: Backend, stream: TextIO | None = None) -> threading.Thread | None:
    """A daemon thread applying each line of ``stream`` (standard input) to ``backend``; None for a model
    without a conditioning input."""
    if not model.family.image_input or not model.family.conditioning:
        return None
    source = stream if stream is not None else sys.stdin

    def read() -> None:
        try:
            for line in source:
                apply_line(model, backend, line)
        except (OSError, ValueError):  # standard input closed or not readable: nothing to follow
            return

    thread = threading.Thread(target=read, name="cyclestream-live-target", daemon=True)
    thread.start()
    return thread
