"""The deployment's configuration bundle as grading reads it: directory, gazetteer, taxonomy, policy.

`load_bundle` reads and checks every file and refuses a bad bundle with a message naming the file and
line; `BundleHolder` keeps the bundle in use and, when a reload fails, goes on with the last good one.
"""

import hashlib
import logging
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from services.grading.policy import Policy
from services.grading.yamlines import LineDict, LineList, line_of, load_yaml

log = logging.getLogger("minsheng.grading.bundle")

CITY = "city"
OTHER = "其他"


class BundleError(ValueError):
    """A bundle that cannot be used; `problems` name the file, line and what is wrong."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class UnitType:
    """A department type and the words people use for its units."""

    code: str
    label: str
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Unit:
    """A unit of the organisation directory."""

    code: str
    name: str
    type: str
    parent: str | None
    jurisdiction: str
    street: str | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Street:
    """A street (街道), town (镇) or township (乡) of a district."""

    name: str
    district: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class District:
    """A district, county or county-level city of the gazetteer."""

    code: str
    name: str
    aliases: tuple[str, ...]
    streets: tuple[Street, ...]
    places: tuple[str, ...] = ()


@dataclass(frozen=True)
class CategoryPath:
    """One level-3 category with its parents, the competent department type and its terms."""

    level1: str
    level2: str
    level3: str
    department_type: str
    terms: tuple[str, ...] = ()
    level2_terms: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """level1/level2/level3."""
        return f"{self.level1}/{self.level2}/{self.level3}"


@dataclass
class Bundle:
    """Everything grading needs from the configuration bundle."""

    name: str
    version: str
    units: dict[str, Unit]
    types: dict[str, UnitType]
    districts: dict[str, District]
    city_name: str
    city_aliases: tuple[str, ...]
    outside_patterns: tuple[str, ...]
    categories: list[CategoryPath]
    level1_terms: dict[str, tuple[str, ...]]
    policy: Policy
    source: Path
    digest: str = ""
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    by_type: dict[tuple[str, str], Unit] = field(default_factory=dict)
    by_street: dict[str, Unit] = field(default_factory=dict)

    def __post_init__(self):
        for u in self.units.values():
            if u.street:
                self.by_street[u.street] = u
            else:
                self.by_type.setdefault((u.jurisdiction, u.type), u)

    @property
    def policy_version(self) -> str:
        """The policy's version, stamped on every grading."""
        return self.policy.version

    @property
    def dispatch(self) -> Unit:
        """The dispatch centre that takes what nothing else matches."""
        return self.units[self.policy.dispatch_unit]

    def unit_for(self, *, jurisdiction: str, department_type: str) -> Unit | None:
        """The unit of a department type in a jurisdiction (a district code or `city`)."""
        return self.by_type.get((jurisdiction, department_type))

    def street_unit(self, street: str) -> Unit | None:
        """The office of a street or town, by its gazetteer name."""
        return self.by_street.get(street)

    def type_label(self, code: str) -> str:
        """A department type's Chinese label."""
        t = self.types.get(code)
        return t.label if t else code

    def jurisdiction_name(self, code: str) -> str:
        """A district's name, or the city's."""
        return self.city_name if code == CITY else self.districts[code].name

    @cached_property
    def paths_by_level1(self) -> dict[str, list[CategoryPath]]:
        """The taxonomy's paths grouped by level 1."""
        out: dict[str, list[CategoryPath]] = {}
        for p in self.categories:
            out.setdefault(p.level1, []).append(p)
        return out

    @cached_property
    def outside_re(self) -> re.Pattern | None:
        """Places outside the city, as one pattern."""
        return (
            re.compile("|".join(f"(?:{p})" for p in self.outside_patterns)) if self.outside_patterns else None
        )

    def summary(self) -> dict[str, Any]:
        """What an operator sees of the loaded bundle."""
        return {
            "name": self.name,
            "version": self.version,
            "policy_version": self.policy_version,
            "digest": self.digest,
            "loaded_at": self.loaded_at.isoformat(),
            "units": len(self.units),
            "districts": len(self.districts),
            "streets": sum(len(d.streets) for d in self.districts.values()),
            "categories": len(self.categories),
            "source": str(self.source),
        }


class _Problems:
    """Collects problems with their file and line."""

    def __init__(self):
        self.items: list[str] = []

    def add(self, file: str, line: int | None, message: str) -> None:
        self.items.append(f"{file}:{line if line is not None else '?'}: {message}")


def _read(directory: Path, name: str, problems: _Problems) -> Any:
    import yaml

    path = directory / name
    try:
        data = load_yaml(path)
    except FileNotFoundError:
        problems.add(name, None, "file is missing")
        return LineDict()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problems.add(name, mark.line + 1 if mark else None, f"not valid YAML: {exc.problem or exc}")
        return LineDict()
    except yaml.YAMLError as exc:
        problems.add(name, None, f"not valid YAML: {exc}")
        return LineDict()
    if data is None:
        return LineDict()
    if not isinstance(data, dict):
        problems.add(name, getattr(data, "line", 1), "the file must hold a mapping")
        return LineDict()
    return data


def _strs(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def _line(node: Any, key: str | None = None) -> int | None:
    if key is not None and isinstance(node, LineDict):
        return node.key_lines.get(key, node.line)
    return getattr(node, "line", None)


def _load_org(org: LineDict, file: str, problems: _Problems) -> tuple[dict[str, UnitType], dict[str, Unit]]:
    types: dict[str, UnitType] = {}
    for code, raw in (org.get("types") or {}).items():
        if not isinstance(raw, dict) or not raw.get("label"):
            problems.add(file, _line(org.get("types"), code), f"type {code!r} needs a label")
            continue
        types[str(code)] = UnitType(str(code), str(raw["label"]), _strs(raw.get("aliases")))
    units: dict[str, Unit] = {}
    lines: dict[str, int | None] = {}
    raw_units = org.get("units") or LineList()
    if not raw_units:
        problems.add(file, _line(org), "the directory has no units")
    for i, raw in enumerate(raw_units):
        line = raw_units.item_lines[i] if isinstance(raw_units, LineList) else None
        if not isinstance(raw, dict):
            problems.add(file, line, "a unit must be a mapping")
            continue
        missing = [k for k in ("code", "name", "type") if not raw.get(k)]
        if missing:
            problems.add(file, line, f"unit #{i + 1} lacks {', '.join(missing)}")
            continue
        u = Unit(
            code=str(raw["code"]),
            name=str(raw["name"]),
            type=str(raw["type"]),
            parent=str(raw["parent"]) if raw.get("parent") else None,
            jurisdiction=str(raw.get("jurisdiction") or CITY),
            street=str(raw["street"]) if raw.get("street") else None,
            aliases=_strs(raw.get("aliases")),
        )
        if u.code in units:
            problems.add(file, line, f"unit code {u.code!r} appears twice (first on line {lines[u.code]})")
            continue
        if types and u.type not in types:
            problems.add(file, line, f"unit {u.code!r} has unknown type {u.type!r}")
        units[u.code] = u
        lines[u.code] = line
    for u in units.values():
        if u.parent is not None and u.parent not in units:
            problems.add(file, lines[u.code], f"unit {u.code!r} names unknown parent {u.parent!r}")
    # A cycle in the directory: following parents from some unit comes back to it.
    reported: set[str] = set()
    for start in units:
        chain, cur = [start], units[start].parent
        while cur is not None and cur in units and cur not in chain:
            chain.append(cur)
            cur = units[cur].parent
        if cur is not None and cur in chain and cur not in reported:
            cycle = [*chain[chain.index(cur) :], cur]
            reported.update(cycle)
            problems.add(file, lines[cur], f"cycle in the directory: {' → '.join(cycle)}")
    return types, units


def _load_gazetteer(gaz: LineDict, file: str, problems: _Problems):
    city = gaz.get("city") or {}
    city_name = str(city.get("name") or "本市")
    city_aliases = _strs(city.get("aliases")) or (city_name,)
    outside = _strs(gaz.get("outside_patterns"))
    for i, pattern in enumerate(outside):
        try:
            re.compile(pattern)
        except re.error as exc:
            problems.add(file, line_of(gaz, ("outside_patterns", i)), f"bad pattern {pattern!r}: {exc}")
    districts: dict[str, District] = {}
    names: dict[str, tuple[str, int | None]] = {}

    def claim(name: str, owner: str, line: int | None) -> None:
        if name in names and names[name][0] != owner:
            problems.add(
                file, line, f"name {name!r} is used by {owner} and {names[name][0]} (line {names[name][1]})"
            )
        names.setdefault(name, (owner, line))

    raw_districts = gaz.get("districts") or LineList()
    for i, raw in enumerate(raw_districts):
        line = line_of(gaz, ("districts", i))
        if not isinstance(raw, dict) or not raw.get("code") or not raw.get("name"):
            problems.add(file, line, f"district #{i + 1} needs a code and a name")
            continue
        code = str(raw["code"])
        if code == CITY or code in districts:
            problems.add(file, line, f"district code {code!r} is reserved or appears twice")
            continue
        streets = []
        for j, s in enumerate(raw.get("streets") or []):
            sline = line_of(gaz, ("districts", i, "streets", j))
            sname = s.get("name") if isinstance(s, dict) else s
            if not sname:
                problems.add(file, sline, "a street needs a name")
                continue
            st = Street(str(sname), code, _strs(s.get("aliases")) if isinstance(s, dict) else ())
            for n in (st.name, *st.aliases):
                claim(n, f"{code}/{st.name}", sline)
            streets.append(st)
        d = District(
            code=code,
            name=str(raw["name"]),
            aliases=_strs(raw.get("aliases")),
            streets=tuple(streets),
            places=_strs(raw.get("places")),
        )
        for n in (d.name, *d.aliases, *d.places):
            claim(n, code, line)
        districts[code] = d
    if not districts:
        problems.add(file, _line(gaz), "the gazetteer has no districts")
    short = gaz.get("street_short_forms") or {}
    if short:
        where = line_of(gaz, ("street_short_forms",))
        districts = _with_short_forms(districts, names, short, file, where, problems)
    return city_name, city_aliases, outside, districts


def _with_short_forms(districts, names, spec, file, line, problems) -> dict[str, District]:
    """Streets with their names less 街道/镇/乡 as aliases (新开铺, 左家塘): what people write. A short
    form that is already a name, that two streets would share or that the spec excepts is left out."""
    try:
        min_chars = int(spec.get("min_chars", 3))
        suffixes = tuple(str(x) for x in spec.get("suffixes") or ("街道", "镇", "乡"))
        excepted = {str(x) for x in spec.get("except") or ()}
    except (TypeError, ValueError, AttributeError):
        problems.add(file, line, "street_short_forms needs min_chars (a number) and suffixes (a list)")
        return districts
    found: dict[str, list[tuple[str, str]]] = {}
    for d in districts.values():
        for st in d.streets:
            for suffix in suffixes:
                base = st.name.removesuffix(suffix)
                if base != st.name and len(base) >= min_chars and base not in names and base not in excepted:
                    found.setdefault(base, []).append((d.code, st.name))
                    break
    extra: dict[tuple[str, str], tuple[str, ...]] = {}
    for base, owners in found.items():
        if len(owners) == 1:
            extra[owners[0]] = (base,)
    return {
        code: replace(
            d,
            streets=tuple(
                replace(st, aliases=st.aliases + extra[(code, st.name)]) if (code, st.name) in extra else st
                for st in d.streets
            ),
        )
        for code, d in districts.items()
    }


def _load_taxonomy(tax: LineDict, file: str, problems: _Problems):
    categories: list[CategoryPath] = []
    level1_terms: dict[str, tuple[str, ...]] = {}
    lines: dict[str, int | None] = {}
    raw1 = tax.get("categories") or LineList()
    if not raw1:
        problems.add(file, _line(tax), "the taxonomy has no categories")
    for i, c1 in enumerate(raw1):
        loc1 = ("categories", i)
        if not isinstance(c1, dict) or not c1.get("name"):
            problems.add(file, line_of(tax, loc1), "a level-1 category needs a name")
            continue
        n1, t1 = str(c1["name"]), c1.get("department_type")
        level1_terms[n1] = _strs(c1.get("terms"))
        children2 = c1.get("children") or []
        if not children2:
            problems.add(file, line_of(tax, loc1), f"category {n1!r} has no level-2 children")
        for j, c2 in enumerate(children2):
            loc2 = (*loc1, "children", j)
            c2 = c2 if isinstance(c2, dict) else {"name": c2}
            n2 = str(c2.get("name") or "")
            t2 = c2.get("department_type", t1)
            terms2 = _strs(c2.get("terms"))
            children3 = c2.get("children") or [OTHER]
            for k, c3 in enumerate(children3):
                loc3 = (*loc2, "children", k)
                c3 = c3 if isinstance(c3, dict) else {"name": c3}
                n3 = str(c3.get("name") or "")
                t3 = c3.get("department_type", t2)
                if not n2 or not n3:
                    problems.add(file, line_of(tax, loc3), f"a category under {n1!r} has no name")
                    continue
                if not t3:
                    problems.add(file, line_of(tax, loc3), f"category {n1}/{n2}/{n3} has no department_type")
                    continue
                path = CategoryPath(n1, n2, n3, str(t3), _strs(c3.get("terms")), terms2)
                categories.append(path)
                lines[path.label] = line_of(tax, loc3)
    return categories, level1_terms, lines


def load_bundle(directory: Path) -> Bundle:
    """Read and check a bundle directory; raises BundleError naming each problem's file and line."""
    directory = Path(directory)
    problems = _Problems()
    meta = _read(directory, "bundle.yaml", problems)
    files = meta.get("files") or {}
    names = {k: str(files.get(k, f"{k}.yaml")) for k in ("org", "gazetteer", "taxonomy", "policy")}
    org = _read(directory, names["org"], problems)
    gaz = _read(directory, names["gazetteer"], problems)
    tax = _read(directory, names["taxonomy"], problems)
    raw_policy = _read(directory, names["policy"], problems)

    types, units = _load_org(org, names["org"], problems)
    city_name, city_aliases, outside, districts = _load_gazetteer(gaz, names["gazetteer"], problems)
    categories, level1_terms, category_lines = _load_taxonomy(tax, names["taxonomy"], problems)

    policy = None
    try:
        policy = Policy.model_validate(raw_policy)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            where = ".".join(str(p) for p in loc) or "policy"
            problems.add(names["policy"], line_of(raw_policy, loc), f"{where}: {err['msg']}")

    # Cross-file checks: every reference resolves.
    for u in units.values():
        if u.jurisdiction != CITY and u.jurisdiction not in districts:
            problems.add(names["org"], None, f"unit {u.code!r} has unknown jurisdiction {u.jurisdiction!r}")
        if u.street is not None:
            d = districts.get(u.jurisdiction)
            if d is None or u.street not in {s.name for s in d.streets}:
                problems.add(names["org"], None, f"unit {u.code!r} names unknown street {u.street!r}")
    served = {u.type for u in units.values()}
    for path in categories:
        if path.department_type not in served:
            problems.add(
                names["taxonomy"],
                category_lines.get(path.label),
                f"category {path.label} maps to department type {path.department_type!r}, "
                "which no unit of the directory has",
            )
    if policy is not None:
        if policy.dispatch_unit not in units:
            problems.add(
                names["policy"],
                line_of(raw_policy, ("dispatch_unit",)),
                f"dispatch_unit {policy.dispatch_unit!r} is not in the directory",
            )
        for i, topic in enumerate(policy.risk_topics):
            for d in topic.districts:
                if d not in districts:
                    problems.add(
                        names["policy"],
                        line_of(raw_policy, ("risk_topics", i)),
                        f"risk topic {topic.name!r} names unknown district {d!r}",
                    )
        labels = [p.label for p in categories]
        for i, rule in enumerate(policy.routing.city_level):
            where = line_of(raw_policy, ("routing", "city_level", i))
            if not any(lb == rule.category or lb.startswith(rule.category + "/") for lb in labels):
                problems.add(
                    names["policy"], where, f"routing.city_level names unknown category {rule.category!r}"
                )
            for d in rule.districts:
                if d not in districts:
                    problems.add(names["policy"], where, f"routing.city_level names unknown district {d!r}")
        for t in policy.routing.street_lead_types:
            if t not in served:
                problems.add(
                    names["policy"],
                    line_of(raw_policy, ("routing", "street_lead_types")),
                    f"routing.street_lead_types names unknown department type {t!r}",
                )
    if problems.items:
        raise BundleError(problems.items)
    assert policy is not None
    digest = hashlib.sha256()
    for key in ("org", "gazetteer", "taxonomy", "policy"):
        digest.update((directory / names[key]).read_bytes())
    return Bundle(
        name=str(meta.get("name") or directory.name),
        version=str(meta.get("version") or "0"),
        units=units,
        types=types,
        districts=districts,
        city_name=city_name,
        city_aliases=city_aliases,
        outside_patterns=outside,
        categories=categories,
        level1_terms=level1_terms,
        policy=policy,
        source=directory,
        digest=digest.hexdigest()[:16],
    )


@dataclass
class ReloadResult:
    """What a reload did."""

    ok: bool
    bundle: Bundle
    problems: list[str] = field(default_factory=list)


class BundleHolder:
    """The bundle in use; a failed reload keeps the last good one and remembers why it failed."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.current: Bundle = load_bundle(self.directory)
        self.last_error: list[str] = []
        self.last_attempt_at: datetime | None = None
        self.listeners: list = []

    def reload(self) -> ReloadResult:
        """Load the directory again; on failure keep the current bundle."""
        self.last_attempt_at = datetime.now(UTC)
        try:
            bundle = load_bundle(self.directory)
        except BundleError as exc:
            self.last_error = exc.problems
            log.error("bundle reload refused; keeping version %s: %s", self.current.policy_version, exc)
            return ReloadResult(False, self.current, exc.problems)
        self.current = bundle
        self.last_error = []
        for listener in self.listeners:
            listener(bundle)
        log.info("bundle %s loaded (policy %s, digest %s)", bundle.name, bundle.policy_version, bundle.digest)
        return ReloadResult(True, bundle)
