"""The bundle's rules for one submission: per-channel fields, limits and reporter identity.

Pydantic checks the shape; these checks need the configuration, and each kind of breach has its own
error code so a portal developer can tell them apart (all are 422).
"""

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from services.intake.api.schemas import MessageIn
from services.intake.config import IntakeConfig
from services.intake.pii import normalize_email, normalize_id_number, normalize_phone


@dataclass
class Problem:
    code: str
    loc: list[str]
    msg: str


@dataclass
class Rejected(Exception):
    """A submission that breaks a rule of the bundle."""

    code: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self):
        super().__init__(self.message)


def _present(value: Any) -> bool:
    if value is None or value == "":
        return False
    if isinstance(value, BaseModel):
        return any(v not in (None, "") for v in value.model_dump().values())
    return True


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = getattr(data, part, None)
        if data is None:
            return None
    return data


def check(data: MessageIn, config: IntakeConfig) -> dict[str, str]:
    """Raise Rejected unless the message follows the rules; returns the reporter identity in normal form."""
    problems: list[Problem] = []
    rule = config.channels.get(data.channel.value)
    if rule is not None:
        missing = [p for p in rule.required if not _present(_get(data, p))]
        for p in missing:
            problems.append(
                Problem(
                    "missing_channel_fields",
                    ["body", *p.split(".")],
                    f"{rule.label} ({data.channel.value}) messages need {p}",
                )
            )
    limits = config.limits
    if data.title is not None and len(data.title) > limits.max_title_chars:
        problems.append(
            Problem("title_too_long", ["body", "title"], f"at most {limits.max_title_chars} characters")
        )
    if len(data.content) > limits.max_content_chars:
        problems.append(
            Problem("content_too_long", ["body", "content"], f"at most {limits.max_content_chars} characters")
        )
    if len(data.attachments) > limits.max_attachments:
        problems.append(
            Problem(
                "too_many_attachments",
                ["body", "attachments"],
                f"at most {limits.max_attachments} attachments",
            )
        )
    identity: dict[str, str] = {}
    r = data.reporter
    if r is not None:
        if r.name:
            identity["name"] = r.name
        if r.phone:
            phone = normalize_phone(r.phone, accept_landlines=config.pii.accept_landlines)
            if phone is None:
                problems.append(
                    Problem(
                        "invalid_phone",
                        ["body", "reporter", "phone"],
                        "not a mainland mobile or landline number",
                    )
                )
            else:
                identity["phone"] = phone
        if r.id_number:
            idn = normalize_id_number(r.id_number)
            if idn is None:
                problems.append(
                    Problem(
                        "invalid_id_number",
                        ["body", "reporter", "id_number"],
                        "not an 18-character resident ID number with a valid date and check digit",
                    )
                )
            else:
                identity["id_number"] = idn
        if r.email:
            email = normalize_email(r.email)
            if email is None:
                problems.append(
                    Problem("invalid_email", ["body", "reporter", "email"], "not a valid e-mail address")
                )
            else:
                identity["email"] = email
    if problems:
        # The first breach names the error; every breach is in the details with its own code as `type`.
        raise Rejected(
            code=problems[0].code,
            message="; ".join(f"{'.'.join(p.loc[1:])}: {p.msg}" for p in problems),
            details=[{"loc": p.loc, "msg": p.msg, "type": p.code} for p in problems],
        )
    return identity
