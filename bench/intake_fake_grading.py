"""A stand-in for grading in intake's benchmark: acknowledges every event at once, so intake's outbox
relay runs as it does against a healthy consumer without grading's own work competing for the CPU.

    uvicorn bench.intake_fake_grading:app --port <grading port>
"""

import json

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


async def events(request: Request) -> Response:
    try:
        batch = json.loads(await request.body())
    except ClientDisconnect:  # intake stopped mid-delivery (the benchmark ending): nothing to answer
        return Response(status_code=499)
    return JSONResponse({"results": [{"id": e["id"], "status": "applied"} for e in batch["events"]]})


async def ready(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[Route("/internal/events", events, methods=["POST"]), Route("/readyz", ready)])
