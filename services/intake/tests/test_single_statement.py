"""One message, one statement: on PostgreSQL a single POST stores the message, its first timeline step and
its outbox event in one INSERT … RETURNING statement outside a transaction, and a batch stores each chunk
of messages with theirs in one statement from column arrays. These tests hold them to what the
transaction gave before: all three rows or none, a retried tracking code, one round trip, the same
values stored."""

import json
import threading
import uuid

import asyncpg
import asyncpg.prepared_stmt
import pytest
from sqlalchemy import event

from kit.outbox import Outbox
from services.intake import service
from services.intake.models import Message
from tests.support import API_KEY, message


def _item(tag: str) -> dict:
    return {
        "channel": "portal",
        "external_id": f"one-{tag}-{uuid.uuid4().hex[:8]}",
        "title": "小区门口路灯不亮",
        "content": "幸福路12号小区门口的路灯已经坏了两个星期，晚上出行很不方便，请尽快修复。",
    }


def _rows(stack, external_id: str) -> tuple[int, int, int]:
    """(messages, timeline steps, queued message.received events) stored for an external id."""
    ids = [r[0] for r in stack.sql("SELECT id FROM message WHERE external_id = :e", e=external_id)]
    steps = sum(stack.sql("SELECT count(*) FROM message_event WHERE message_id = :m", m=m)[0][0] for m in ids)
    events = sum(stack.received_events(m) for m in ids)
    return len(ids), steps, events


def _breaking(real):
    def broken(outbox, events):
        """The outbox's rows with no event id: NOT NULL makes their INSERT fail."""
        return [{**row, "event_id": None} for row in real(outbox, events)]

    return broken


def _break_outbox_rows(monkeypatch) -> None:
    """Break both ways to the outbox's rows: events as objects (SQLite) and as JSON text (PostgreSQL)."""
    monkeypatch.setattr(Outbox, "rows", _breaking(Outbox.rows))
    monkeypatch.setattr(Outbox, "text_rows", _breaking(Outbox.text_rows))


def test_a_message_whose_event_cannot_be_queued_is_not_stored_at_all(stack, monkeypatch):
    body = _item("atomic")
    _break_outbox_rows(monkeypatch)
    r = stack.post(body)
    assert r.status_code >= 500, r.text
    assert r.json()["error"]["code"] == "internal_error"
    assert _rows(stack, body["external_id"]) == (0, 0, 0)

    monkeypatch.undo()
    r = stack.post(body)
    assert r.status_code == 201, r.text
    assert _rows(stack, body["external_id"]) == (1, 1, 1)


def test_a_batch_whose_events_cannot_be_queued_stores_none_of_its_messages(stack, monkeypatch):
    """A batch takes several statements, so it keeps its transaction: all of it or nothing."""
    items = [_item(f"batch{i}") for i in range(3)]
    _break_outbox_rows(monkeypatch)
    r = stack.http.post("/api/v1/messages/batch", json={"items": items}, headers=API_KEY)
    assert r.status_code >= 500 and r.json()["error"]["code"] == "internal_error", r.text
    assert [_rows(stack, i["external_id"]) for i in items] == [(0, 0, 0)] * 3
    monkeypatch.undo()
    r = stack.http.post("/api/v1/messages/batch", json={"items": items}, headers=API_KEY)
    assert r.status_code == 200 and r.json()["created"] == 3, r.text
    assert [_rows(stack, i["external_id"]) for i in items] == [(1, 1, 1)] * 3


def test_a_tracking_code_already_taken_is_replaced_and_stored_once(stack, monkeypatch):
    first = stack.post(_item("taken"))
    assert first.status_code == 201, first.text
    taken = stack.sql("SELECT tracking_code FROM message WHERE id = :m", m=first.json()["id"])[0][0]
    real = service.new_tracking_code
    handed = []

    def same_code_first():
        code = real() if handed else taken
        handed.append(code)
        return code

    monkeypatch.setattr(service, "new_tracking_code", same_code_first)
    body = _item("retry")
    r = stack.post(body)
    assert r.status_code == 201, r.text
    assert len(handed) == 2  # the taken code, then a new one
    assert r.json()["tracking_code"] != first.json()["tracking_code"]
    assert _rows(stack, body["external_id"]) == (1, 1, 1)
    assert stack.received_events(first.json()["id"]) == 1


def test_on_postgresql_a_message_is_one_statement_and_no_transaction(stack, monkeypatch):
    if not stack.intake_db.startswith("postgresql"):
        pytest.skip("the single statement is PostgreSQL's path; SQLite writes in one local transaction")
    engine = stack.intake.server.config.app.state.engine
    lock = threading.Lock()
    calls: list[tuple[int, str]] = []  # (asyncpg connection, what it sent or a pool event)

    def note(conn, what: str) -> None:
        with lock:
            calls.append((id(conn), " ".join(what.split())))

    # Simple queries (BEGIN, COMMIT) go through Connection.execute; SQLAlchemy's statements through
    # prepared statements; intake's own statements outside a transaction through Connection.fetch.
    execute, fetch = asyncpg.Connection.execute, asyncpg.prepared_stmt.PreparedStatement.fetch
    conn_fetch = asyncpg.Connection.fetch

    async def noted_execute(self, query, *args, **kwargs):
        note(self, query)
        return await execute(self, query, *args, **kwargs)

    async def noted_fetch(self, *args, **kwargs):
        note(self._connection, self._query)
        return await fetch(self, *args, **kwargs)

    async def noted_conn_fetch(self, query, *args, **kwargs):
        note(self, query)
        return await conn_fetch(self, query, *args, **kwargs)

    def on_checkout(dbapi_connection, _record, _proxy):
        note(dbapi_connection._connection, "<checkout>")

    def on_checkin(dbapi_connection, _record):
        if dbapi_connection is not None:
            note(dbapi_connection._connection, "<checkin>")

    monkeypatch.setattr(asyncpg.Connection, "execute", noted_execute)
    monkeypatch.setattr(asyncpg.prepared_stmt.PreparedStatement, "fetch", noted_fetch)
    monkeypatch.setattr(asyncpg.Connection, "fetch", noted_conn_fetch)
    event.listen(engine.sync_engine, "checkout", on_checkout)
    event.listen(engine.sync_engine, "checkin", on_checkin)
    try:
        body = _item("trips")
        assert stack.post(body).status_code == 201
    finally:
        event.remove(engine.sync_engine, "checkout", on_checkout)
        event.remove(engine.sync_engine, "checkin", on_checkin)
    with lock:
        at = next(i for i, (_, q) in enumerate(calls) if "INSERT INTO message " in q)
        conn = calls[at][0]
        mine = [q for c, q in calls if c == conn]
    k = mine.index(calls[at][1])
    start = max(i for i in range(k) if mine[i] == "<checkout>")
    end = k + mine[k:].index("<checkin>")
    # The request's checkout sent the one statement and nothing else: no BEGIN, no COMMIT.
    assert mine[start + 1 : end] == [calls[at][1]], mine[start:end]
    assert calls[at][1].startswith("WITH m AS (INSERT INTO message ")
    assert _rows(stack, body["external_id"]) == (1, 1, 1)


# Columns that differ between two stores of the same message by nature (ids, times, random nonces).
_OWN = {"id", "tracking_code", "external_id", "received_at", "updated_at", "reporter_encrypted"}
_CHANNELS = ["hotline", "portal", "weibo", "wechat", "douyin", "forum", "news", "superior", "grid", "other"]


def _stored(stack, message_id: str) -> tuple[dict, list, list]:
    """A message's columns as text (SQL NULL as None, so JSON null stays 'null'), its timeline steps and
    its queued events, without what is its own by nature."""
    columns = [c.name for c in Message.__table__.columns if c.name not in _OWN]
    casts = ", ".join(f"CAST({c} AS TEXT)" for c in columns)
    row = stack.sql(f"SELECT {casts}, reporter_encrypted IS NULL FROM message WHERE id = :m", m=message_id)[0]
    values = dict(zip([*columns, "no_reporter"], row, strict=True))
    steps = stack.sql(
        "SELECT status, text, public, actor FROM message_event WHERE message_id = :m", m=message_id
    )
    events = []
    # (Not the delivery columns: the relay may have sent one of the two already.)
    for event_type, destination, payload in stack.sql(
        "SELECT event_type, destination, CAST(payload AS TEXT) FROM outbox"
    ):
        body = json.loads(payload)
        if body["data"]["message_id"] != message_id:
            continue
        for key in ("message_id", "tracking_code", "external_id", "received_at"):
            body["data"].pop(key)
        for key in ("id", "occurred_at", "trace"):
            body.pop(key)
        events.append((event_type, destination, body))
    return values, [tuple(s) for s in steps], events


def test_a_batch_stores_each_message_as_a_single_post_stores_it(stack):
    """On PostgreSQL a batch goes in from column arrays and a single POST through SQLAlchemy's typed
    parameters: every column of the message, its timeline step and its queued event come out the same."""
    bodies = [
        message(
            channel=channel,
            occurred_at="2026-11-20T09:30:00+08:00",
            location={"text": "A5区洞井街道", "district_code": "A5", "lat": 28.1, "lng": 113.0},
            category_hint="城乡建设",
            attachments=[{"url": "https://example.org/photo.jpg", "name": "现场照片"}],
            reporter={"name": "张三", "phone": "13800138000", "wants_reply": True},
        )
        for channel in _CHANNELS
    ]
    bodies += [message(title=None, content="ＡＢＣ　小區門口的<b>路燈</b>壞了兩個星期")]  # bare, cleaned
    single = [stack.post({**b, "external_id": f"{b['external_id']}-single"}) for b in bodies]
    assert all(r.status_code == 201 for r in single), [r.text for r in single]
    items = [{**b, "external_id": f"{b['external_id']}-batch"} for b in bodies]
    batch = stack.http.post("/api/v1/messages/batch", json={"items": items}, headers=API_KEY)
    assert batch.status_code == 200 and batch.json()["created"] == len(bodies), batch.text
    for one, item in zip(single, batch.json()["results"], strict=True):
        a, b = _stored(stack, one.json()["id"]), _stored(stack, item["id"])
        assert a == b
        assert len(a[1]) == 1 and len(a[2]) == 1  # a step and an event each, compared above


def test_on_postgresql_long_texts_are_stored_compressed_with_lz4(stack):
    """pglz took a good part of the server's time per message; the migration sets lz4 where it exists."""
    if not stack.intake_db.startswith("postgresql"):
        pytest.skip("column compression is PostgreSQL's")
    body = _item("lz4")
    body["content"] = "幸福路12号小区门口的路灯已经坏了两个星期，晚上出行很不方便，请尽快修复。" * 80
    r = stack.post(body)
    assert r.status_code == 201, r.text
    [(original, normalized)] = stack.sql(
        "SELECT pg_column_compression(content_original), pg_column_compression(content_normalized)"
        " FROM message WHERE id = :m",
        m=r.json()["id"],
    )
    [(payload,)] = stack.sql(
        "SELECT pg_column_compression(payload) FROM outbox WHERE payload->'data'->>'message_id' = :m",
        m=r.json()["id"],
    )
    assert (original, normalized, payload) == ("lz4", "lz4", "lz4")
    # Read back whole.
    [(stored,)] = stack.sql("SELECT content_original FROM message WHERE id = :m", m=r.json()["id"])
    assert stored == body["content"]
