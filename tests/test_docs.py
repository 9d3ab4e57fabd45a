"""The documents: every relative link in the repository's Markdown resolves to a file inside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(p for p in ROOT.rglob("*.md") if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
              and "site-packages" not in p.parts)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _links(md: Path):
    for m in LINK.finditer(md.read_text(encoding="utf-8")):
        target = m.group(1).split("#", 1)[0]
        if target and not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto: ... are not files here
            yield target


def test_the_documents_are_found():
    names = {str(p.relative_to(ROOT)) for p in DOCS}
    assert {"README.md", "docs/DESIGN.md", "benchmarks/README.md"} <= names


@pytest.mark.parametrize("md", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_inside_the_repository(md):
    for target in _links(md):
        path = (md.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{md.relative_to(ROOT)}: {target} points outside the repository"
        assert path.exists(), f"{md.relative_to(ROOT)}: {target} does not exist"
