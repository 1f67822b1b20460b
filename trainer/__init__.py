"""Training: CycleGAN (the official recipe), pix2pix and DCGAN on the engine's generator classes.

``cyclestream train`` / ``python -m cyclestream.trainer`` / ``torchrun -m cyclestream.trainer``.
Modules: options (the option groups of a run; cyclestream/cli/train.py generates their flags), tasks
(the model systems by name), cyclegan_options / pix2pix_options / dcgan_options / distill_options (each
task's recipe and checks, torch-free), data (folders, sampler), networks (discriminators), losses (GAN
losses, image pool), task (what every model system shares), cyclegan / pix2pix / dcgan / distill (one
training step each), state (checkpoints, RNG, resume), device (the device line, --deterministic), plot
(sample grids, loss curves), loop (epochs, DDP, logging).
Importing this package imports nothing heavy.
"""
