"""Tracking codes: 60 random bits in Crockford base32, grouped, with a check symbol for phone reading."""

import secrets

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_CHECK = _ALPHABET + "*~$=U"
_READ_AS = {"O": "0", "I": "1", "L": "1"}


def _check_symbol(value: int) -> str:
    return _CHECK[value % 37]


def new_tracking_code() -> str:
    """A fresh code like 7KQ2-M9XD-4HTR-5 (60 bits + check symbol)."""
    value = secrets.randbits(60)
    chars = "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(12)))
    return f"{chars[:4]}-{chars[4:8]}-{chars[8:12]}-{_check_symbol(value)}"


def canonical_tracking_code(raw: str) -> str | None:
    """The stored form of a code as typed or read out (any case, hyphens optional), or None if invalid."""
    s = "".join(c for c in raw.upper() if c not in "- ")
    s = "".join(_READ_AS.get(c, c) for c in s)
    if len(s) != 13 or any(c not in _ALPHABET for c in s[:12]):
        return None
    value = 0
    for c in s[:12]:
        value = value * 32 + _ALPHABET.index(c)
    if _check_symbol(value) != s[12]:
        return None
    return f"{s[:4]}-{s[4:8]}-{s[8:12]}-{s[12]}"
