"""FastCUT's declaration: the contrastive-unpaired-translation ``--CUT_mode FastCUT`` recipe (150 + 50
epochs; its PatchNCE values are in trainer/cut_options.py, which also checks its runs)."""

from __future__ import annotations

from cyclestream.trainer.cut_options import _defaults, validate
from cyclestream.trainer.tasks import TaskDeclaration

TASK = TaskDeclaration(
    name="fastcut",
    order=16,
    help="unpaired A/B folders, CUT's faster variant: stronger PatchNCE, no identity term, flip equivariance",
    task="cyclestream.trainer.cut:CUTTask",
    defaults=_defaults(150, 50),
    validate=validate,
)
