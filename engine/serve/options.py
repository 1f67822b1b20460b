"""What `serve` is asked for: where to listen, how many browsers, how to run the model."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cyclestream.engine.backends.options import RunOptions

DEFAULT_SIZE = (320, 240)  # what a CPU translates live; a GPU takes --size 640x480 or more


@dataclass(frozen=True)
class ServeOptions:
    model: Path | None = None
    host: str = "127.0.0.1"  # this machine only, unless asked
    port: int = 8080  # 0: any free port
    run: RunOptions = field(default_factory=RunOptions)  # run.size: the model's frame size (DEFAULT_SIZE if None)
    temporal: str = "off"  # --temporal (the command line's default is on)
    max_clients: int = 4
    client_timeout: float = 10.0  # seconds without video before a client is dropped
    certfile: Path | None = None  # https: browsers open the camera only on https:// or localhost
    keyfile: Path | None = None

    @property
    def size(self) -> tuple[int, int]:
        return self.run.size or DEFAULT_SIZE
