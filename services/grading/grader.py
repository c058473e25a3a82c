"""The grading engine: classify, locate, route, score and set the clocks. Pure CPU, no database.

One `Engine` per loaded bundle (and model); `grade` handles one message, `score_incident` an incident
as a whole when messages join it.
"""

from dataclasses import dataclass
from datetime import datetime

from schema.dto import Category, Deadlines, Factor, UnitRef
from schema.enums import Level, RequestType, ResponseType, WarningClass
from schema.events import MessageReceivedData
from services.grading.bundle import Bundle, Unit
from services.grading.classifier import CategoryModel, Classifier, Prediction
from services.grading.places import Locator, Places
from services.grading.routing import CityLevel, Route, competent_type, route
from services.grading.routing_model import RouteModel, memory_words, route_text
from services.grading.scoring import Facts, Scorer
from services.grading.text import message_text
from services.grading.workdays import WorkCalendar, deadlines_for


@dataclass
class Grading:
    """The outcome of grading one message."""

    category: Category | None
    prediction: Prediction
    department_type: str | None
    request_type: RequestType
    request_type_inferred: bool
    places: Places
    score: float
    level: Level
    factors: list[Factor]
    warning_class: WarningClass
    response_type: ResponseType
    route: Route
    deadlines: Deadlines
    policy_version: str

    @property
    def districts(self) -> list[str]:
        return self.places.districts


class Engine:
    """Everything grading computes from a bundle (and optionally a trained model)."""

    def __init__(
        self,
        bundle: Bundle,
        model: CategoryModel | None = None,
        *,
        route_model: RouteModel | None = None,
        timezone: str = "Asia/Shanghai",
    ):
        self.route_model = route_model
        self.timezone = timezone
        self.bundle = bundle
        self.policy = bundle.policy
        self.classifier = Classifier(bundle, model)
        self.locator = Locator(bundle)
        self.city_level = CityLevel(bundle)
        self.calendar = WorkCalendar(bundle.policy, timezone)
        self.scorer = Scorer(bundle.policy, self.calendar)

    def grade(self, msg: MessageReceivedData, *, now: datetime | None = None) -> Grading:
        """Grade one message on its own."""
        text = message_text(msg.title, msg.content)
        prediction = self.classifier.classify(text, hint=msg.category_hint)
        hint = msg.location.district_code if msg.location else None
        loc_text = text if not (msg.location and msg.location.text) else f"{text}\n{msg.location.text}"
        places = self.locator.locate(loc_text, district_hint=hint, title=msg.title)
        inferred = msg.request_type is None
        request_type = msg.request_type or self.classifier.request_type(text)
        facts = Facts(
            text=text,
            received_at=msg.received_at,
            now=now or msg.received_at,
            channels=[msg.channel.value],
            metrics=msg.metrics.model_dump() if msg.metrics else {},
            superior_issuers=[msg.superior.issuer] if msg.superior else [],
            districts=places.districts,
            request_type=request_type,
        )
        s = self.scorer.score(facts)
        path = prediction.path
        dept = competent_type(
            bundle=self.bundle,
            category_type=path.department_type if path else None,
            department_scores=prediction.department_scores,
        )
        learned, remembered = None, None
        if self.route_model is not None and not places.only_outside:
            learned = self.route_model.ranked([route_text(msg.title, msg.content, places)])[0]
            if any(label.endswith("@street") for label, _ in learned) and not places.streets:
                hit = self.route_model.street_for(memory_words(msg.title or msg.content[:60]))
                remembered = hit[0] if hit else None
        r = route(
            bundle=self.bundle,
            department_type=dept,
            places=places,
            department_scores=prediction.department_scores,
            superior_unit=msg.superior.unit_code if msg.superior else None,
            superior_issuer=msg.superior.issuer if msg.superior else None,
            learned=learned,
            remembered_street=remembered,
            city_level=self.city_level.districts(
                department_type=dept,
                category=path.label if path else None,
                category_scores=prediction.category_scores,
            ),
        )
        deadlines = deadlines_for(
            policy=self.policy, calendar=self.calendar, level=s.level, received_at=msg.received_at
        )
        if (
            msg.superior
            and msg.superior.deadline
            and (deadlines.reply_due is None or msg.superior.deadline < deadlines.reply_due)
        ):
            deadlines.reply_due = msg.superior.deadline
        category = (
            Category(
                level1=path.level1, level2=path.level2, level3=path.level3, confidence=prediction.confidence
            )
            if path
            else None
        )
        return Grading(
            category=category,
            prediction=prediction,
            department_type=dept,
            request_type=request_type,
            request_type_inferred=inferred,
            places=places,
            score=s.score,
            level=s.level,
            factors=s.factors,
            warning_class=s.warning_class,
            response_type=s.response_type,
            route=r,
            deadlines=deadlines,
            policy_version=self.bundle.policy_version,
        )

    def score_incident(self, facts: Facts):
        """Score an incident as a whole."""
        return self.scorer.score(facts)

    def deadlines(self, level: Level, received_at: datetime) -> Deadlines:
        """The clocks for a level."""
        return deadlines_for(policy=self.policy, calendar=self.calendar, level=level, received_at=received_at)


def unit_ref(unit: Unit) -> UnitRef:
    """A directory unit as other services see it."""
    return UnitRef(code=unit.code, name=unit.name)
