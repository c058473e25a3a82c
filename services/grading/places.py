"""Where a matter is: districts, counties and streets named in the text, by the gazetteer."""

from dataclasses import dataclass, field

from services.grading.bundle import Bundle
from services.grading.text import TermMatcher


@dataclass
class Places:
    """What the text says about where."""

    districts: list[str] = field(default_factory=list)  # gazetteer codes, in order of first mention
    streets: list[str] = field(default_factory=list)  # gazetteer street names
    city_wide: bool = False  # names the city (全市, A市) and no district
    outside: list[str] = field(default_factory=list)  # names of places outside the city
    names_city: bool = False  # names the city itself (A市, 全市)
    evidence: dict[str, list[str]] = field(default_factory=dict)  # district code → the words that told

    @property
    def only_outside(self) -> bool:
        """Names only places outside the city."""
        return bool(self.outside) and not self.districts and not self.names_city

    @property
    def in_city(self) -> bool:
        """Names the city or one of its districts."""
        return bool(self.districts) or self.names_city


class Locator:
    """Finds gazetteer names in texts (one compiled pattern for the whole gazetteer)."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle
        self.owner: dict[str, tuple[str, str | None]] = {}  # name → (district, street or None)
        for d in bundle.districts.values():
            for n in (d.name, *d.aliases, *d.places):
                self.owner[n] = (d.code, None)
            for s in d.streets:
                for n in (s.name, *s.aliases):
                    self.owner[n] = (d.code, s.name)
        self.matcher = TermMatcher([*self.owner, *bundle.city_aliases])
        self.city_names = set(bundle.city_aliases)

    def locate(self, text: str, *, district_hint: str | None = None, title: str | None = None) -> Places:
        """Districts and streets named in the text; a channel's district code comes first when valid.

        `title`: the message's title (the text's first line). A title that names places of one district
        says where the matter is; districts and streets only the body names (where the writer lives,
        a comparison) are then left out of routing."""
        out = Places()
        if district_hint and district_hint in self.bundle.districts:
            out.districts.append(district_hint)
            out.evidence[district_hint] = ["location.district_code"]
        saw_city = False
        names = self.matcher.find(text)
        in_title = set(self.matcher.find(title)) if title else set()
        focus = {self.owner[n][0] for n in in_title if n in self.owner}
        if district_hint or len(focus) != 1:
            focus = set()
        title_streets = {self.owner[n][1] for n in in_title if n in self.owner and self.owner[n][1]}
        for name in names:
            if name in self.city_names and name not in self.owner:
                saw_city = True
                continue
            code, street = self.owner[name]
            if focus and code not in focus:
                continue
            if street and len(title_streets) == 1 and street not in title_streets:
                continue
            if code not in out.districts:
                out.districts.append(code)
            out.evidence.setdefault(code, [])
            if name not in out.evidence[code]:
                out.evidence[code].append(name)
            if street and street not in out.streets:
                out.streets.append(street)
        out.names_city = saw_city
        out.city_wide = saw_city and not out.districts
        if self.bundle.outside_re is not None:
            out.outside = sorted(set(self.bundle.outside_re.findall(text)))
            if out.outside and not saw_city and self._only_town_names(out):
                # Towns and streets share names across the country: beside another city named
                # outright, a town name alone does not put the matter in this city.
                out.districts, out.streets, out.evidence = [], [], {}
        return out

    def _only_town_names(self, places: Places) -> bool:
        """Every district was found by a street or town name only (no district name, no landmark)."""
        return all(
            w != "location.district_code" and self.owner.get(w, (None, None))[1] is not None
            for words in places.evidence.values()
            for w in words
        )
