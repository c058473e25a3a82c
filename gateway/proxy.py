"""Forwarding a public request to the service that owns it."""

import logging
from urllib.parse import parse_qs
from xml.sax.saxutils import escape as xml_escape

import aiohttp
import orjson
from fastapi import Request, Response
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from gateway import service
from gateway.limits import limit_failed_auth, limit_principal
from kit.errors import AppError
from kit.http import context_headers
from kit.security import PRINCIPAL_HEADER, SIGNATURE_HEADER, allows, encode_principal
from schema.dto import Principal
from schema.enums import PrincipalKind

log = logging.getLogger("minsheng.gateway.proxy")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Never passed upstream: credentials are replaced by the signed principal; internal headers are ours.
_STRIP_UPSTREAM = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "x-api-key",
    "cookie",
    PRINCIPAL_HEADER.lower(),
    SIGNATURE_HEADER.lower(),
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
    "traceparent",
    "tracestate",
    "x-request-id",
}
_STRIP_DOWNSTREAM = HOP_BY_HOP | {"content-length", "server", "date", "traceparent", "x-request-id"}
_BUFFER_LIMIT = 1024 * 1024  # answers up to this size are read whole; larger ones are streamed
_STREAM_CHUNK = 64 * 1024


def _connection_listed(headers) -> set[str]:
    return {h.strip().lower() for h in headers.get("connection", "").split(",") if h.strip()}


def client_ip(request: Request, trusted_proxies: list[str]) -> str | None:
    """The caller's address; X-Forwarded-For counts only when the peer is a trusted proxy."""
    peer = request.client.host if request.client else None
    if peer in trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return peer


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than the limit with 413 before and while reading."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise AppError(413, "payload_too_large", f"the body is larger than {limit} bytes")
        except ValueError as exc:
            raise AppError(400, "bad_request", "Content-Length is not a number") from exc
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise AppError(413, "payload_too_large", f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _open311_key(request: Request, body: bytes) -> str | None:
    key = request.query_params.get("api_key")
    if key:
        return key
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("application/x-www-form-urlencoded") and body:
        values = parse_qs(body.decode("utf-8", "replace")).get("api_key")
        return values[0] if values else None
    return None


async def authenticate(request: Request, body: bytes, state) -> Principal:
    """Who is calling: staff by bearer token, a channel client by API key, otherwise anonymous."""
    settings = state.settings
    ip = client_ip(request, settings.trusted_proxies)
    auth = request.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AppError(
                401,
                "invalid_token",
                "use 'Authorization: Bearer <token>'",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return service.principal_from_token(settings=settings, token=token.strip(), client_ip=ip)
    key = request.headers.get("x-api-key")
    if key is None and request.url.path.startswith("/open311/"):
        key = _open311_key(request, body)
    if key is not None:
        client = await state.api_keys.resolve(session_factory=state.sessions, key=key)
        if client is None:
            raise AppError(401, "invalid_api_key", "the API key is not valid")
        return Principal(kind=PrincipalKind.client, sub=client.id, client_id=client.id, client_ip=ip)
    return Principal(kind=PrincipalKind.anonymous, sub="anonymous", client_ip=ip)


async def authenticated(request: Request, body: bytes, state) -> Principal:
    """`authenticate`, counting a failure against the caller's address (slows guessing down)."""
    try:
        return await authenticate(request, body, state)
    except AppError as exc:
        if exc.status == 401:
            await limit_failed_auth(state, client_ip(request, state.settings.trusted_proxies))
        raise


async def forward(request: Request) -> Response:
    """Route, authenticate, authorise and forward one public request."""
    state = request.app.state
    path = request.url.path
    match = state.routes.match(request.method, path)
    if match.operation is None and match.owner_down:
        await state.routes.refresh(only_missing=True)
        match = state.routes.match(request.method, path)
    if match.operation is None:
        if match.allowed_methods:
            raise AppError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here",
                headers={"Allow": ", ".join(match.allowed_methods)},
            )
        if match.owner_down:
            raise AppError(502, "upstream_unavailable", f"the {match.owner_down} service is not reachable")
        raise AppError(404, "not_found", f"no such route: {request.method} {path}")
    op = match.operation
    request.scope["minsheng_route"] = op.template
    body = await read_body(request, state.settings.max_body_bytes)
    principal = await authenticated(request, body, state)
    request.scope["minsheng_audit"] = {"principal": principal, "route": op.template}
    await limit_principal(state, principal)
    if not allows(principal, op.access):
        if principal.kind == PrincipalKind.anonymous:
            raise AppError(
                401,
                "unauthenticated",
                "credentials are required for this call",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise AppError(403, "forbidden", f"this call is for: {', '.join(op.access)}")
    return await _send(request, state, op.service, body, principal)


async def _send(request: Request, state, service_name: str, body: bytes, principal: Principal) -> Response:
    dropped = _STRIP_UPSTREAM | _connection_listed(request.headers)
    headers = [(k, v) for k, v in request.headers.items() if k.lower() not in dropped]
    headers.append((PRINCIPAL_HEADER, encode_principal(principal, state.settings.service_secret)))
    if principal.client_ip:
        headers.append(("X-Forwarded-For", principal.client_ip))
    headers.append(("X-Forwarded-Proto", request.url.scheme))
    if request.headers.get("host"):
        headers.append(("X-Forwarded-Host", request.headers["host"]))
    base = state.settings.service_urls[service_name]
    # Forward the path exactly as the caller encoded it (the decoded form may hold bytes no URL can).
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    url = f"{base}{raw_path.decode('latin-1')}"
    if request.url.query:
        url += f"?{request.url.query}"
    headers.extend(context_headers().items())
    try:
        resp = await state.upstream.send(request.method, url, headers, body)
    except ValueError as exc:  # yarl's answer to a URL it cannot hold
        raise AppError(400, "bad_request", "the request's path or query is not a valid URL") from exc
    except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
        log.warning("%s unreachable: %s", service_name, exc)
        raise AppError(502, "upstream_unavailable", f"the {service_name} service is not reachable") from exc
    except TimeoutError as exc:  # aiohttp's read timeout (SocketTimeoutError) is one
        log.warning("%s timed out: %r", service_name, exc)
        raise AppError(504, "upstream_timeout", f"the {service_name} service did not answer in time") from exc
    except aiohttp.ClientError as exc:
        log.warning("%s failed: %r", service_name, exc)
        raise AppError(502, "upstream_unavailable", f"the {service_name} service failed to answer") from exc
    dropped = _STRIP_DOWNSTREAM | _connection_listed(resp.headers)
    out_headers = {k: v for k, v in resp.headers.items() if k.lower() not in dropped}
    length = resp.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) <= _BUFFER_LIMIT:
        try:
            content = await resp.read()
        except TimeoutError as exc:
            raise AppError(
                504, "upstream_timeout", f"the {service_name} service did not answer in time"
            ) from exc
        except aiohttp.ClientError as exc:
            raise AppError(
                502, "upstream_unavailable", f"the {service_name} service failed to answer"
            ) from exc
        finally:
            resp.release()
        _note_created_id(request, resp.status, resp.headers.get("content-type", ""), content)
        return Response(content=content, status_code=resp.status, headers=out_headers)
    return StreamingResponse(
        resp.content.iter_chunked(_STREAM_CHUNK),
        status_code=resp.status,
        headers=out_headers,
        background=BackgroundTask(resp.release),
    )


def _note_created_id(request: Request, status: int, content_type: str, content: bytes) -> None:
    """For the audit log: the id a staff write created or changed (`{"id": …}` in a JSON answer)."""
    audit = request.scope.get("minsheng_audit")
    if audit is None or request.method == "GET" or status >= 300:
        return
    if not content_type.startswith("application/json") or not content.startswith(b"{"):
        return
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError:
        return
    if isinstance(data, dict) and isinstance(data.get("id"), str | int):
        audit["target_ids"] = {"result_id": str(data["id"])}


def open311_error(path: str, exc: AppError) -> Response:
    """An error as GeoReport v2 clients expect it: [{code, description}] in JSON, <errors> in XML."""
    headers = {k: v for k, v in (exc.headers or {}).items()}
    if path.endswith(".xml"):
        body = (
            '<?xml version="1.0" encoding="utf-8"?>\n<errors><error>'
            f"<code>{exc.status}</code><description>{xml_escape(exc.message)}</description>"
            "</error></errors>"
        ).encode()
        return Response(body, status_code=exc.status, media_type="text/xml; charset=utf-8", headers=headers)
    body = orjson.dumps([{"code": exc.status, "description": exc.message}])
    return Response(body, status_code=exc.status, media_type="application/json", headers=headers)
