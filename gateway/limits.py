"""Rate limits at the gateway: per API key, per staff user, per client address; 429 with Retry-After.

A portal backend sends every citizen's message from one address, and an office's staff share one
NAT address, so authenticated callers are counted by who they are; anonymous callers and every
failed authentication are counted by address (which also slows key and token guessing).
"""

from prometheus_client import Counter

from kit.errors import AppError
from schema.dto import Principal
from schema.enums import PrincipalKind

RATE_LIMITED = Counter("minsheng_gateway_rate_limited_total", "Requests refused by a rate limit", ["scope"])


async def enforce(state, rule: str, scope: str, key: str | None) -> None:
    """Count one hit of `key` in `scope` against the rule; raise 429 when over it."""
    if not rule:
        return
    try:
        await state.limiter.enforce(rule, scope, key or "unknown")
    except AppError:
        RATE_LIMITED.labels(scope).inc()
        raise


async def limit_principal(state, principal: Principal) -> None:
    """Apply the limit that fits the caller."""
    s = state.settings
    if principal.kind == PrincipalKind.client:
        await enforce(state, s.rate_limit_per_client, "client", principal.client_id)
    elif principal.kind == PrincipalKind.staff:
        await enforce(state, s.rate_limit_per_staff, "staff", principal.sub)
    else:
        await enforce(state, s.rate_limit_per_address, "address", principal.client_ip)


async def limit_failed_auth(state, client_ip: str | None) -> None:
    """A failed authentication counts against the caller's address."""
    await enforce(state, state.settings.rate_limit_per_address, "address", client_ip)
