"""The Python examples of docs/api.md run as written, each in an empty folder (what a reader would paste)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text())


API_EXAMPLES = examples("api.md")


def test_the_api_page_has_examples() -> None:
    assert len(API_EXAMPLES) >= 5


@pytest.mark.parametrize("code", API_EXAMPLES, ids=[f"api.md#{i + 1}" for i in range(len(API_EXAMPLES))])
def test_api_example_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/api.md", "exec"), {"__name__": "__docs__"})
