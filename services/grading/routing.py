"""Who must handle a matter (属地管理、分级负责、谁主管谁负责, DESIGN §2), always with the reason."""

from dataclasses import dataclass, field

from services.grading.bundle import CITY, Bundle, Unit
from services.grading.places import Places


@dataclass
class Route:
    """The lead unit, the co-handlers and why."""

    lead: Unit
    co: list[Unit] = field(default_factory=list)
    reason: str = ""
    rule: str = ""  # a stable name of the rule that decided


def _co_departments(
    bundle: Bundle, lead_type: str, department_scores: dict[str, float], jurisdiction: str
) -> list[Unit]:
    """Units of other competent departments whose terms weigh enough (several departments → co-handle)."""
    routing = bundle.policy.routing
    lead_score = department_scores.get(lead_type, 0.0)
    out: list[Unit] = []
    for dept, score in sorted(department_scores.items(), key=lambda kv: -kv[1]):
        if dept == lead_type or score < routing.co_department_min_score or score < 0.5 * lead_score:
            continue
        unit = bundle.unit_for(jurisdiction=jurisdiction, department_type=dept) or bundle.unit_for(
            jurisdiction=CITY, department_type=dept
        )
        if unit is not None and unit not in out:
            out.append(unit)
    return out[: routing.max_co_units]


def competent_type(
    *, bundle: Bundle, category_type: str | None, department_scores: dict[str, float]
) -> str | None:
    """The department type routing uses: the category's, unless the taxonomy's terms clearly name another.

    The level-1 model knows only the categories of its training data; the level-2/3 terms of the whole
    taxonomy (交警, 落户, 医保报销 …) still tell the competent department when they weigh enough."""
    routing = bundle.policy.routing
    if routing.term_department_min_score <= 0 or not department_scores:
        return category_type
    best, score = max(department_scores.items(), key=lambda kv: kv[1])
    if best == category_type or score < routing.term_department_min_score:
        return category_type
    if score < routing.term_department_margin * department_scores.get(category_type or "", 0.0):
        return category_type
    return best


class CityLevel:
    """Policy routing.city_level resolved against the taxonomy once per bundle: for which districts the
    city's department handles a matter of a listed category itself."""

    def __init__(self, bundle: Bundle):
        routing = bundle.policy.routing
        self.min_score = routing.term_department_min_score
        self.rules: list[tuple[frozenset[str], frozenset[str], frozenset[str]]] = []
        for rule in routing.city_level:
            paths = [
                p
                for p in bundle.categories
                if p.label == rule.category or p.label.startswith(rule.category + "/")
            ]
            labels = frozenset(p.label for p in paths)
            self.rules.append(
                (labels, frozenset(p.department_type for p in paths), frozenset(rule.districts))
            )

    def districts(
        self, *, department_type: str | None, category: str | None, category_scores: dict[str, float]
    ) -> frozenset[str]:
        """The districts for this matter; it is of a listed category when classified so, or when that
        category's terms weigh at least routing.term_department_min_score."""
        out: frozenset[str] = frozenset()
        for labels, types, districts in self.rules:
            if department_type not in types:
                continue
            weight = max((category_scores.get(lb, 0.0) for lb in labels), default=0.0)
            if category in labels or (self.min_score > 0 and weight >= self.min_score):
                out |= districts
        return out


def route_by_history(
    *,
    bundle: Bundle,
    label: str,
    confidence: float,
    places: Places,
    department_type: str | None,
    remembered_street: str | None = None,
) -> Route | None:
    """Route as this city's history says matters like this are handled; None when it cannot apply."""
    dept, _, level = label.partition("@")
    why = f"依据本市办理记录（同类事项多由{bundle.type_label(dept)}办理，置信度 {confidence:.2f}）"
    one = places.districts[0] if len(places.districts) == 1 else None
    if level == "street":
        streets = [
            s
            for s in places.streets
            if (u := bundle.street_unit(s)) and (one is None or u.jurisdiction == one)
        ]
        remembered = ""
        office = bundle.street_unit(remembered_street) if remembered_street and not streets else None
        if office is not None and (one is None or office.jurisdiction == one):
            streets, remembered = [remembered_street], "（据以往同一地点留言的办理单位）"
        if len(streets) != 1:
            return None
        office = bundle.street_unit(streets[0])
        co = []
        if department_type:
            u = bundle.unit_for(jurisdiction=office.jurisdiction, department_type=department_type)
            co = [u] if u else []
        return Route(office, co, reason=f"{why}：属地 {streets[0]}{remembered} 牵头", rule="history_street")
    if level == "district":
        if one is None:
            return None
        unit = bundle.unit_for(jurisdiction=one, department_type=dept)
        if unit is None:
            return None
        return Route(unit, reason=f"{why}：属地 {bundle.districts[one].name}", rule="history_district")
    if level == "city":
        if len(places.districts) == 1 and dept == "government":
            return None  # a local matter of a district: the rules decide
        unit = bundle.unit_for(jurisdiction=CITY, department_type=dept)
        if unit is None:
            return None
        co = [u for d in places.districts if (u := bundle.unit_for(jurisdiction=d, department_type=dept))]
        return Route(
            unit, co[: bundle.policy.routing.max_co_units], reason=f"{why}：市级承办", rule="history_city"
        )
    return None


def route(
    *,
    bundle: Bundle,
    department_type: str | None,
    places: Places,
    department_scores: dict[str, float] | None = None,
    superior_unit: str | None = None,
    superior_issuer: str | None = None,
    learned: list[tuple[str, float]] | None = None,
    remembered_street: str | None = None,
    city_level: frozenset[str] = frozenset(),
) -> Route:
    """The DESIGN §2 routing rules, first match wins (refined by the city's history when it is sure).

    `learned`: the routing model's likeliest handlings, best first, as (label, probability).
    `city_level`: districts for which the city's department handles this matter (`CityLevel`)."""
    scores = department_scores or {}
    dispatch = bundle.dispatch
    if superior_unit:
        unit = bundle.units.get(superior_unit)
        if unit is not None:
            return Route(
                unit,
                reason=f"上级转办指定承办单位（{superior_issuer or '上级'}）：{unit.name}",
                rule="superior",
            )
    if places.only_outside:
        names = "、".join(places.outside[:3])
        return Route(
            dispatch, reason=f"反映地点（{names}）不属本市管辖，转热线中心按程序转办", rule="outside"
        )
    # The history's likeliest handling that fits what the text says of the place: "a street office"
    # with no street known gives way to the next likeliest, e.g. the district's housing bureau.
    for label, confidence in learned or ():
        if confidence < bundle.policy.routing.history_min_confidence:
            break
        r = route_by_history(
            bundle=bundle,
            label=label,
            confidence=confidence,
            places=places,
            department_type=department_type,
            remembered_street=remembered_street,
        )
        if r is not None:
            return r
    if department_type is None:
        return Route(dispatch, reason="未能识别事项类别和主管部门，转热线中心人工分派", rule="unknown")
    label = bundle.type_label(department_type)
    city_unit = bundle.unit_for(jurisdiction=CITY, department_type=department_type)

    if len(places.districts) == 1:
        code = places.districts[0]
        dname = bundle.districts[code].name
        unit = bundle.unit_for(jurisdiction=code, department_type=department_type)
        if code in city_level and city_unit is not None:
            return Route(
                city_unit,
                [unit] if unit else [],
                reason=f"市级统一管理：{dname}的此类事项由市级{label}承办"
                + (f"，{unit.name}协办" if unit else ""),
                rule="city_level",
            )
        streets = [
            s for s in places.streets if bundle.street_unit(s) and bundle.street_unit(s).jurisdiction == code
        ]
        if len(streets) == 1 and department_type in bundle.policy.routing.street_lead_types:
            office = bundle.street_unit(streets[0])
            co = [unit] if unit else []
            co += [u for u in _co_departments(bundle, department_type, scores, code) if u not in co]
            return Route(
                office,
                co[: bundle.policy.routing.max_co_units],
                reason=f"属地管理：{dname}{streets[0]}，{label}事项由街道（乡镇）牵头"
                + (f"，{co[0].name}协办" if co else ""),
                rule="street",
            )
        if unit is not None:
            co = _co_departments(bundle, department_type, scores, code)
            return Route(
                unit,
                co,
                reason=f"属地管理：{dname}，主管部门{label}" + ("；涉及多个部门，其余部门协办" if co else ""),
                rule="district",
            )
        if city_unit is not None:
            return Route(city_unit, reason=f"{dname}无{label}部门，由市级部门承办", rule="city_only_type")
        gov = bundle.unit_for(jurisdiction=code, department_type="government")
        if gov is not None:
            return Route(
                gov, reason=f"属地管理：{dname}无对应部门，由区县政府承办", rule="district_government"
            )

    if len(places.districts) > 1:
        names = "、".join(bundle.districts[d].name for d in places.districts)
        co = [
            u
            for d in places.districts
            if (u := bundle.unit_for(jurisdiction=d, department_type=department_type))
        ]
        if city_unit is not None:
            return Route(
                city_unit,
                co[: bundle.policy.routing.max_co_units],
                reason=f"涉及多个区县（{names}）：市级{label}牵头，相关区县协办",
                rule="several_districts",
            )
        return Route(
            dispatch, co, reason=f"涉及多个区县（{names}）且无市级{label}部门，转热线中心协调", rule="unknown"
        )

    if city_unit is not None:
        co = _co_departments(bundle, department_type, scores, CITY)
        why = "涉及全市" if places.city_wide else "未指明区县"
        return Route(
            city_unit,
            co,
            reason=f"{why}：市级主管部门（{label}）" + ("；涉及多个部门，其余部门协办" if co else ""),
            rule="city",
        )
    return Route(dispatch, reason=f"无{label}主管部门，转热线中心人工分派", rule="unknown")
