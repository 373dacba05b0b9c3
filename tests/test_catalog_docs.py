"""The catalog for people (`syncctl catalog`): `docs/catalog/` is the demo project's, kept equal to
what the project's files and change log say, and the same text as one static HTML page."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from commands import assert_no_traceback, syncctl
from conftest import DEMO_PROJECT

from sync_assets.govern import changelog
from sync_assets.govern.docs import HTML_PAGE, catalog_html, catalog_pages
from sync_assets.project import load_project

DOCS = Path(__file__).resolve().parents[1] / "docs" / "catalog"


def test_docs_catalog_is_what_the_demo_project_says():
    project = load_project(DEMO_PROJECT)
    pages = catalog_pages(project, changelog.read(project.root))
    pages[HTML_PAGE] = catalog_html(project, changelog.read(project.root))
    stale = [
        name
        for name, text in pages.items()
        if not (DOCS / name).is_file() or (DOCS / name).read_text(encoding="utf-8") != text
    ]
    extra = sorted({p.name for p in DOCS.iterdir()} - set(pages))
    assert (stale, extra) == ([], []), (
        "docs/catalog/ is out of date: run `SYNCFABRIC_PROJECT=examples/demo "
        ".venv/bin/syncctl catalog --out docs/catalog`"
    )


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.ids: set[str] = set()
        self.cells: list[str] = []
        self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.ids |= {value for name, value in attrs if name == "id" and value}
        self._in_cell = tag in ("td", "th")

    def handle_endtag(self, tag):
        self._in_cell = False if tag in ("td", "th") else self._in_cell

    def handle_data(self, data):
        if self._in_cell:
            self.cells.append(data.strip())


def test_catalog_writes_pages_and_one_static_html_page(tmp_path):
    done = syncctl(tmp_path / "home", "--project", str(DEMO_PROJECT), "catalog", "--out", str(tmp_path / "out"))  # fmt: skip
    assert_no_traceback(done)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md", "catalog.html", "customer.md", "order.md",
    ]  # fmt: skip

    page = _Page()
    page.feed((tmp_path / "out" / "catalog.html").read_text(encoding="utf-8"))
    assert "script" not in page.tags and "link" not in page.tags  # self-contained, static
    assert {"customer", "order"} <= page.ids  # the index's links land on each entity
    project = load_project(DEMO_PROJECT)
    for entity in project.entities.values():
        assert set(entity.attribute_names) <= set(page.cells)
    assert "BACKWARD_TRANSITIVE" in (tmp_path / "out" / "catalog.html").read_text()
    assert "data-platform" in page.cells  # the change log's sign-off
    index = (tmp_path / "out" / "README.md").read_text()
    assert (
        "| [customer](customer.md) | `customer_id` | crm | billing, support, analytics |" in index
    )
