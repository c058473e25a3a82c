"""Reporter identity: validation, encryption at rest (Fernet keys from settings) and masking."""

import json
import re
from datetime import date
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from email_validator import EmailNotValidError, validate_email


class PiiVault:
    """Encrypts and decrypts reporter identity; rotate by putting a new key first."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("at least one PII key is required")
        self._fernet = MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])
        self._current = Fernet(keys[0].encode() if isinstance(keys[0], str) else keys[0])

    def seal(self, data: dict[str, Any]) -> str:
        """The encrypted form of a reporter record."""
        return self._fernet.encrypt(json.dumps(data, ensure_ascii=False).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        """The reporter record of an encrypted token."""
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise ValueError("reporter record cannot be decrypted with the configured keys") from exc

    def rotate(self, token: str) -> str:
        """The token re-encrypted under the current key."""
        return self._fernet.rotate(token.encode()).decode()

    def is_current(self, token: str) -> bool:
        """True when the token is already encrypted under the first (current) key."""
        try:
            self._current.decrypt(token.encode())
        except InvalidToken:
            return False
        return True


# --- validation ------------------------------------------------------------------------------------

_PHONE_NOISE = re.compile(r"[\s\-()（）]")
_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_LANDLINE = re.compile(r"^0\d{2,3}\d{7,8}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def normalize_phone(raw: str, *, accept_landlines: bool = True) -> str | None:
    """A mainland mobile as 11 digits (+86 and separators dropped), a landline as 0AAA-NNNNNNN, or None."""
    s = _PHONE_NOISE.sub("", raw.strip())
    if s.startswith("+86"):
        s = s[3:]
    elif s.startswith("0086"):
        s = s[4:]
    elif s.startswith("86") and len(s) == 13:
        s = s[2:]
    if _MOBILE.match(s):
        return s
    if accept_landlines and _LANDLINE.match(s):
        # Area codes are 3 digits for 010/02x, 4 otherwise.
        cut = 3 if s[1] in "12" else 4
        return f"{s[:cut]}-{s[cut:]}"
    return None


def id_check_digit(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID number's first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def normalize_id_number(raw: str) -> str | None:
    """An 18-character resident ID number with a valid birth date and check digit (X upper-case), or None."""
    s = raw.strip().upper()
    if len(s) != 18 or not s[:17].isdigit() or not (s[17].isdigit() or s[17] == "X"):
        return None
    try:
        born = date(int(s[6:10]), int(s[10:12]), int(s[12:14]))
    except ValueError:
        return None
    if born.year < 1900:
        return None
    if id_check_digit(s[:17]) != s[17]:
        return None
    return s


def normalize_email(raw: str) -> str | None:
    """The e-mail address in normal form (syntax checked, no DNS look-up), or None."""
    try:
        return validate_email(raw.strip(), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


# --- masking ---------------------------------------------------------------------------------------


def mask_phone(phone: str | None) -> str | None:
    """138****0000; landlines keep the area code: 0731-****5678."""
    if not phone:
        return phone
    s = phone.strip()
    if "-" in s:
        area, _, number = s.partition("-")
        return f"{area}-{'*' * max(0, len(number) - 4)}{number[-4:]}"
    if len(s) >= 7:
        return s[:3] + "*" * (len(s) - 7) + s[-4:]
    return "*" * len(s)


def mask_id_number(value: str | None) -> str | None:
    """430***********123X: region prefix and birth date hidden."""
    if not value:
        return value
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_email(value: str | None) -> str | None:
    """z***@example.com."""
    if not value or "@" not in value:
        return value
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_name(value: str | None) -> str | None:
    """张** (the family name only)."""
    if not value:
        return value
    return value[:1] + "*" * max(1, len(value) - 1)


_MOBILE_IN_TEXT = re.compile(r"(?<!\d)(?:\+?86[\s-]?)?(1[3-9]\d)[\s-]?(\d{4})[\s-]?(\d{4})(?!\d)")
_ID_IN_TEXT = re.compile(r"(?<![\dA-Za-z])(\d{3})\d{11}(\d{3}[\dXx])(?![\dA-Za-z])")
_LANDLINE_IN_TEXT = re.compile(r"(?<!\d)(0\d{2,3})[\s-](\d{3,4})(\d{4})(?!\d)")


def mask_text(text: str | None, *, landlines: bool = True) -> str | None:
    """Text with mobile numbers, ID numbers (and landlines, unless told not to) masked for public display."""
    if not text:
        return text
    s = _ID_IN_TEXT.sub(lambda m: f"{m.group(1)}{'*' * 11}{m.group(2)}", text)
    s = _MOBILE_IN_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(3)}", s)
    if landlines:
        s = _LANDLINE_IN_TEXT.sub(lambda m: f"{m.group(1)}-{'*' * len(m.group(2))}{m.group(3)}", s)
    return s


def masked_identity(identity: dict[str, Any]) -> dict[str, Any]:
    """A decrypted reporter record with every identifying field masked."""
    return {
        "name": mask_name(identity.get("name")),
        "phone": mask_phone(identity.get("phone")),
        "id_number": mask_id_number(identity.get("id_number")),
        "email": mask_email(identity.get("email")),
    }
