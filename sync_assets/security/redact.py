"""One redaction layer for every text that leaves the process: error messages and tracebacks,
Dagster's event log, the console, and the error columns of the warehouse.

The secrets are whatever the environment holds under a name that says so (`*_URL`, `*_KEY`,
`*_KEYS`, `*_PASSWORD`, `*_SECRET`, `*_TOKEN`, `*_DSN`, `*_CREDENTIALS`): every variable a project
reads for a system's URL or a key has such a name (docs/project.md), so a variable added later is
covered without being registered here. Of a URL only the password and secret-looking query values
are secret (its host and database help the operator); any other value is secret as a whole. Any
`scheme://user:password@host` in a text loses its password too, whatever variable it came from.

Redacting an exception redacts its whole chain (`raise ... from error` keeps the original, and
Dagster stores the chain), in place where its text comes from its arguments, else by replacing it
with a `RedactedError` carrying the redacted text and the same traceback.
"""

from __future__ import annotations

import functools
import os
import re
from urllib.parse import parse_qsl, unquote, urlsplit

MASK = "***"
SECRET_NAME = re.compile(
    r"(URL|URI|DSN|KEY|KEYS|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIALS?)$", re.IGNORECASE
)
"""Names of the environment variables whose values are secret (or, for URLs, hold secrets)."""
_SECRET_WORDS = "pass|secret|token|key|auth|signature"
SECRET_QUERY_KEY = re.compile(_SECRET_WORDS, re.IGNORECASE)
"""Query parameters whose values are secret (`?token=...`, `&api_key=...`)."""
MIN_SECRET_LENGTH = 6
"""Shorter values are not replaced: masking every `1` or `on` in a text would hide nothing."""
_USERINFO_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^/@:\s]*:)[^@\s/]*@", re.IGNORECASE)
_SECRET_QUERY = re.compile(
    rf"([?&;][^=&\s#]*(?:{_SECRET_WORDS})[^=&\s#]*=)[^&\s#'\"]+",
    re.IGNORECASE,
)


class RedactedError(RuntimeError):
    """Stands for an exception whose text held a secret and could not be redacted in place."""


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """The secret strings of the environment, longest first (so a secret containing another is
    replaced whole). Worked out once per state of the environment: a destination that is down
    makes an error text per correction."""
    named = (os.environ if environ is None else environ).items()
    return list(_secrets_of(frozenset((k, v) for k, v in named if v and SECRET_NAME.search(k))))


@functools.lru_cache(maxsize=8)
def _secrets_of(named: frozenset[tuple[str, str]]) -> tuple[str, ...]:
    found: set[str] = set()
    for _, value in named:
        if "://" in value:
            found.update(_url_secrets(value))
        else:
            found.add(value)
            for item in re.split(r"[,;\s]+", value):  # a keyring: `id:key,id:key`
                found.update((item, item.rpartition(":")[2]))
    return tuple(sorted((s for s in found if len(s) >= MIN_SECRET_LENGTH), key=len, reverse=True))


def _url_secrets(url: str) -> set[str]:
    try:
        parts = urlsplit(url)
        password = parts.password
        query = parse_qsl(parts.query)
    except ValueError:
        return {url}  # not a URL one can take apart: the whole value stays hidden
    secrets = {v for k, v in query if SECRET_QUERY_KEY.search(k)}
    if password:
        secrets |= {password, unquote(password)}
    return secrets


def redact_text(text: str, secrets: list[str] | None = None, *, url: str | None = None) -> str:
    """`text` without any secret of the environment, URL password or secret query value; with
    `url`, without that URL's secrets either (a URL given on the command line, say, which a
    driver's message may echo)."""
    if not text:
        return text
    secrets = secret_values() if secrets is None else secrets
    if url:
        secrets = sorted({*secrets, *_url_secrets(url)} - {url}, key=len, reverse=True)
    text = _USERINFO_PASSWORD.sub(rf"\1{MASK}@", text)
    text = _SECRET_QUERY.sub(rf"\1{MASK}", text)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_error(error: BaseException) -> BaseException:
    """The exception with every text of its chain redacted: itself when it could be redacted in
    place (or held nothing), else a `RedactedError` with the same traceback."""
    return _redacted(error, secret_values(), {})


def _redacted(
    error: BaseException, secrets: list[str], done: dict[int, BaseException]
) -> BaseException:
    if id(error) in done:
        return done[id(error)]
    clean = error
    if _leaks(error, secrets):
        try:
            error.args = tuple(
                redact_text(a, secrets) if isinstance(a, str) else a for a in error.args
            )
            for name, value in vars(error).items():  # a message or description kept beside args
                if isinstance(value, str):
                    setattr(error, name, redact_text(value, secrets))
        except (AttributeError, TypeError):
            pass
        if _leaks(error, secrets):
            clean = RedactedError(f"{type(error).__name__}: {redact_text(_text(error), secrets)}")
            clean.__traceback__ = error.__traceback__
            clean.__suppress_context__ = error.__suppress_context__
    done[id(error)] = clean
    for link in ("__cause__", "__context__"):
        linked = getattr(error, link)
        setattr(clean, link, _redacted(linked, secrets, done) if linked is not None else None)
    return clean


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:  # a __str__ that fails says nothing that could leak
        return ""


def _leaks(error: BaseException, secrets: list[str]) -> bool:
    texts = [_text(error), *(a for a in error.args if isinstance(a, str))]
    texts += [v for v in getattr(error, "__dict__", {}).values() if isinstance(v, str)]
    return any(redact_text(text, secrets) != text for text in texts)
