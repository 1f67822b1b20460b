"""Bounded queues between threads: a ``Channel`` can be closed (end of stream) and aborted (an error
elsewhere raises ``Stopped`` in the waiting thread); with ``drop_oldest`` a full channel drops its oldest
item instead of blocking.  Below both the pipeline and the media sources, which hand frames through them."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Stopped(Exception):
    """Raised inside a stage (by a Channel) when another stage failed or the job was cancelled."""


class Channel(Generic[T]):
    """A bounded queue that can be closed (end of stream) and aborted (error elsewhere)."""

    def __init__(self, size: int, drop_oldest: bool, stop: threading.Event, on_drop: Callable[[T], None]) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._size, self._drop_oldest, self._stop, self._on_drop = size, drop_oldest, stop, on_drop
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: T) -> None:
        with self._cond:
            while len(self._items) >= self._size:
                if self._drop_oldest:
                    self._on_drop(self._items.popleft())
                    break
                if self._stop.is_set():
                    raise Stopped
                self._cond.wait(0.1)
            self._items.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def get(self, block: bool = True) -> T | None:
        """The next item; None at end of stream (or, with ``block=False``, when nothing is queued)."""
        with self._cond:
            while not self._items:
                if self._stop.is_set():
                    raise Stopped
                if self._closed or not block:
                    return None
                self._cond.wait(0.1)
            item = self._items.popleft()
            self._cond.notify_all()
            return item
