"""Operating grading: the configuration bundle and the category model (reload, status), a dry run."""

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter

from kit.deps import StateDep
from kit.errors import AppError
from kit.security import access
from schema.enums import Channel, Role
from schema.events import MessageReceivedData
from services.grading.api.schemas import BundleStatus, DryRunIn
from services.grading.classifier import model_info

router = APIRouter(prefix="/api/v1/grading", tags=["grading admin"])


def _status(state) -> BundleStatus:
    rt = state.grading
    h = rt.holder
    return BundleStatus(
        bundle=rt.bundle.summary(),
        last_reload_at=h.last_attempt_at,
        last_reload_problems=h.last_error,
        classifier=model_info(rt.model, rt.route_model)
        | ({"error": rt.model_error} if rt.model_error else {}),
        index={"messages": len(rt.index), "ready": rt.index_ready},
    )


@router.get(
    "/bundle", summary="The configuration bundle and model in use", **access(Role.admin, Role.analyst)
)
async def bundle_status(state: StateDep) -> BundleStatus:
    """Versions, counts, the last reload's problems, the classifier's mode."""
    return _status(state)


@router.post("/bundle/reload", summary="Reload the configuration bundle", **access(Role.admin))
async def reload_bundle(state: StateDep) -> BundleStatus:
    """Read the bundle files again; a bundle with problems is refused (422, naming file and line) and
    the previous one stays in use. Reloads this replica (each replica also watches its files when
    GRADING_BUNDLE_WATCH_SECONDS is set)."""
    result = await asyncio.to_thread(state.grading.reload_bundle)
    if not result.ok:
        raise AppError(
            422,
            "bundle_invalid",
            f"bundle refused; still using policy {result.bundle.policy_version}",
            [{"problem": p} for p in result.problems],
        )
    return _status(state)


@router.post("/model/reload", summary="Reload the trained category model", **access(Role.admin))
async def reload_model(state: StateDep) -> BundleStatus:
    """Read the model file again (after `python -m services.grading.cli train`)."""
    await asyncio.to_thread(state.grading.reload_model)
    return _status(state)


@router.post("/dry-run", summary="Grade a text without storing anything", **access(Role.admin, Role.analyst))
async def dry_run(body: DryRunIn, state: StateDep) -> dict:
    """What grading would decide for a message: category, request type, places, route, score, clocks."""
    msg = MessageReceivedData(
        message_id="dry-run",
        tracking_code="dry-run",
        channel=body.channel or Channel.portal,
        title=body.title,
        content=body.content,
        received_at=body.received_at or datetime.now(UTC),
        metrics=body.metrics,
        superior=body.superior,
        request_type=body.request_type,
    )
    g = await asyncio.to_thread(state.grading.engine.grade, msg)
    from services.grading.matters import _grading_record

    out = _grading_record(g)
    out["deadlines"] = g.deadlines.model_dump(mode="json")
    return out
