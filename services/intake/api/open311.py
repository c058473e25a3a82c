"""The Open311 GeoReport v2 facade under /open311/v2/ (http://wiki.open311.org/GeoReport_v2).

GET routes are public, as the spec has them; POST requests needs a channel client's `api_key`
(query string or form field, which the gateway accepts for /open311/ paths). Each format has its
own literal route (`services.json`, `services.xml`) because the gateway routes whole path segments.
"""

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlmodel import select

from kit.deps import SessionDep, StateDep
from kit.security import CLIENT, PUBLIC, CurrentPrincipal, access
from schema.enums import CitizenStatus, RequestType
from services.intake import metrics, rules, service
from services.intake.api.deps import ConfigDep, VaultDep
from services.intake.api.messages import client_scope
from services.intake.api.schemas import MessageIn
from services.intake.models import Message, MessageEvent
from services.intake.open311 import FORMATS, Open311Error, render, request_view
from services.intake.pii import normalize_email, normalize_phone

router = APIRouter(prefix="/open311/v2", tags=["open311"])

_TRUE = {"true", "1", "yes"}


def _split_file(name: str) -> tuple[str, str]:
    ident, dot, fmt = name.rpartition(".")
    if not dot or fmt not in FORMATS or not ident:
        raise Open311Error(404, "use <id>.json or <id>.xml", "json")
    return ident, fmt


def _check_jurisdiction(params, config, fmt: str) -> None:
    given = params.get("jurisdiction_id")
    if given and given != config.open311.jurisdiction_id:
        raise Open311Error(404, f"jurisdiction_id {given!r} is not served here", fmt)


def _parse_time(raw: str, name: str, fmt: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError:
        raise Open311Error(400, f"{name} must be a w3c date-time such as 2010-01-01T00:00:00Z", fmt) from None
    if value.tzinfo is None:
        raise Open311Error(400, f"{name} needs a time zone (Z or ±HH:MM)", fmt)
    return value


# --- services ------------------------------------------------------------------------------------------


def _services_route(fmt: str):
    async def list_services(request: Request, state: StateDep, config: ConfigDep) -> Response:
        _check_jurisdiction(request.query_params, config, fmt)
        return render(fmt, state.open311.service_list(), root="services", item="service")

    list_services.__doc__ = f"GET Service List ({fmt.upper()}): one service per category of the taxonomy."
    return list_services


for _fmt in FORMATS:
    router.add_api_route(
        f"/services.{_fmt}",
        _services_route(_fmt),
        methods=["GET"],
        summary=f"Open311 service list ({_fmt})",
        response_class=Response,
        **access(PUBLIC),
    )


@router.get(
    "/services/{service_file}",
    summary="Open311 service definition",
    response_class=Response,
    **access(PUBLIC),
)
async def service_definition(
    service_file: str, request: Request, state: StateDep, config: ConfigDep
) -> Response:
    """GET Service Definition: `<service_code>.json` or `.xml`."""
    code, fmt = _split_file(service_file)
    _check_jurisdiction(request.query_params, config, fmt)
    if code not in state.open311.services:
        raise Open311Error(404, f"service_code {code} not found", fmt)
    return render(fmt, state.open311.definition(code), root="service_definition", item=None)


# --- requests ------------------------------------------------------------------------------------------


async def _notes(session, ids: list[str]) -> dict[str, str]:
    """The latest public timeline text of each message (its status_notes)."""
    out: dict[str, str] = {}
    for i in range(0, len(ids), 500):
        q = (
            select(MessageEvent.message_id, MessageEvent.text)
            .where(MessageEvent.message_id.in_(ids[i : i + 500]), MessageEvent.public.is_(True))
            .order_by(MessageEvent.at, MessageEvent.id)
        )
        for message_id, text in (await session.exec(q)).all():
            out[message_id] = text
    return out


def _listed(config):
    return (
        Message.channel.in_(config.open311.listed_channels),
        Message.confidential.is_(False),
    )


async def _views(session, state, config, rows: list[Message]) -> list[dict[str, Any]]:
    notes = await _notes(session, [m.id for m in rows])
    tz = ZoneInfo(state.settings.timezone)
    return [request_view(m, catalogue=state.open311, notes=notes.get(m.id), tz=tz) for m in rows]


def _requests_get_route(fmt: str):
    async def get_requests(
        request: Request, session: SessionDep, state: StateDep, config: ConfigDep
    ) -> Response:
        params = request.query_params
        _check_jurisdiction(params, config, fmt)
        o311 = config.open311
        q = select(Message).where(*_listed(config))
        ids = [s for s in params.get("service_request_id", "").split(",") if s.strip()]
        if ids:  # the spec: service_request_id overrides every other filter
            q = q.where(Message.id.in_([s.strip() for s in ids][: o311.max_results]))
        else:
            now = state.clock.now()
            start = _parse_time(params["start_date"], "start_date", fmt) if params.get("start_date") else None
            end = _parse_time(params["end_date"], "end_date", fmt) if params.get("end_date") else None
            default = timedelta(days=o311.default_window_days)
            if start is None and end is None:
                start, end = now - default, now
            elif start is None:
                start = end - default
            elif end is None:
                end = min(start + default, now) if start < now else start + default
            if start > end:
                raise Open311Error(400, "start_date is after end_date", fmt)
            if end - start > timedelta(days=o311.max_window_days):
                raise Open311Error(
                    400, f"the date range may not span more than {o311.max_window_days} days", fmt
                )
            q = q.where(Message.received_at >= start, Message.received_at <= end)
            codes = [c.strip() for c in params.get("service_code", "").split(",") if c.strip()]
            if codes:
                unknown = [c for c in codes if c not in state.open311.services]
                if unknown:
                    raise Open311Error(400, f"unknown service_code: {', '.join(unknown)}", fmt)
                q = q.where(Message.service_code.in_(codes))
            statuses = {s.strip().lower() for s in params.get("status", "").split(",") if s.strip()}
            if statuses - {"open", "closed"}:
                raise Open311Error(400, "status may be open, closed or both (comma delimited)", fmt)
            closed = [CitizenStatus.closed.value]
            if statuses == {"open"}:
                q = q.where(Message.citizen_status.not_in([*closed, CitizenStatus.screened_out.value]))
            elif statuses == {"closed"}:
                q = q.where(Message.citizen_status.in_(closed))
            else:
                q = q.where(Message.citizen_status != CitizenStatus.screened_out.value)
        q = q.order_by(Message.received_at.desc(), Message.id).limit(o311.max_results)
        rows = list((await session.exec(q)).all())
        return render(
            fmt, await _views(session, state, config, rows), root="service_requests", item="request"
        )

    get_requests.__doc__ = (
        f"GET Service Requests ({fmt.upper()}): filters service_request_id, service_code, status, "
        "start_date/end_date (default and maximum window from the bundle: 90 days)."
    )
    return get_requests


@router.get(
    "/requests/{request_file}",
    summary="Open311 service request by id",
    response_class=Response,
    **access(PUBLIC),
)
async def get_request(
    request_file: str, request: Request, session: SessionDep, state: StateDep, config: ConfigDep
) -> Response:
    """GET Service Request: `<service_request_id>.json` or `.xml` (a one-element list, as in the spec)."""
    ident, fmt = _split_file(request_file)
    _check_jurisdiction(request.query_params, config, fmt)
    m = (await session.exec(select(Message).where(Message.id == ident, *_listed(config)))).first()
    if m is None:
        raise Open311Error(404, f"service_request_id {ident} not found", fmt)
    return render(fmt, await _views(session, state, config, [m]), root="service_requests", item="request")


async def _form(request: Request, fmt: str) -> dict[str, Any]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(await request.body() or b"{}")
        except ValueError:
            raise Open311Error(400, "the body is not valid JSON", fmt) from None
        if not isinstance(data, dict):
            raise Open311Error(400, "the JSON body must be an object", fmt)
        attrs = data.pop("attribute", None) or {}
        if isinstance(attrs, dict):
            data.update({f"attribute[{k}]": v for k, v in attrs.items()})
        return {k: v for k, v in data.items() if v is not None}
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data", ""):
        form = await request.form()
        out = {k: v for k, v in form.items() if isinstance(v, str)}
        for k, v in request.query_params.items():  # the spec allows parameters in the query string too
            out.setdefault(k, v)
        return out
    raise Open311Error(400, f"send application/x-www-form-urlencoded (or JSON), not {ctype}", fmt)


def _float(value: Any, name: str, fmt: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise Open311Error(400, f"{name} must be a number", fmt) from None


def _requests_post_route(fmt: str):
    async def post_request(
        request: Request,
        principal: CurrentPrincipal,
        session: SessionDep,
        state: StateDep,
        config: ConfigDep,
        vault: VaultDep,
    ) -> Response:
        form = await _form(request, fmt)
        _check_jurisdiction(form, config, fmt)
        code = str(form.get("service_code") or "").strip()
        if not code:
            raise Open311Error(400, "service_code is required", fmt)
        svc = state.open311.services.get(code)
        if svc is None:
            raise Open311Error(404, f"service_code {code} not found", fmt)
        description = str(form.get("description") or "").strip()
        if not description:
            raise Open311Error(400, "description is required", fmt)
        lat, lng = form.get("lat"), form.get("long")
        address = str(form.get("address_string") or "").strip() or None
        address_id = str(form.get("address_id") or "").strip() or None
        if (lat is None) != (lng is None):
            raise Open311Error(400, "lat and long go together", fmt)
        if lat is None and not address and not address_id:
            raise Open311Error(400, "a location is required: lat and long, address_string or address_id", fmt)
        location = {"text": address or (f"address_id {address_id}" if address_id else None)}
        if lat is not None:
            location.update(lat=_float(lat, "lat", fmt), lng=_float(lng, "long", fmt))
            if not (-90 <= location["lat"] <= 90 and -180 <= location["lng"] <= 180):
                raise Open311Error(400, "lat/long are out of range", fmt)
        request_type = str(form.get("attribute[request_type]") or "").strip() or None
        if request_type and request_type not in RequestType.__members__:
            raise Open311Error(400, f"attribute[request_type] must be one of {', '.join(RequestType)}", fmt)
        name = " ".join(str(form.get(k) or "").strip() for k in ("last_name", "first_name")).strip() or None
        phone = str(form.get("phone") or "").strip() or None
        email = str(form.get("email") or "").strip() or None
        if phone and normalize_phone(phone, accept_landlines=config.pii.accept_landlines) is None:
            raise Open311Error(400, "phone is not a valid mainland number", fmt)
        if email and normalize_email(email) is None:
            raise Open311Error(400, "email is not a valid address", fmt)
        reporter = None
        if name or phone or email or "attribute[wants_reply]" in form or "attribute[confidential]" in form:
            reporter = {
                "name": name,
                "phone": phone,
                "email": email,
                "wants_reply": str(form.get("attribute[wants_reply]", "true")).lower() in _TRUE,
                "confidential": str(form.get("attribute[confidential]", "false")).lower() in _TRUE,
            }
        media = str(form.get("media_url") or "").strip()
        try:
            data = MessageIn.model_validate(
                {
                    "channel": config.open311.channel,
                    "title": svc.name,
                    "content": description,
                    "request_type": request_type,
                    "location": location,
                    "reporter": reporter,
                    "attachments": [{"url": media}] if media else [],
                    "category_hint": svc.hint,
                }
            )
        except ValueError as exc:
            raise Open311Error(400, f"the request does not fit: {str(exc).splitlines()[0]}", fmt) from None
        scope = client_scope(principal)
        now = state.clock.now()
        try:
            prepared = service.prepare(
                index=0,
                data=data,
                client_id=scope,
                config=config,
                screener=state.screener,
                vault=vault,
                now=now,
                service_code=code,
            )
        except rules.Rejected as err:
            metrics.REJECTED.labels(err.code).inc()
            raise Open311Error(400, err.message, fmt) from None
        outcomes = await service.store(
            session=session, outbox=state.outbox, prepared=[prepared], client_id=scope, now=now
        )
        await session.commit()
        service.count_outcomes(outcomes, {0: prepared.row})
        o = outcomes[0]
        notice = (
            "不予受理"
            if o.citizen_status == CitizenStatus.screened_out
            else f"已受理。查询码：{o.tracking_code}"
        )
        body = [{"service_request_id": o.id, "service_notice": notice, "account_id": form.get("account_id")}]
        return render(fmt, body, root="service_requests", item="request", status=201)

    post_request.__doc__ = (
        f"POST Service Request ({fmt.upper()}): form-encoded as the spec says (JSON accepted too); "
        "service_code, description and a location are required; the channel client's api_key authenticates."
    )
    return post_request


for _fmt in FORMATS:
    router.add_api_route(
        f"/requests.{_fmt}",
        _requests_get_route(_fmt),
        methods=["GET"],
        summary=f"Open311 service requests ({_fmt})",
        response_class=Response,
        **access(PUBLIC),
    )
    router.add_api_route(
        f"/requests.{_fmt}",
        _requests_post_route(_fmt),
        methods=["POST"],
        summary=f"Open311 create a service request ({_fmt})",
        response_class=Response,
        status_code=201,
        **access(CLIENT),
    )
