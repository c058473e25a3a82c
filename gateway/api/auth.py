"""POST /api/v1/auth/token: staff sign in for a bearer token."""

from typing import Annotated

from anyio import to_thread
from fastapi import APIRouter, Form, Request
from pydantic import BaseModel

from gateway import service
from gateway.limits import enforce
from gateway.proxy import client_ip
from kit.deps import StateDep
from kit.errors import AppError
from kit.security import PUBLIC, access

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


class TokenOut(BaseModel):
    """An OAuth2 bearer token."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    roles: list[str]
    unit_code: str | None = None


@router.post("/token", summary="Sign in (OAuth2 password form)", **access(PUBLIC))
async def issue_token(
    username: Annotated[str, Form(min_length=1, max_length=64)],
    password: Annotated[str, Form(min_length=1, max_length=256)],
    state: StateDep,
    request: Request,
) -> TokenOut:
    """A bearer token for a staff user; wrong name or password get the same 401."""
    ip = client_ip(request, state.settings.trusted_proxies)
    # Guessing is slowed per address and per name; attempts within the limits are audited under the
    # name tried (those over it are only counted, so a flood cannot flood the audit log).
    await enforce(state, state.settings.rate_limit_sign_in, "sign_in_address", ip)
    await enforce(state, state.settings.rate_limit_sign_in, "sign_in_user", username)
    request.scope["minsheng_audit"] = {
        "actor": username,
        "action": "sign_in",
        "route": "/api/v1/auth/token",
        "client_ip": ip,
    }
    # A session of its own, closed before the answer starts (the audit row is written then).
    async with state.sessions() as session:
        user = await service.find_user(session=session, username=username)
    stored = user.password_hash if user is not None else service._DUMMY_HASH
    ok = await to_thread.run_sync(service.verify_password, stored, password)
    if user is None or not ok:
        raise AppError(401, "invalid_credentials", "wrong username or password")
    token, ttl = service.issue_token(settings=state.settings, user=user)
    return TokenOut(access_token=token, expires_in=ttl, roles=list(user.roles), unit_code=user.unit_code)
