"""``cyclestream generate``'s options: a latent-walk video from a generator without an image input
(StyleGAN2, DCGAN).  Imports no torch."""

from __future__ import annotations

from dataclasses import dataclass

from cyclestream.engine.backends.options import backend_option
from cyclestream.engine.jobs.options import ENCODE_HELP
from cyclestream.engine.media.encode_options import EncodeOptions
from cyclestream.engine.options import DEVICE_HELP, Options, comma_list, option, progress_option, valid_device


@dataclass(frozen=True, kw_only=True)
class GenerateOptions(Options):
    """A walk through the latents of ``seeds``, in order, lasting ``walk`` seconds at ``fps``."""

    walk: float = option(10.0, above=0, metavar="SECONDS", help="length of the latent walk in seconds")
    seeds: tuple[int, ...] = option((1, 2, 3), min=0, parse=comma_list(int), metavar="N,...",
                                    help="the walk passes through each seed's latent z, in order")  # fmt: skip
    truncation: float = option(0.7, min=0, max=1, help="StyleGAN2: w pulled towards the mean w (1: none); "
                               "a DCGAN's z is not truncated")  # fmt: skip
    fps: float = option(30.0, above=0, help="frames per second")
    batch_size: int = option(8, min=1, help="frames per model call")
    backend: str = backend_option()
    device: str = option("auto", help=DEVICE_HELP)
    encode: EncodeOptions = option(default_factory=EncodeOptions, help=ENCODE_HELP)
    progress: bool = progress_option()

    def check(self) -> None:
        if len(self.seeds) < 2:
            raise self.fail("seeds", "a walk needs at least two seeds")
        if not valid_device(self.device):
            raise self.fail("device", f"unknown device {self.device!r} ({DEVICE_HELP})")

    @property
    def frames(self) -> int:
        """The video's frame count: ``walk`` seconds at ``fps`` (at least 2)."""
        return max(2, round(self.walk * self.fps))
