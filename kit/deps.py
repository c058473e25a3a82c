"""FastAPI dependency aliases every service uses."""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlmodel.ext.asyncio.session import AsyncSession


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for the request."""
    async with request.app.state.sessions() as session:
        yield session


async def get_state(request: Request) -> Any:
    """The app's runtime state (settings, clock, outbox, http client, service-specific objects)."""
    return request.app.state


SessionDep = Annotated[AsyncSession, Depends(get_session)]
StateDep = Annotated[Any, Depends(get_state)]
