"""Trust between the gateway and the services, and between services.

- The gateway authenticates callers and forwards who they are as a short-lived principal token
  (HS256 with the service secret) in `X-Minsheng-Principal`. A service trusts nothing else.
- Service-to-service calls (event delivery, internal look-ups) carry `X-Minsheng-Signature`:
  `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<method>.<path>.<body>")>`.
- Each route declares who may call it with `access(...)`; the declaration is enforced here and
  published in the OpenAPI document as `x-access`, which the gateway enforces as well.
"""

import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from kit.errors import AppError
from kit.jwt_hs256 import jwt
from schema.dto import Principal
from schema.enums import PrincipalKind, Role

PRINCIPAL_HEADER = "X-Minsheng-Principal"
SIGNATURE_HEADER = "X-Minsheng-Signature"
PRINCIPAL_TTL_SECONDS = 120
_ISSUER = "minsheng-gateway"
_AUDIENCE = "minsheng-services"

PUBLIC = "public"  # anyone, no credentials
CLIENT = "client"  # a channel client with an API key


# Signing and verifying a JWT costs tens of microseconds; a caller sends many requests a minute, so
# recently made and recently checked tokens are reused (well inside their lifetime).
_REUSE_SECONDS = 30
_encoded: dict[tuple, tuple[float, str]] = {}
_decoded: dict[tuple, tuple[float, Principal]] = {}
_CACHE_MAX = 10000


def encode_principal(principal: Principal, secret: str, *, ttl: int = PRINCIPAL_TTL_SECONDS) -> str:
    """The token the gateway forwards for a principal (the same token for 30 s, to save signing)."""
    now = time.time()
    key = (secret, ttl, principal.model_dump_json(exclude_none=True))
    hit = _encoded.get(key)
    if hit is not None and now - hit[0] < min(_REUSE_SECONDS, ttl / 4):
        return hit[1]
    claims = principal.model_dump(mode="json", exclude_none=True)
    claims.update(iss=_ISSUER, aud=_AUDIENCE, iat=int(now), exp=int(now) + ttl)
    token = jwt.encode(claims, secret, algorithm="HS256")
    if ttl > 0:
        if len(_encoded) >= _CACHE_MAX:
            _encoded.clear()
        _encoded[key] = (now, token)
    return token


def decode_principal(token: str, secret: str, *, previous: Iterable[str] = ()) -> Principal:
    """The principal in a forwarded token; raises AppError(401) when it is not genuine or expired.

    `previous` secrets are accepted too, so a new service secret can roll out process by process.
    """
    key = (secret, tuple(previous), token)
    cached = _decoded.get(key)
    if cached is not None and time.time() < cached[0]:
        return cached[1]
    principal, exp = _decode(token, secret, previous)
    if len(_decoded) >= _CACHE_MAX:
        _decoded.clear()
    _decoded[key] = (min(float(exp), time.time() + _REUSE_SECONDS), principal)
    return principal


def _decode(token: str, secret: str, previous: Iterable[str]) -> tuple[Principal, int]:
    for candidate in (secret, *previous):
        try:
            claims = jwt.decode(token, candidate, algorithms=["HS256"], audience=_AUDIENCE, issuer=_ISSUER)
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise AppError(401, "invalid_principal", "the forwarded identity is not valid") from exc
        return Principal.model_validate(claims), int(claims.get("exp", 0))
    raise AppError(401, "invalid_principal", "the forwarded identity is not valid")


ANONYMOUS = Principal(kind=PrincipalKind.anonymous, sub="anonymous")


def sign_request(secret: str, method: str, path: str, body: bytes, *, now: int | None = None) -> str:
    """The signature header value for an internal call."""
    ts = int(time.time()) if now is None else now
    mac = hmac.new(secret.encode(), f"{ts}.{method.upper()}.{path}.".encode() + body, hashlib.sha256)
    return f"t={ts},v1={mac.hexdigest()}"


def verify_signature(
    secret: str,
    header: str | None,
    method: str,
    path: str,
    body: bytes,
    *,
    window: int = 300,
    previous: Iterable[str] = (),
) -> None:
    """Raise AppError(401) unless the header signs this call with the secret (or one of the previous
    secrets, during a rotation) within the time window."""
    if not header:
        raise AppError(401, "missing_signature", "internal endpoints need a signed call")
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
        given = parts["v1"]
    except (ValueError, KeyError) as exc:
        raise AppError(401, "invalid_signature", "malformed signature header") from exc
    if abs(time.time() - ts) > window:
        raise AppError(401, "signature_expired", "the signature's timestamp is outside the window")
    for candidate in (secret, *previous):
        expected = sign_request(candidate, method, path, body, now=ts).split("v1=", 1)[1]
        if hmac.compare_digest(expected, given):
            return
    raise AppError(401, "invalid_signature", "the signature does not match")


def principal_of(request: Request) -> Principal:
    """The caller as the gateway vouched for it (anonymous when nothing was forwarded)."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    token = request.headers.get(PRINCIPAL_HEADER)
    principal = ANONYMOUS
    if token:
        settings = request.app.state.settings
        principal = decode_principal(
            token, settings.service_secret, previous=getattr(settings, "previous_service_secrets", ())
        )
    request.state.principal = principal
    return principal


async def principal_from_request(request: Request) -> Principal:
    """Dependency form of principal_of (async, so FastAPI does not hop to a thread for it)."""
    return principal_of(request)


CurrentPrincipal = Annotated[Principal, Depends(principal_from_request)]


def allows(principal: Principal, allowed: Iterable[str]) -> bool:
    """True when the access list admits the principal."""
    allowed = set(allowed)
    if PUBLIC in allowed:
        return True
    if principal.kind == PrincipalKind.client:
        return CLIENT in allowed
    if principal.kind == PrincipalKind.staff:
        return any(str(r) in allowed for r in principal.roles)
    return False


def access(*allowed: str | Role) -> dict[str, Any]:
    """Route keyword arguments that restrict a route to these callers and publish it as `x-access`."""
    names = sorted({str(a) for a in allowed})
    for n in names:
        if n not in (PUBLIC, CLIENT) and n not in Role.__members__:
            raise ValueError(f"unknown access name {n!r}")

    async def _check(request: Request) -> None:
        principal = principal_of(request)
        if allows(principal, names):
            return
        if principal.kind == PrincipalKind.anonymous:
            raise AppError(401, "unauthenticated", "credentials are required for this call")
        raise AppError(403, "forbidden", f"this call is for: {', '.join(names)}")

    return {"dependencies": [Depends(_check)], "openapi_extra": {"x-access": names}}


async def verified_internal(request: Request) -> None:
    """Dependency of internal endpoints: only a call signed with the service secret gets through."""
    body = await request.body()
    settings = request.app.state.settings
    verify_signature(
        settings.service_secret,
        request.headers.get(SIGNATURE_HEADER),
        request.method,
        request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        body,
        window=settings.internal_signature_window_seconds,
        previous=getattr(settings, "previous_service_secrets", ()),
    )


class ServiceAuth(httpx.Auth):
    """httpx auth that signs every internal call with the service secret."""

    requires_request_body = True

    def __init__(self, secret: str):
        self.secret = secret

    def auth_flow(self, request: httpx.Request):
        request.headers[SIGNATURE_HEADER] = sign_request(
            self.secret, request.method, request.url.raw_path.decode("ascii"), request.content
        )
        yield request


def hash_api_key(key: str) -> str:
    """How API keys are stored: SHA-256 hex (the keys are long random strings, so no slow hash is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()
