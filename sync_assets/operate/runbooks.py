"""Runbooks as links: the URL of docs/runbooks/<name>.md, for Dagster metadata, messages and alerts.

`SYNCFABRIC_DOCS_URL`, when set, is the base the docs are published under (the runbooks then sit
at <base>/runbooks/<name>.md); otherwise a file:// URL to the docs folder of this checkout.
"""

from __future__ import annotations

import os

from sync_assets.settings import PROJECT_ROOT

DOCS_URL_ENV = "SYNCFABRIC_DOCS_URL"
DOCS = PROJECT_ROOT / "docs"


def runbook_url(name: str) -> str:
    """The link to runbook `name` (`dead-letters`, `dead-letters.md` or its path in the repository,
    `docs/runbooks/dead-letters.md`, as messages name it)."""
    file = name.rsplit("/", 1)[-1]
    file = file if file.endswith(".md") else f"{file}.md"
    base = os.environ.get(DOCS_URL_ENV, "").strip()
    if base:
        return f"{base.rstrip('/')}/runbooks/{file}"
    return (DOCS / "runbooks" / file).as_uri()
