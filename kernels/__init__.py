"""Fused instance-norm kernels (Triton, with PyTorch references); ``engine/models/fuse.py`` puts them
into generators.

Importing this package registers the ``cyclestream::instance_norm_*`` custom ops and imports no
Triton; the Triton kernels are loaded on the first call that runs them.
"""

from cyclestream.kernels.instance_norm import (
    instance_norm_act,
    instance_norm_act_reference,
    instance_norm_apply,
    instance_norm_apply_reference,
    instance_norm_residual,
    instance_norm_residual_reference,
    instance_norm_stats,
    instance_norm_stats_reference,
)

__all__ = [
    "instance_norm_act",
    "instance_norm_act_reference",
    "instance_norm_apply",
    "instance_norm_apply_reference",
    "instance_norm_residual",
    "instance_norm_residual_reference",
    "instance_norm_stats",
    "instance_norm_stats_reference",
]
