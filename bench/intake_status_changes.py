"""Intake applying `message.status_changed` (grading's word that a message was assigned, taken up,
answered): events per second and CPU per event, on PostgreSQL.

    .venv/bin/python -m bench.intake_status_changes                 # about a minute
    .venv/bin/python -m bench.intake_status_changes --messages 1000 # quicker

Every graded message brings intake at least one status change, so its cost is part of what each
message costs the platform. The gateway and intake run (grading replaced by the instant stand-in of
`bench/intake_fake_grading.py`); real messages are stored by batch, then each gets two changes, as
grading sends them: assigned to a unit, then taken up with a note for the public, each event for one
message, delivered to intake's signed event endpoint 20 at a time as the relay delivers them.
"""

import argparse
import asyncio
import json
import secrets
import time

from bench.common import client, cpu_seconds, postgres_cpu_seconds, stop_platform
from bench.intake_throughput import API_KEY, item, outbox_settled, real_rows, start
from kit.security import SIGNATURE_HEADER, sign_request
from services.intake.tests.helpers import status_event
from tests.support import DEMO_SECRET

UNIT = {"code": "A5-ZJJ", "name": "A5区住房和城乡建设局"}


async def measure(platform, rows: list[dict], messages: int, per_delivery: int) -> dict:
    async with client() as http:
        intake = platform.url("intake")
        ids: list[str] = []
        for k in range(0, messages, 1000):
            items = [item(r, f"sc{k}-{j}-") for j, r in enumerate(rows[k : min(k + 1000, messages)])]
            resp = await http.post(
                f"{platform.url('gateway')}/api/v1/messages/batch",
                json={"items": items},
                headers=API_KEY,
                timeout=120,
            )
            ids += [r["id"] for r in resp.json()["results"]]
        await outbox_settled(http, intake)

        async def deliver(events: list[dict]) -> None:
            content = json.dumps({"events": events}).encode()
            signature = sign_request(DEMO_SECRET, "POST", "/internal/events", content)
            resp = await http.post(
                f"{intake}/internal/events",
                content=content,
                headers={SIGNATURE_HEADER: signature, "content-type": "application/json"},
            )
            resp.raise_for_status()
            failed = [r for r in resp.json()["results"] if r["status"] != "applied"]
            if failed:
                raise SystemExit(f"events not applied: {failed[:2]}")

        # Assigned to a unit, then taken up with a note for the public: (sequence, statuses, extra data).
        steps = (
            (2, "assigned", "assigned", {"handling_unit": UNIT}),
            (3, "in_progress", "signed", {"public_note": "已联系市民，正在现场处置"}),
        )
        phases = [
            [
                status_event([i], sequence=n, citizen_status=c, incident_status=s, incident_id=i, **x)
                for i in ids
            ]
            for n, c, s, x in steps
        ]
        pid = platform.procs["intake"].pid
        cpu0, pg0, t0 = cpu_seconds(pid), postgres_cpu_seconds(), time.perf_counter()
        for events in phases:
            for k in range(0, len(events), per_delivery):
                await deliver(events[k : k + per_delivery])
        seconds = time.perf_counter() - t0
        n = sum(map(len, phases))
        return {
            "events": n,
            "events_per_s": n / seconds,
            "intake_ms": (cpu_seconds(pid) - cpu0) / n * 1000,
            "postgres_ms": (postgres_cpu_seconds() - pg0) / n * 1000,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=3000, help="messages, each changed twice")
    parser.add_argument("--per-delivery", type=int, default=20, help="events per delivery")
    args = parser.parse_args()
    platform = start(f"msbench_status_{secrets.token_hex(3)}", "fake")
    try:
        f = asyncio.run(measure(platform, real_rows(), args.messages, args.per_delivery))
    finally:
        stop_platform(platform)
    print(
        f"status changes applied: {f['events_per_s']:.0f} events/s ({f['events']} events,"
        f" {args.per_delivery} per delivery); CPU per event: intake {f['intake_ms']:.2f} ms,"
        f" PostgreSQL {f['postgres_ms']:.2f} ms"
    )


if __name__ == "__main__":
    main()
