"""Dependencies of intake's API."""

from typing import Annotated

from fastapi import Depends, Request

from schema.dto import Principal
from services.intake.config import IntakeConfig
from services.intake.pii import PiiVault


async def get_vault(request: Request) -> PiiVault:
    """The PII vault built from settings at start-up."""
    return request.app.state.vault


async def get_config(request: Request) -> IntakeConfig:
    """The bundle's intake configuration, loaded at start-up."""
    return request.app.state.config


VaultDep = Annotated[PiiVault, Depends(get_vault)]
ConfigDep = Annotated[IntakeConfig, Depends(get_config)]


def caller_address(request: Request, principal: Principal) -> str:
    """The client address the gateway vouched for (the peer when called directly)."""
    return principal.client_ip or (request.client.host if request.client else "unknown")


async def limit_rate(request: Request, principal: Principal, *, rule: str, what: str) -> None:
    """Count a hit against a per-address rule of the bundle; 429 with Retry-After when over it."""
    state = request.app.state
    address = caller_address(request, principal)
    if address in state.config.rate_limits.exempt_addresses:
        return
    await state.limiter.enforce(rule, what, address, what=what)
