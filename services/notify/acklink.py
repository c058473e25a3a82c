"""Signed acknowledgement links: short enough for an SMS, verifiable without a session, with an expiry.

token = <ref>.<expiry: unix seconds, base 36>.<base64url(HMAC-SHA256(key, "<ref>.<expiry>")), first 16 chars>
The ref names one delivery (random, stored with it); the MAC proves notify issued the link.
"""

import base64
import hashlib
import hmac
import secrets
import string
from datetime import UTC, datetime

_ALPHABET = string.ascii_letters + string.digits
_MAC_CHARS = 16


class InvalidToken(ValueError):
    """The token is malformed, forged or expired; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def new_ref() -> str:
    """A fresh random reference for a delivery (10 characters, about 59 bits)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(10))


def _b36(n: int) -> str:
    digits = string.digits + string.ascii_lowercase
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


def _mac(secret: str, body: str) -> str:
    digest = hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:_MAC_CHARS]


def make_token(secret: str, ref: str, expires_at: datetime) -> str:
    """The token for a delivery's acknowledgement link."""
    body = f"{ref}.{_b36(int(expires_at.timestamp()))}"
    return f"{body}.{_mac(secret, body)}"


def read_token(secret: str, token: str, *, now: datetime) -> tuple[str, datetime]:
    """The (ref, expiry) of a genuine, unexpired token; raises InvalidToken otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        raise InvalidToken("malformed")
    ref, exp36, given = parts
    if not hmac.compare_digest(_mac(secret, f"{ref}.{exp36}"), given):
        raise InvalidToken("forged")
    try:
        expires_at = datetime.fromtimestamp(int(exp36, 36), UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidToken("malformed") from exc
    if now >= expires_at:
        raise InvalidToken("expired")
    return ref, expires_at
