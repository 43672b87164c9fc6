"""The documentation lives in the repository and resolves in a clone: the README fits on a
screen and links nothing outside the repository, every relative link in README.md, CHANGELOG.md
and docs/ names a file that exists, and every `docs/method.md §N` that the code, the CLI's help
or a page cites is a section of docs/method.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_the_readme_fits_on_a_screen_and_links_only_inside_the_repository():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 150
    targets = LINK.findall(text)
    assert "docs/method.md" in targets  # the scan sees the links
    outside = [t for t in targets if "://" in t or t.startswith("/") or ".." in Path(t.split("#")[0]).parts]
    assert outside == []
    assert "shared/spec" not in text


def test_every_relative_link_names_a_file_of_the_repository():
    broken = []
    for doc in DOCS:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            path = target.split("#", 1)[0]
            if "://" in target or not path:
                continue
            resolved = (doc.parent / path).resolve()
            if not resolved.exists() or ROOT not in resolved.parents:
                broken.append(f"{doc.relative_to(ROOT)}: {target}")
    assert broken == []


def test_every_cited_section_of_method_md_exists():
    headings = re.findall(r"^## (\d+)\. ", (ROOT / "docs" / "method.md").read_text(encoding="utf-8"), re.M)
    sources = [*(ROOT / "actscale").rglob("*.py"), *(ROOT / "app_pages").glob("*.py"), ROOT / "app.py"]
    cited = set()
    for path in sources:
        text = path.read_text(encoding="utf-8")
        assert "shared/spec" not in text, path
        cited |= {m.split(".")[0] for m in re.findall(r"docs/method\.md\s+§(\d+(?:\.\d+)?)", text)}
    assert cited and cited <= set(headings), sorted(cited - set(headings))
