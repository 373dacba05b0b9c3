"""Keyed fingerprints: what UI metadata and discrepancies show instead of PII.

`pii:` and the first 16 hex digits (64 bits) of HMAC-SHA256 under the fingerprint key: equal
values give equal masks, so findings still join and group, and a million distinct values collide
with a chance of about 3e-8. Without the key, hashing guessed candidates (a list of e-mails)
matches nothing: an unsalted hash let 46 of 92 masked e-mails be recovered that way.
"""

from __future__ import annotations

import hashlib
import hmac
import re

MASK = re.compile(r"pii:[0-9a-f]{16}")
"""A mask, as stored in discrepancies: masking it again would hide nothing more."""


def fingerprint(key: bytes, value: object) -> str:
    digest = hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()
    return f"pii:{digest[:16]}"


def is_mask(value: object) -> bool:
    return isinstance(value, str) and MASK.fullmatch(value) is not None
