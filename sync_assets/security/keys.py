"""Where the PII keys come from: the environment in production, a generated file on a laptop.

Two kinds of key, both 32 random bytes, written in base64:

- `SYNCFABRIC_PII_KEYS="k2:<base64>,k1:<base64>"`: the keyring that seals PII (AES-256-GCM). The
  first key is the current one, used to seal; every key is tried, by the key id a token carries,
  to open. Rotating is: put a new key first, keep the old ones, run `syncctl keys rotate`, then
  drop the old keys.
- `SYNCFABRIC_PII_FINGERPRINT_KEY="<base64>"`: the HMAC key of the fingerprints (masks) that UI
  metadata and the discrepancies show instead of PII. Changing it changes every mask, so it is
  not rotated with the keyring.

Set both, or neither. With neither (the embedded default, a user's machine), the keys are
generated once into `<data folder>/pii-keys.env` (mode 0600) and read from there: the mission
runs with nothing set, and a copy of `warehouse.duckdb` alone holds no readable PII. It does not
protect a copy of the whole data folder, which is why production sets the variables (from a
secret store) and `syncctl keys` says where the keys came from.

A key never appears in a log, an error or metadata: errors name variables and key ids only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from sync_assets.errors import EXIT_USAGE, SyncfabricError

KEYS_ENV = "SYNCFABRIC_PII_KEYS"
FINGERPRINT_ENV = "SYNCFABRIC_PII_FINGERPRINT_KEY"
KEY_FILE = "pii-keys.env"
"""The generated keys' file in the data folder, when the variables are not set."""
KEY_BYTES = 32
KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True)
class Keyring:
    """The sealing keys by id (the first is current) and the fingerprint key.

    `repr` shows key ids and where they came from, never a key.
    """

    keys: dict[str, bytes] = field(repr=False)
    current_id: str
    fingerprint_key: bytes = field(repr=False)
    origin: str
    """Where the keys came from, for `syncctl keys` (a variable's name or the file's path)."""

    @property
    def ids(self) -> list[str]:
        return list(self.keys)

    def key(self, key_id: str) -> bytes:
        try:
            return self.keys[key_id]
        except KeyError:
            raise UnknownKey(key_id, self) from None


class UnknownKey(SyncfabricError):
    """A token sealed under a key the keyring no longer holds."""

    def __init__(self, key_id: str, keyring: Keyring) -> None:
        super().__init__(
            f"a stored PII value is sealed with key id {key_id!r}, which the keyring does not hold "
            f"(it holds {', '.join(keyring.ids)}; keys from {keyring.origin}); fix: add the old "
            f"key back to {KEYS_ENV} as '{key_id}:<base64>' after the current one, then run "
            "`syncctl keys rotate` before removing it again",
            exit_code=EXIT_USAGE,
        )
        self.key_id = key_id


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise SyncfabricError(
            f"{where} is not a base64 key of {KEY_BYTES} bytes; fix: generate one with "
            '`python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"`',
            exit_code=EXIT_USAGE,
        )
    return key


def parse_keyring(keys_text: str, fingerprint_text: str, origin: str) -> Keyring:
    """A keyring from the variables' text; errors name the variable and the key id, never a key."""
    keys: dict[str, bytes] = {}
    for entry in (e.strip() for e in keys_text.split(",")):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not KEY_ID.fullmatch(key_id):
            raise SyncfabricError(
                f"{KEYS_ENV} holds an entry that is not <key id>:<base64 key> (key ids: letters, "
                "digits, _ and -); fix: write e.g. k2:<base64>,k1:<base64>",
                exit_code=EXIT_USAGE,
            )
        if key_id in keys:
            raise SyncfabricError(
                f"{KEYS_ENV} names key id {key_id!r} twice; fix: give each key its own id",
                exit_code=EXIT_USAGE,
            )
        keys[key_id] = _decode_key(encoded, f"{KEYS_ENV}: the key of {key_id!r}")
    if not keys:
        raise SyncfabricError(
            f"{KEYS_ENV} holds no key; fix: set it to <key id>:<base64 key>[,<older id>:<key>...]",
            exit_code=EXIT_USAGE,
        )
    fingerprint = _decode_key(fingerprint_text, FINGERPRINT_ENV)
    return Keyring(keys, next(iter(keys)), fingerprint, origin)


def from_environment() -> Keyring | None:
    """The keyring the variables give; None when neither is set; an error when one is missing."""
    keys_text = os.environ.get(KEYS_ENV, "").strip()
    fingerprint_text = os.environ.get(FINGERPRINT_ENV, "").strip()
    if not keys_text and not fingerprint_text:
        return None
    if not keys_text or not fingerprint_text:
        missing = KEYS_ENV if not keys_text else FINGERPRINT_ENV
        raise SyncfabricError(
            f"{missing} is not set while {FINGERPRINT_ENV if missing == KEYS_ENV else KEYS_ENV} "
            "is; fix: set both (production), or neither (the keys generated in the data folder)",
            exit_code=EXIT_USAGE,
        )
    return parse_keyring(
        keys_text, fingerprint_text, f"the environment ({KEYS_ENV}, {FINGERPRINT_ENV})"
    )


def _new_key() -> str:
    return base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def from_file(folder: Path) -> Keyring:
    """The keys generated once in the data folder (created 0600, never rewritten)."""
    path = folder / KEY_FILE
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        text = (
            "# Syncfabric's PII keys for this data folder, generated because "
            f"{KEYS_ENV} and {FINGERPRINT_ENV} were not set.\n"
            "# Losing this file makes the sealed PII of warehouse.duckdb unreadable. "
            "Production sets the variables instead (docs/security.md).\n"
            f"{KEYS_ENV}=k1:{_new_key()}\n{FINGERPRINT_ENV}={_new_key()}\n"
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as out:
                out.write(text)
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            values[name.strip()] = value.strip()
    return parse_keyring(
        values.get(KEYS_ENV, ""), values.get(FINGERPRINT_ENV, ""), f"the file {path}"
    )


_CACHE: dict[tuple[str, str, str], Keyring] = {}


def keyring(folder: Path | None) -> Keyring:
    """The keyring for a data folder: the variables when set, else the folder's key file.

    `folder` None (an in-memory warehouse, gone with the process) without the variables gets keys
    of this process only.
    """
    env = (os.environ.get(KEYS_ENV, ""), os.environ.get(FINGERPRINT_ENV, ""))
    cache_key = (*env, str(folder) if folder is not None else "")
    if cache_key not in _CACHE:
        found = from_environment()
        if found is None:
            if folder is None:
                found = parse_keyring(f"mem:{_new_key()}", _new_key(), "keys of this process only")
            else:
                found = from_file(folder)
        _CACHE[cache_key] = found
    return _CACHE[cache_key]
