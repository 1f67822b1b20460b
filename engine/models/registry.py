"""The model families, found rather than listed: every module of this package that defines ``FAMILY``.

Adding a family is adding a module here (engine/models/family.py says what it declares); nothing else
names it.  Modules whose names start with ``_`` are skipped.  Discovery runs once, on the first
question (never while the package itself is being imported), and its order is fixed: by ``priority``,
then by name — the order in which recognisers are asked about an official state dict.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType

from cyclestream.engine.errors import CheckpointError
from cyclestream.engine.models.family import Family

PACKAGE = "cyclestream.engine.models"


def discover(package: ModuleType) -> tuple[Family, ...]:
    """The ``FAMILY`` of every module of ``package`` (each on its ``__path__``), in recognition order."""
    found: dict[str, Family] = {}
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name.rpartition(".")[2].startswith("_"):
            continue
        family = getattr(importlib.import_module(info.name), "FAMILY", None)
        if family is None:
            continue
        if not isinstance(family, Family):
            raise TypeError(f"{info.name}.FAMILY is a {type(family).__name__}, not a Family")
        if family.name in found:
            raise ValueError(f"two modules declare the model family {family.name!r} ({info.name} is the second)")
        found[family.name] = family
    return tuple(sorted(found.values(), key=lambda f: (f.priority, f.name)))


@functools.cache
def families() -> tuple[Family, ...]:
    """Every model family of this package, in recognition order."""
    return discover(importlib.import_module(PACKAGE))


def family_names() -> tuple[str, ...]:
    return tuple(f.name for f in families())


def family_named(name: str) -> Family:
    """The family called ``name``; a CheckpointError naming the known ones otherwise."""
    for family in families():
        if family.name == name:
            return family
    raise CheckpointError(f"unknown generator kind {name!r} (known families: {', '.join(family_names())})")
