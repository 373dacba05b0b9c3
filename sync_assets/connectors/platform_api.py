"""Reading a no-code platform's table over HTTP, for reconciliation snapshots.

The platform (`examples/demo/seed/platform.py`, or a real one speaking the same contract) pages a
table in rowid order: `GET /v1/tables/{table}/records?cursor=&limit=` answers
`{"records": [...], "next_cursor": <int> | null}`. Each page becomes one Arrow RecordBatch, built
like a database chunk (`sources.to_batch`), so a snapshot reads a platform as it reads a database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pyarrow as pa

from sync_assets.connectors.problems import PlatformApiError, retrying
from sync_assets.connectors.sources import to_batch
from sync_assets.security.redact import redact_text

DEFAULT_PAGE_SIZE = 5000
TIMEOUT = httpx.Timeout(30.0, connect=5.0)
"""A platform that does not accept a connection in 5 s is down; a page may take longer."""


def is_platform_url(url: str) -> bool:
    return urlsplit(url).scheme.lower() in ("http", "https")


def read_records(
    base_url: str,
    table: str,
    *,
    page_size: int = DEFAULT_PAGE_SIZE,
    client: httpx.Client | None = None,
) -> Iterator[pa.RecordBatch]:
    """Every row of `table`, one RecordBatch per page; nothing at all for an empty table.

    Columns keep the order of the first record. A column whose values mix types within a page
    becomes text, as SQLite columns do in `to_batch`.
    """
    url = f"{base_url.rstrip('/')}/v1/tables/{quote(table, safe='')}/records"
    own_client = client is None
    http = httpx.Client(timeout=TIMEOUT) if client is None else client
    try:
        names: list[str] | None = None
        cursor: int | None = None
        while True:
            page = _page(http, url, cursor, page_size)
            records = page["records"]
            if records:
                names = names or list(records[0])
                yield to_batch(names, [[record.get(n) for n in names] for record in records])
            cursor = page["next_cursor"]
            if cursor is None:
                return
    finally:
        if own_client:
            http.close()


def _page(http: httpx.Client, url: str, cursor: int | None, limit: int) -> dict[str, Any]:
    params = {"limit": limit} if cursor is None else {"limit": limit, "cursor": cursor}
    response = retrying(lambda: _get(http, url, params), url)
    page = response.json()
    if not isinstance(page, dict) or not isinstance(page.get("records"), list):
        raise PlatformApiError(f"GET {redact_text(url)} answered 200 without a records page")
    return page


def _get(http: httpx.Client, url: str, params: dict[str, Any]) -> httpx.Response:
    """One GET of a page; anything but 200 is a PlatformApiError carrying the status (a 5xx or a
    429 is retried by `retrying`, a 404 is not)."""
    response = http.get(url, params=params)
    if response.status_code != 200:
        raise PlatformApiError(
            f"GET {redact_text(url)} answered {response.status_code}: {response.text[:300]}",
            status=response.status_code,
            path=urlsplit(url).path,
        )
    return response
