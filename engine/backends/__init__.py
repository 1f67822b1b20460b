"""Backends by name.  Each backend module imports its own heavy library, and only when chosen."""

from __future__ import annotations

from cyclestream.engine.backends.base import PRECISIONS, Backend, FrameShape, Precision
from cyclestream.engine.errors import BackendError

BACKEND_NAMES = ("auto", "eager")


def create_backend(name: str, device: str = "cpu") -> Backend:
    """A backend instance for ``name`` ("auto" picks the best one available here)."""
    if name in ("auto", "eager"):
        from cyclestream.engine.backends.eager import EagerBackend

        return EagerBackend(device)
    raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(BACKEND_NAMES)}")


__all__ = ["BACKEND_NAMES", "PRECISIONS", "Backend", "FrameShape", "Precision", "create_backend"]
