"""Sealing and opening PII: AES-256-GCM, authenticated, bound to the field it belongs to.

A sealed value is a token `enc:<key id>:<base64url(nonce | ciphertext and tag)>`: the key id says
which key of the keyring opens it (so keys can rotate while old tokens stay readable), the nonce
is 12 random bytes per value, and the associated data is the value's field (e.g.
`customer.email`, `raw_events.line`): a token copied into another field, or altered in any byte,
is refused instead of read. Equal values seal to different tokens, so tokens cannot be joined or
counted; masks (fingerprint.py) are for that.

Text that is not a token is read as it is: a warehouse written before sealing holds clear values
until `syncctl keys rotate` seals them.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sync_assets.errors import EXIT_FAILED, SyncfabricError
from sync_assets.security.keys import Keyring

PREFIX = "enc:"
NONCE_BYTES = 12
TOKEN_KEY_IDS = r"enc:([A-Za-z0-9_-]{1,32}):"
"""A token's key id, as a regular expression (group 1): DuckDB's regexp_extract_all counts them."""
_TOKEN = re.compile(r"enc:([A-Za-z0-9_-]{1,32}):([A-Za-z0-9_-]+={0,2})")


class TamperedToken(SyncfabricError):
    """A token that does not open: altered, truncated, or moved from another field."""


def _aad(field_name: str) -> bytes:
    return b"syncfabric-pii:" + field_name.encode()


class Sealer:
    """Seals with the current key, opens with any key of the ring; one AESGCM per key, reused."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring
        self._ciphers: dict[str, AESGCM] = {}

    def _cipher(self, key_id: str) -> AESGCM:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers[key_id] = AESGCM(self.keyring.key(key_id))
        return cipher

    def seal(self, field_name: str, value: str) -> str:
        [sealed] = self.seal_many(field_name, [value])
        assert sealed is not None
        return sealed

    def seal_many(self, field_name: str, values: list[str | None]) -> list[str | None]:
        """Values of one field sealed (None stays None): the loop of the SQL function, with the
        cipher, associated data and prefix looked up once."""
        key_id = self.keyring.current_id
        encrypt, aad, prefix = self._cipher(key_id).encrypt, _aad(field_name), f"{PREFIX}{key_id}:"
        encode = base64.urlsafe_b64encode
        # One read of the system's random source for every nonce of the call (a call per value
        # cost 0.4 us more each); each value still gets its own 12 bytes.
        nonces = os.urandom(NONCE_BYTES * len(values))
        out: list[str | None] = []
        for start, value in zip(range(0, len(nonces), NONCE_BYTES), values, strict=True):
            if value is None:
                out.append(None)
                continue
            nonce = nonces[start : start + NONCE_BYTES]
            out.append(prefix + encode(nonce + encrypt(nonce, value.encode(), aad)).decode())
        return out

    def open_many(self, field_name: str, values: list[str | None]) -> list[str | None]:
        """Values of one field opened (None stays None), each key's cipher made once."""
        aad, decode = _aad(field_name), base64.urlsafe_b64decode
        out: list[str | None] = []
        for value in values:
            if value is None or not value.startswith(PREFIX):
                out.append(value)
                continue
            found = _TOKEN.fullmatch(value)
            if found is not None:
                key_id, payload = found.groups()
                cipher = self._cipher(key_id)
                try:
                    raw = decode(payload)
                    out.append(cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad).decode())
                    continue
                except (InvalidTag, binascii.Error, ValueError):
                    pass
            out.append(self.open(field_name, value))  # raises, saying why
        return out

    def open(self, field_name: str, value: str) -> str:
        if not value.startswith(PREFIX):
            return value  # written before sealing: clear until `syncctl keys rotate`
        found = _TOKEN.fullmatch(value)
        if found is None:
            raise _tampered(field_name, "it is not a well-formed token")
        key_id, payload = found.groups()
        try:
            raw = base64.urlsafe_b64decode(payload)
        except (binascii.Error, ValueError):
            raise _tampered(field_name, "its payload is not base64") from None
        if len(raw) < NONCE_BYTES + 16:
            raise _tampered(field_name, "it is truncated")
        try:
            clear = self._cipher(key_id).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(field_name)
            )
        except InvalidTag:
            raise _tampered(
                field_name, f"it does not authenticate under key id {key_id!r}"
            ) from None
        return clear.decode()

    def reseal(self, field_name: str, value: str) -> str:
        """The value sealed under the current key (a clear value is sealed; a current token kept)."""
        if key_id_of(value) == self.keyring.current_id:
            return value
        return self.seal(field_name, self.open(field_name, value))


def key_id_of(value: str) -> str | None:
    found = _TOKEN.match(value)
    return found.group(1) if found else None


def _tampered(field_name: str, why: str) -> TamperedToken:
    return TamperedToken(
        f"a sealed PII value of {field_name} was refused: {why} (altered, copied from another "
        "field, or sealed under another key that had the same key id). Nothing was read from it; "
        "fix: check that SYNCFABRIC_PII_KEYS holds the keys this warehouse was sealed with "
        "(`syncctl keys` says where they come from), else restore the warehouse from a backup or "
        "re-land the events it came from",
        exit_code=EXIT_FAILED,
    )
