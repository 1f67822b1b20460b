"""Switching a live job's conditioning while it runs: one line on standard input per change.

For a model with a label input (StarGAN) each line is a ``--target`` (a domain name, an index or the
whole vector); for one with a latent input (BicycleGAN) a ``--z-seed``.  `serve`'s page sends the same
text for its browser (``engine/serve/client.py``).  The new values are set on the
prepared backend (``Backend.conditioning``: the next batch uses them); a line that names nothing the model
takes is logged in one line and the job goes on with the values it had.  Models without a conditioning
input read nothing from standard input.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TextIO

import torch

from cyclestream.engine.backends.base import Backend
from cyclestream.engine.checkpoint import LoadedModel
from cyclestream.engine.conditioning import conditioning_inputs
from cyclestream.engine.errors import CycleStreamError

log = logging.getLogger("cyclestream")


def control_kind(model: LoadedModel) -> str | None:
    """What a line sets for ``model``: "label" (a ``--target``), "latent" (a ``--z-seed``), or None."""
    kinds = {c.kind for c in model.family.conditioning} if model.family.image_input else set()
    return "label" if "label" in kinds else "latent" if "latent" in kinds else None


def parse_control(model: LoadedModel, text: str) -> tuple[torch.Tensor, ...]:
    """The conditioning values ``text`` names (a target, or a z seed for a latent-only model); a one-line
    CycleStreamError when it names none of the model's."""
    text = text.strip()
    if control_kind(model) == "latent":
        if not text.isdigit():
            raise CycleStreamError(f"{text[:40]!r} is not a z seed (a whole number)")
        return conditioning_inputs(model, None, int(text))
    return conditioning_inputs(model, text, None)


def apply_line(model: LoadedModel, backend: Backend, line: str) -> bool:
    """Set the values ``line`` names on ``backend``; False (logged) when it names none of the model's."""
    text = line.strip()
    if not text:
        return False
    try:
        values = parse_control(model, text)
    except CycleStreamError as e:
        log.warning("ignored %s", e)
        return False
    backend.conditioning = values
    log.info("conditioning now: %s", text)
    return True


def follow_stdin(model: LoadedModel, backend: Backend, stream: TextIO | None = None) -> threading.Thread | None:
    """A daemon thread applying each line of ``stream`` (standard input) to ``backend``; None for a model
    without a conditioning input."""
    if control_kind(model) is None:
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
