"""What building a new table row costs: kit.tables.DirectInit beside SQLModel's own construction.

    .venv/bin/python -m bench.table_rows            # a few seconds
    .venv/bin/python -m bench.table_rows --rows 20000

For the rows grading and notify build for every message (an incident, its timeline steps, the
assignment and its clocks, the outbox rows; an alert and its deliveries), with the values a real row
has, each built both ways in the same process, alternating, three rounds: microseconds per row
(CPU time) and the ratio. Both ways give the same row (tests/test_kit.py checks every table).
"""

import argparse
import time
import uuid
from datetime import UTC, datetime, timedelta

from kit.tables import built_as_sqlmodel
from services.grading.models import Assignment, Incident, IncidentEvent, OutboxEvent, WorkflowClock
from services.notify.models import Alert, Delivery


def samples() -> list[tuple[type, dict]]:
    """One row of each kind, as the services fill them."""
    now = datetime(2026, 12, 7, 9, 30, tzinfo=UTC)
    inc = str(uuid.uuid4())
    return [
        (
            Incident,
            {
                "id": inc,
                "code": "YQ20261207-0001",
                "title": "A2区某小区停水三天无人处理",
                "excerpt": "小区已经停水三天，物业不管，居民生活困难，请尽快处理。",
                "status": "graded",
                "level": "IV",
                "machine_level": "IV",
                "score": 12.5,
                "factors": [{"name": "content", "points": 5.0, "detail": "民生"}] * 4,
                "category": {"level1": "城乡建设", "level2": "供水", "level3": "停水"},
                "request_type": "complaint",
                "response_type": "normal",
                "warning_class": "general",
                "lead_unit_code": "A2-water",
                "lead_unit_name": "A2区水务局",
                "co_units": [],
                "route_reason": "一个区县（A2区）→ 该区县的水务部门",
                "districts": ["A2区"],
                "streets": [],
                "channels": ["portal"],
                "message_count": 1,
                "metrics_total": {},
                "report_due": now + timedelta(hours=1),
                "reply_due": now + timedelta(days=5),
                "policy_version": "a-city-2026.12",
                "received_at": now,
                "first_message_at": now,
                "last_message_at": now,
                "updated_at": now,
                "review_pins": [],
            },
        ),
        (
            IncidentEvent,
            {"incident_id": inc, "action": "graded", "at": now, "actor": "system", "note": "定级 IV"},
        ),
        (
            Assignment,
            {
                "id": str(uuid.uuid4()),
                "incident_id": inc,
                "round": 1,
                "unit_code": "A2-water",
                "unit_name": "A2区水务局",
                "role": "lead",
                "assigned_by": "system",
                "assigned_at": now,
                "sign_due": now + timedelta(hours=2),
                "status": "assigned",
                "updated_at": now,
            },
        ),
        (
            WorkflowClock,
            {"incident_id": inc, "kind": "reply", "due_at": now + timedelta(days=5), "started_at": now},
        ),
        (
            OutboxEvent,
            {
                "event_id": str(uuid.uuid4()),
                "event_type": "incident.graded",
                "destination": "notify",
                "payload": {"id": inc, "level": "IV"},
                "created_at": now,
                "next_attempt_at": now,
            },
        ),
        (
            Alert,
            {
                "id": str(uuid.uuid4()),
                "incident_id": inc,
                "kind": "graded",
                "level": "IV",
                "policy": "一般舆情 IV级",
                "status": "open",
                "step": 0,
                "chain": [],
                "rounds": 0,
                "context": {},
                "dedupe_key": f"graded:{inc}",
                "created_at": now,
            },
        ),
        (
            Delivery,
            {
                "id": str(uuid.uuid4()),
                "alert_id": str(uuid.uuid4()),
                "incident_id": inc,
                "event": "graded",
                "level": "IV",
                "recipient_id": "A2-water-duty",
                "recipient_name": "A2区水务局值班",
                "channel": "wecom_app",
                "address_masked": "a2w***",
                "template": "graded",
                "params": {"code": "YQ20261207-0001", "title": "A2区某小区停水三天无人处理"},
                "content": "一般（IV级）舆情YQ20261207-0001：A2区某小区停水三天无人处理。承办：A2区水务局。",
                "status": "queued",
                "ack_ref": "K7Q2",
                "dedupe_key": f"graded:{inc}:A2-water-duty:wecom_app",
                "created_at": now,
                "next_attempt_at": now,
            },
        ),
    ]


def per_row_us(build, model: type, data: dict, n: int) -> float:
    t = time.process_time()
    for _ in range(n):
        build(model, dict(data))
    return (time.process_time() - t) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=5000, help="rows of each kind per round and way")
    args = parser.parse_args()
    rows = []
    for model, data in samples():
        fields = {k: v for k, v in data.items() if k in model.model_fields}
        missing = set(data) - set(fields)
        assert not missing, f"{model.__name__} has no {missing}"
        rows.append((model, fields))
    direct = lambda model, data: model(**data)  # noqa: E731
    print(f"new table rows, CPU µs per row ({args.rows} of each kind per round; DirectInit / SQLModel's way)")
    totals = {"direct": 0.0, "sqlmodel": 0.0}
    for model, data in rows:
        pairs = []
        for _ in range(3):
            s = per_row_us(lambda m, d: built_as_sqlmodel(m, **d), model, data, args.rows)
            d = per_row_us(direct, model, data, args.rows)
            pairs.append((d, s))
        d, s = min(p[0] for p in pairs), min(p[1] for p in pairs)
        totals["direct"] += d
        totals["sqlmodel"] += s
        runs = ", ".join(f"{a:.1f}/{b:.1f}" for a, b in pairs)
        print(
            f"  {model.__name__:<14} {len(data):>2} fields  {d:6.1f} / {s:6.1f} µs  ×{s / d:.1f}   ({runs})"
        )
    print(
        f"  one of each kind: {totals['direct']:.0f} / {totals['sqlmodel']:.0f} µs "
        f"(×{totals['sqlmodel'] / totals['direct']:.1f})"
    )


if __name__ == "__main__":
    main()
