"""Look-ups other services make (signed calls only; the gateway never routes here)."""

from fastapi import APIRouter, Depends, Query

from kit.deps import SessionDep
from kit.security import verified_internal
from schema.dto import MessageRecord
from services.intake import service

router = APIRouter(prefix="/internal", include_in_schema=False, dependencies=[Depends(verified_internal)])


@router.get("/messages")
async def message_records(
    session: SessionDep, ids: list[str] = Query(max_length=1000)
) -> list[MessageRecord]:
    """Messages by id, as the archive keeps them."""
    return await service.records_for(session=session, message_ids=ids)
