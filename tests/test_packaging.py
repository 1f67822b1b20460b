"""The wheel holds every subpackage: setuptools' explicit ``packages`` list (needed by the package-dir
mapping of engine/, kernels/, trainer/) silently leaves a new one out, while editable installs and the
tests still find it."""

from __future__ import annotations

from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(base)
            found.add(".".join((name, *relative.parts)) if relative.parts else name)
    assert found - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - found == set(), "these listed packages have no folder with an __init__.py"


def test_static_tools_see_the_mapped_packages_through_symlinks() -> None:
    for name in ("engine", "kernels", "trainer"):
        link = ROOT / "cyclestream" / name
        if link.is_symlink():  # a checkout without symlinks (Windows default) still builds: the mapping
            assert link.resolve() == (ROOT / name).resolve()
