"""Share links: signed, expiring, single-job links that open a report without signing in, until revoked.

A link is ``<people url>/links/<token>``; the token is ``<payload>.<signature>``, the payload naming the
link, the job and the expiry, the signature an HMAC-SHA256 with the deployment's link key (a Secrets
Manager secret in AWS: replacing it revokes every link at once). Each link is also an item in the job
store, so one link can be revoked at once and every mint and use is logged with who and which job.
Following a link never reaches S3 by itself: it redirects to a presigned URL signed at that moment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reportrelay.errors import ConfigurationError, ReportRelayError
from reportrelay.names import LINK_KEY_ENV, LINK_KEY_SECRET_ENV

DEFAULT_LINK_SECONDS = 24 * 3600
MAX_LINK_SECONDS = 7 * 24 * 3600
_MAX_TOKEN = 512


class LinkTampered(ReportRelayError):
    """The link is not one this deployment signed (403)."""


class LinkGone(ReportRelayError):
    """The link has expired or was revoked (410)."""


@dataclass(frozen=True)
class LinkClaims:
    link_id: str
    job_id: str
    expires_at: int


def new_link_id() -> str:
    return secrets.token_hex(16)


def sign(claims: LinkClaims, key: bytes) -> str:
    payload = _b64(
        json.dumps(
            {"l": claims.link_id, "j": claims.job_id, "e": claims.expires_at}, separators=(",", ":")
        ).encode()
    )
    return f"{payload}.{_b64(_mac(key, payload))}"


def verify(token: str, key: bytes, now: float) -> LinkClaims:
    """The claims of a link this deployment signed and that has not expired; LinkTampered / LinkGone."""
    payload, dot, signature = token.partition(".")
    if not dot or len(token) > _MAX_TOKEN:
        raise LinkTampered("this link is not valid: it is incomplete or was changed")
    try:
        given = base64.urlsafe_b64decode(_padded(signature))
        plain = json.loads(base64.urlsafe_b64decode(_padded(payload)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise LinkTampered("this link is not valid: it is incomplete or was changed") from None
    if not hmac.compare_digest(given, _mac(key, payload)):
        raise LinkTampered("this link is not valid: it is incomplete or was changed")
    try:
        claims = LinkClaims(link_id=str(plain["l"]), job_id=str(plain["j"]), expires_at=int(plain["e"]))
    except (KeyError, TypeError, ValueError):
        raise LinkTampered("this link is not valid: it is incomplete or was changed") from None
    if claims.expires_at <= now:
        raise LinkGone("this link has expired; ask whoever shared it for a new one")
    return claims


SecretReader = Callable[[str], str]


def link_key(environ: Mapping[str, str] | None = None, read_secret: SecretReader | None = None) -> bytes:
    """The deployment's link key: from its Secrets Manager secret, or (locally) the environment."""
    env = os.environ if environ is None else environ
    secret_id = env.get(LINK_KEY_SECRET_ENV)
    if secret_id:
        if read_secret is None:
            raise ConfigurationError(f"{LINK_KEY_SECRET_ENV} is set but secrets cannot be read here")
        value = _cached_secret(secret_id, read_secret)
    else:
        value = env.get(LINK_KEY_ENV, "")
    if len(value) < 32:
        raise ConfigurationError(
            f"share links are not set up: set {LINK_KEY_SECRET_ENV} (a secret of 32+ characters) "
            f"or {LINK_KEY_ENV}"
        )
    return value.encode()


KEY_CACHE_SECONDS = 300
_SECRETS: dict[str, tuple[float, str]] = {}


def _cached_secret(secret_id: str, read_secret: SecretReader) -> str:
    """Read at most every few minutes: replacing the secret revokes every link within that time."""
    cached = _SECRETS.get(secret_id)
    if cached is None or time.monotonic() - cached[0] > KEY_CACHE_SECONDS:
        _SECRETS[secret_id] = (time.monotonic(), read_secret(secret_id))
    return _SECRETS[secret_id][1]


def link_record(claims: LinkClaims, *, team: str | None, minted_by: str, created_at: str) -> dict[str, Any]:
    return {
        "link_id": claims.link_id,
        "job_id": claims.job_id,
        "team": team,
        "minted_by": minted_by,
        "created_at": created_at,
        "expires_at": claims.expires_at,
    }


def _mac(key: bytes, payload: str) -> bytes:
    return hmac.new(key, b"reportrelay-link\0" + payload.encode(), hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _padded(text: str) -> str:
    return text + "=" * (-len(text) % 4)
