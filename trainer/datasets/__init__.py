"""Dataset builders for training and evaluation: real emoji in two styles, and the demo clip."""

from __future__ import annotations

from cyclestream.engine.errors import CycleStreamError


class DatasetError(CycleStreamError):
    """A dataset that cannot be built or read as asked (missing style package, bad folder)."""


__all__ = ["DatasetError"]
