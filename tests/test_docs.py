"""The documentation: the MkDocs site builds with no broken link or anchor (mkdocs.yml makes every
link problem a warning, --strict makes a warning fail), README's links reach a page and an anchor
the site has, and CI runs the test command README gives."""

from __future__ import annotations

import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason='mkdocs is not installed: pip install -e ".[docs]" to check the docs')
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        self.ids.update(v for k, v in attrs if k == "id" and v)


def anchors_of(page: Path) -> set[str]:
    parser = _Ids()
    parser.feed(page.read_text())
    return parser.ids


def built_page(site: Path, doc: str) -> Path:
    """Where MkDocs puts docs/<doc> (index.md at the top, x.md in x/index.html)."""
    stem = doc.removesuffix(".md")
    return site / "index.html" if stem == "index" else site / stem / "index.html"


def test_the_site_builds_strict_and_has_every_page_of_the_nav(site):
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert len(pages) >= 10
    missing = [p for p in pages if not built_page(site, p).is_file()]
    assert not missing, missing
    assert not (site / "notes").exists()  # staging notes are not published


def test_readme_links_reach_a_file_and_an_anchor_the_site_has(site):
    links = LINK.findall(README.read_text())
    assert any(link.startswith("docs/") and "#" in link for link in links), links
    broken = []
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        if not (ROOT / path).exists():
            broken.append(link)
        elif anchor and path.startswith("docs/") and anchor not in anchors_of(built_page(site, path[5:])):
            broken.append(link)
    assert not broken, broken


def test_ci_runs_the_test_command_readme_gives():
    readme = README.read_text()
    test_section = readme[readme.index("## Test"):]
    command = next(line.split("#")[0].strip() for line in test_section.splitlines()
                   if line.startswith("python3 -m pytest"))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert command in [line.strip() for line in ci], (command, ci)
    # The docs are built before the tests, so a broken link fails CI early.
    build = next(i for i, line in enumerate(ci) if "mkdocs build --strict" in line)
    assert build < ci.index(command)
