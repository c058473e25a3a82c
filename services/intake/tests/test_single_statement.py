"""One message, one statement: on PostgreSQL a single POST stores the message, its first timeline step and
its outbox event in one INSERT … RETURNING statement outside a transaction. These tests hold it to what
the transaction gave before: all three rows or none, a retried tracking code, one round trip."""

import threading
import uuid

import asyncpg
import asyncpg.prepared_stmt
import pytest
from sqlalchemy import event

from kit.outbox import Outbox
from services.intake import service
from tests.support import API_KEY


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


_real_rows = Outbox.rows


def _broken_rows(outbox, events):
    """The outbox's rows with no event id: NOT NULL makes their INSERT fail."""
    return [{**row, "event_id": None} for row in _real_rows(outbox, events)]


def test_a_message_whose_event_cannot_be_queued_is_not_stored_at_all(stack, monkeypatch):
    body = _item("atomic")
    monkeypatch.setattr(Outbox, "rows", _broken_rows)
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
    monkeypatch.setattr(Outbox, "rows", _broken_rows)
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
    # prepared statements.
    execute, fetch = asyncpg.Connection.execute, asyncpg.prepared_stmt.PreparedStatement.fetch

    async def noted_execute(self, query, *args, **kwargs):
        note(self, query)
        return await execute(self, query, *args, **kwargs)

    async def noted_fetch(self, *args, **kwargs):
        note(self._connection, self._query)
        return await fetch(self, *args, **kwargs)

    def on_checkout(dbapi_connection, _record, _proxy):
        note(dbapi_connection._connection, "<checkout>")

    def on_checkin(dbapi_connection, _record):
        if dbapi_connection is not None:
            note(dbapi_connection._connection, "<checkin>")

    monkeypatch.setattr(asyncpg.Connection, "execute", noted_execute)
    monkeypatch.setattr(asyncpg.prepared_stmt.PreparedStatement, "fetch", noted_fetch)
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
