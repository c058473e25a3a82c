"""Who can be told: recipients, unit contacts and the 7×24 duty roster, from the configuration bundle."""

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from services.notify.policy import NotifyPolicy, PolicyError, load_policy

# Channel → the recipient attribute holding its address.
ADDRESS_FIELD = {
    "sms": "phone",
    "wecom_app": "wecom_user",
    "wecom_robot": "wecom_robot",
    "dingtalk": "dingtalk_robot",
    "email": "email",
}


@dataclass(frozen=True)
class Recipient:
    """A person, duty desk, unit contact or group chat that can be notified."""

    id: str
    name: str
    roles: tuple[str, ...] = ()
    title: str | None = None
    phone: str | None = None
    wecom_user: str | None = None
    wecom_robot: str | None = None
    dingtalk_robot: str | None = None
    email: str | None = None
    unit_code: str | None = None
    in_charge_of: tuple[str, ...] = ()
    default_in_charge: bool = False

    def address(self, channel: str) -> str | None:
        """Where this recipient is reached on a channel (None: not on that channel)."""
        if channel == "console":
            return self.phone or self.email or self.wecom_user or self.wecom_robot or self.id
        attr = ADDRESS_FIELD.get(channel)
        return getattr(self, attr) if attr else None


@dataclass(frozen=True)
class Shift:
    """A duty shift: local start and end (an end before the start runs past midnight) and its rotation."""

    name: str
    start: time
    end: time
    rotation: tuple[str, ...]

    def started_on(self, local: datetime) -> date | None:
        """The date this shift started on if it covers the local moment, else None."""
        t = local.timetz().replace(tzinfo=None)
        if self.start <= self.end:
            return local.date() if self.start <= t < self.end else None
        if t >= self.start:
            return local.date()
        if t < self.end:
            return local.date() - timedelta(days=1)
        return None


@dataclass
class Roster:
    """Who is on duty when (值班, 7×24): shifts rotating daily from an anchor date, plus overrides."""

    anchor: date
    shifts: list[Shift]
    overrides: dict[tuple[date, str], str] = field(default_factory=dict)
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))

    def on_duty(self, now: datetime) -> tuple[str, str] | None:
        """(recipient id, shift name) on duty at a moment, or None when no shift covers it."""
        local = now.astimezone(self.tz)
        for shift in self.shifts:
            day = shift.started_on(local)
            if day is None or not shift.rotation:
                continue
            override = self.overrides.get((day, shift.name))
            if override:
                return override, shift.name
            return shift.rotation[(day - self.anchor).days % len(shift.rotation)], shift.name
        return None


@dataclass
class Directory:
    """Everything notify reads from the bundle: recipients, unit contacts, roster, units and policy."""

    recipients: dict[str, Recipient]
    unit_contacts: dict[str, list[Recipient]]
    roster: Roster | None
    units: dict[str, dict[str, Any]]
    policy: NotifyPolicy
    tz: ZoneInfo
    city: str = ""
    _by_id: dict[str, Recipient] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_id = {**{c.id: c for cs in self.unit_contacts.values() for c in cs}, **self.recipients}

    def find(self, recipient_id: str) -> Recipient | None:
        """A recipient or unit contact by id."""
        return self._by_id.get(recipient_id)

    def unit_type(self, code: str | None) -> str | None:
        """The department type of a unit (org.yaml), if known."""
        unit = self.units.get(code or "")
        return unit.get("type") if unit else None

    def on_duty(self, now: datetime) -> Recipient | None:
        """The duty officer at a moment."""
        if self.roster is None:
            return None
        hit = self.roster.on_duty(now)
        return self.recipients.get(hit[0]) if hit else None

    def resolve(
        self,
        roles: list[str] | tuple[str, ...],
        *,
        now: datetime,
        lead_unit: str | None = None,
        co_units: list[str] | tuple[str, ...] = (),
        listed_units: list[str] | tuple[str, ...] = (),
    ) -> list[Recipient]:
        """The recipients for role names, in order, each once.

        `leader_in_charge` is the leader overseeing the lead unit's type (the default one when none
        does); `duty_officer` is whoever the roster has on duty now; `unit:lead`, `unit:co` and
        `unit:listed` are the contacts of those units.
        """
        out: dict[str, Recipient] = {}

        def add(items):
            for r in items:
                out.setdefault(r.id, r)

        for role in roles:
            if role == "duty_officer":
                officer = self.on_duty(now)
                add([officer] if officer else [])
            elif role == "leader_in_charge":
                add(self._leaders_in_charge(lead_unit))
            elif role.startswith("unit:"):
                which = role.split(":", 1)[1]
                codes = {"lead": [lead_unit] if lead_unit else [], "co": list(co_units)}.get(which)
                codes = list(listed_units) if which == "listed" else codes or []
                for code in codes:
                    add(self.contacts_of(code))
            else:
                add(r for r in self.recipients.values() if role in r.roles)
        return list(out.values())

    def contacts_of(self, code: str | None) -> list[Recipient]:
        """A unit's contacts; a unit with none listed is reached through its parent unit (org.yaml)."""
        seen = set()
        while code and code not in seen:
            seen.add(code)
            if self.unit_contacts.get(code):
                return self.unit_contacts[code]
            code = (self.units.get(code) or {}).get("parent")
        return []

    def _leaders_in_charge(self, lead_unit: str | None) -> list[Recipient]:
        leaders = [r for r in self.recipients.values() if "leader_in_charge" in r.roles]
        kind = self.unit_type(lead_unit)
        chosen = [r for r in leaders if kind and kind in r.in_charge_of]
        return chosen or [r for r in leaders if r.default_in_charge] or leaders


def _recipient(raw: dict[str, Any], *, unit_code: str | None = None) -> Recipient:
    def opt(name):
        v = raw.get(name)
        return str(v) if v not in (None, "") else None

    return Recipient(
        id=str(raw.get("id") or f"{unit_code}-contact"),
        name=str(raw["name"]),
        roles=tuple(raw.get("roles") or ()),
        title=opt("title"),
        phone=opt("phone"),
        wecom_user=opt("wecom_user"),
        wecom_robot=opt("wecom_robot"),
        dingtalk_robot=opt("dingtalk_robot"),
        email=opt("email"),
        unit_code=unit_code,
        in_charge_of=tuple(raw.get("in_charge_of") or ()),
        default_in_charge=bool(raw.get("default_in_charge", False)),
    )


def _hhmm(value: str, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError as exc:
        raise PolicyError(f"recipients.yaml: {where}: {value!r} is not a HH:MM time") from exc


def _roster(raw: dict[str, Any] | None, recipients: dict[str, Recipient], tz: ZoneInfo) -> Roster | None:
    if not raw:
        return None
    shifts = []
    for s in raw.get("shifts", []):
        rotation = tuple(s.get("rotation") or ())
        unknown = [r for r in rotation if r not in recipients]
        if unknown:
            raise PolicyError(f"recipients.yaml: duty shift {s.get('name')}: unknown recipients {unknown}")
        shifts.append(
            Shift(str(s["name"]), _hhmm(s["start"], "shift start"), _hhmm(s["end"], "shift end"), rotation)
        )
    overrides = {}
    for o in raw.get("overrides", []) or []:
        if o["recipient"] not in recipients:
            raise PolicyError(f"recipients.yaml: duty override names unknown recipient {o['recipient']!r}")
        overrides[(date.fromisoformat(str(o["date"])), str(o["shift"]))] = o["recipient"]
    return Roster(
        anchor=date.fromisoformat(str(raw["anchor_date"])), shifts=shifts, overrides=overrides, tz=tz
    )


def _bundle_files(bundle_dir: Path) -> tuple[dict[str, Any], dict[str, str]]:
    manifest_path = bundle_dir / "bundle.yaml"
    manifest = yaml.safe_load(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
    manifest = manifest or {}
    files = {"recipients": "recipients.yaml", "notify": "notify.yaml", "org": "org.yaml"}
    files.update(manifest.get("files") or {})
    return manifest, files


_CACHE: dict[tuple, Directory] = {}


def load_directory(bundle_dir: Path) -> Directory:
    """Read recipients.yaml, notify.yaml and the units of org.yaml from the bundle (parsed once per
    version of the files: a process starting several apps, as tests do, reads them once)."""
    _, files = _bundle_files(bundle_dir)
    paths = [bundle_dir / "bundle.yaml", *(bundle_dir / f for f in files.values())]
    key = (str(bundle_dir), *((str(p), p.stat().st_mtime_ns) for p in paths if p.exists()))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = _load_directory(bundle_dir)
    return _CACHE[key]


def _load_directory(bundle_dir: Path) -> Directory:
    manifest, files = _bundle_files(bundle_dir)
    tz = ZoneInfo(str(manifest.get("timezone", "Asia/Shanghai")))
    raw = yaml.safe_load((bundle_dir / files["recipients"]).read_text(encoding="utf-8")) or {}
    recipients: dict[str, Recipient] = {}
    for item in raw.get("recipients", []):
        r = _recipient(item)
        if r.id in recipients:
            raise PolicyError(f"recipients.yaml: recipient id {r.id!r} appears twice")
        recipients[r.id] = r
    contacts: dict[str, list[Recipient]] = {}
    for item in raw.get("unit_contacts", []) or []:
        code = str(item["unit"])
        r = _recipient(
            {"id": item.get("id") or f"contact:{code}:{len(contacts.get(code, []))}", **item}, unit_code=code
        )
        contacts.setdefault(code, []).append(r)
    org_path = bundle_dir / files["org"]
    units = {}
    if org_path.exists():
        org = yaml.safe_load(org_path.read_text(encoding="utf-8")) or {}
        units = {u["code"]: u for u in org.get("units", [])}
    policy = load_policy(bundle_dir / files["notify"])
    return Directory(
        recipients=recipients,
        unit_contacts=contacts,
        roster=_roster(raw.get("duty_roster"), recipients, tz),
        units=units,
        policy=policy,
        tz=tz,
        city=str(manifest.get("name", "")),
    )
