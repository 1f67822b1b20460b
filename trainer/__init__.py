"""Training: CycleGAN (the official recipe), pix2pix and DCGAN on the engine's generator classes.

``cyclestream train`` / ``python -m cyclestream.trainer`` / ``torchrun -m cyclestream.trainer``.
Modules: options (dataclasses + command-line flags), data (folders, sampler), networks
(discriminators), losses (GAN losses, image pool), task (what every model system shares),
cyclegan / pix2pix / dcgan (one training step each), state (checkpoints, RNG, resume), device
(--device auto, --deterministic), plot (sample grids, loss curves), loop (epochs, DDP, logging).
Importing this package imports nothing heavy.
"""
