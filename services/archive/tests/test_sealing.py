"""Sealing dossiers from incident.closed: contents, versions, retries, and tamper evidence."""

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest

from schema.enums import Level, Role
from schema.events import IncidentClosed
from services.archive import service
from services.archive.tests import synth
from services.archive.tests.conftest import archivist, staff
from tests.fixtures import PG_URL


def sql(archive, *statements: str, bypass_guard: bool = True) -> None:
    """Run SQL straight on the archive's database, as someone with database access would."""
    if archive.backend == "sqlite":
        conn = sqlite3.connect(archive.url.split("///", 1)[1])
        try:
            if bypass_guard:  # the attacker drops the guard, alters rows, and puts the guard back
                triggers = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger'").fetchall()
                conn.execute("DROP TRIGGER dossier_no_update")
                conn.execute("DROP TRIGGER dossier_no_early_delete")
            for s in statements:
                conn.execute(s)
            if bypass_guard:
                for (ddl,) in triggers:
                    conn.execute(ddl)
            conn.commit()
        finally:
            conn.close()
        return
    import asyncpg

    async def run():
        db = archive.url.rsplit("/", 1)[1]
        conn = await asyncpg.connect(PG_URL.replace("postgresql+asyncpg://", "postgresql://") + f"/{db}")
        try:
            async with conn.transaction():
                if bypass_guard:  # a superuser skips ordinary triggers for the session
                    await conn.execute("SET LOCAL session_replication_role = replica")
                for s in statements:
                    await conn.execute(s)
        finally:
            await conn.close()

    asyncio.run(run())


def test_a_closed_incident_is_sealed_with_everything_it_holds(archive):
    incident, messages, notes = synth.build(1, level=Level.III, attachments=2, satisfaction="satisfied")
    incident.reviews = [
        {"before": {"level": "IV"}, "after": {"level": "III"}, "reason": "涉及学校", "by": "analyst"}
    ]
    incident.public_response = {
        "text": "我局已关注此事并开展核查。",
        "published_at": incident.closed_at.isoformat(),
    }
    archive.close(incident, messages, notes)

    [brief] = archive.dossiers_of(incident.id)
    assert brief["version"] == 1 and brief["level"] == "III" and brief["supersedes"] is None
    assert brief["lead_unit_code"] == incident.lead_unit.code
    # 30 years from 1 January (Beijing time) of the year after closing.
    assert brief["retention_until"].startswith(f"{incident.closed_at.year + 30}-12-31T16:00")
    d = archive.get(f"/api/v1/archive/dossiers/{brief['id']}").json()
    content = d["content"]
    [msg] = content["messages"]
    assert msg["content_original"] == messages[0].content_original
    assert msg["reporter_encrypted"] == messages[0].reporter_encrypted  # identity stays encrypted
    assert content["notifications"][0]["acked_by"] == "leader-1"
    inc = content["incident"]
    for key in ("factors", "deadlines", "timeline", "assignments", "reviews", "reply", "public_response"):
        assert inc[key], key
    assert inc["feedback"][0]["satisfaction"] == "satisfied"
    assert [a["name"] for a in content["attachments"]] == ["现场照片0.jpg", "现场照片1.jpg"]
    assert content["dossier"]["retention"]["years"] == 30
    # The sealed bytes hash to the recorded digest.
    raw = service.canonical_json(content)
    assert service.sha256_hex(raw) == d["content_sha256"]
    assert archive.get("/api/v1/archive/verify").json()["ok"] is True


def test_a_reclosed_incident_gets_a_new_version_and_the_first_stays_as_it_was(archive):
    incident, messages, notes = synth.build(2, level=Level.II)
    archive.close(incident, messages, notes)
    [first] = archive.dossiers_of(incident.id)
    before = archive.get(f"/api/v1/archive/dossiers/{first['id']}").json()

    again = incident.model_copy(update={"close_count": 2, "close_summary": {"summary": "重办后再次办结"}})
    archive.close(again, messages, notes)
    versions = archive.dossiers_of(incident.id)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["supersedes"] == first["id"]
    after = archive.get(f"/api/v1/archive/dossiers/{first['id']}").json()
    assert after == before
    latest = archive.get(
        "/api/v1/archive/dossiers", params={"incident_id": incident.id, "latest_only": True}
    ).json()
    assert [i["version"] for i in latest["items"]] == [2]


def test_a_redelivered_event_seals_once(archive):
    incident, messages, notes = synth.build(3)
    event = archive.close(incident, messages, notes)
    [again] = archive.deliver(event)
    assert again["status"] == "duplicate"
    assert len(archive.dossiers_of(incident.id)) == 1


def known_upstream(archive, built) -> None:
    """Make the fake intake and notify know these incidents' messages and notifications."""
    for incident, messages, notes in built:
        for m in messages:
            archive.up.messages[m.id] = m.model_dump(mode="json")
        archive.up.notifications[incident.id] = [n.model_dump(mode="json") for n in notes]


def test_a_relay_batch_of_closings_is_sealed_in_order_in_one_go(archive):
    built = [synth.build(60 + i) for i in range(3)]
    known_upstream(archive, built)
    first = built[0][0]
    reclosed = first.model_copy(update={"close_count": 2, "close_summary": {"summary": "重办后再次办结"}})
    events = [IncidentClosed.build(source="grading", data=i) for i, _, _ in built]
    events.append(IncidentClosed.build(source="grading", data=reclosed))
    calls = archive.up.calls
    results = archive.deliver(*events, events[1])  # the second one twice in the delivery
    assert [r["status"] for r in results] == ["applied"] * 4 + ["duplicate"]
    # One message look-up for the whole batch and one notifications look-up per incident.
    assert archive.up.calls - calls == 1 + 3
    assert [v["version"] for v in archive.dossiers_of(first.id)] == [2, 1]
    for incident, messages, notes in built:
        [d] = [v for v in archive.dossiers_of(incident.id) if v["version"] == 1]
        content = archive.get(f"/api/v1/archive/dossiers/{d['id']}").json()["content"]
        assert [m["id"] for m in content["messages"]] == [m.id for m in messages]
        assert len(content["notifications"]) == len(notes)
    seqs = [archive.dossiers_of(i.id)[-1]["seq"] for i, _, _ in built]
    assert seqs == sorted(seqs)  # sealed in the order of the delivery
    assert archive.get("/api/v1/archive/verify").json()["ok"] is True


def test_one_failing_look_up_in_a_batch_holds_back_only_its_own_closing(archive):
    built = [synth.build(70 + i) for i in range(3)]
    known_upstream(archive, built)
    bad = built[1][0]
    archive.up.failing.add(bad.id)
    events = [IncidentClosed.build(source="grading", data=i) for i, _, _ in built]
    try:
        results = archive.deliver(*events)
    finally:
        archive.up.failing.discard(bad.id)
    assert [r["status"] for r in results] == ["applied", "error", "applied"]
    assert archive.dossiers_of(bad.id) == []
    assert [r["status"] for r in archive.deliver(events[1])] == ["applied"]  # the relay's retry
    assert len(archive.dossiers_of(bad.id)) == 1


def test_while_intake_is_down_the_event_waits_and_is_sealed_when_it_is_back(archive):
    incident, messages, _ = synth.build(4)
    for m in messages:
        archive.up.messages[m.id] = m.model_dump(mode="json")
    event = IncidentClosed.build(source="grading", data=incident)
    archive.up.down = True
    try:
        [result] = archive.deliver(event)
    finally:
        archive.up.down = False
    assert result["status"] == "error"  # the relay keeps the event and retries
    assert archive.dossiers_of(incident.id) == []
    [result] = archive.deliver(event)
    assert result["status"] == "applied"
    [d] = archive.dossiers_of(incident.id)
    assert archive.get(f"/api/v1/archive/dossiers/{d['id']}").json()["content"]["messages"]


def test_only_archivists_and_admins_read_the_archive(archive):
    for path in ("/api/v1/archive/verify", "/api/v1/archive/dossiers", "/api/v1/archive/reports/daily"):
        resp = archive.client.get(path)
        assert resp.status_code == 401 and resp.json()["error"]["code"] == "unauthenticated"
    for role in (Role.analyst, Role.leader, Role.unit, Role.supervisor):
        resp = archive.client.get("/api/v1/archive/dossiers", headers=staff(role))
        assert resp.status_code == 403 and resp.json()["error"]["code"] == "forbidden", role
    assert archive.client.get("/api/v1/archive/verify", headers=staff(Role.admin)).status_code == 200
    assert archive.client.get("/api/v1/archive/dossiers", headers=archivist()).status_code == 200


def test_an_unknown_dossier_is_404_in_the_error_shape(archive):
    for path in ("/api/v1/archive/dossiers/nope", "/api/v1/archive/dossiers/nope/export"):
        resp = archive.get(path)
        assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found"


def _seal_three(archive) -> list[dict]:
    ids = []
    for i in range(3):
        incident, messages, notes = synth.build(10 + i, level=Level.IV)
        archive.close(incident, messages, notes)
        ids.append(archive.dossiers_of(incident.id)[0])
    assert archive.get("/api/v1/archive/verify").json()["ok"] is True
    return ids


def test_a_row_altered_in_the_database_is_caught_and_named(fresh_archive):
    a, b, c = _seal_three(fresh_archive)
    # Someone with database access rewrites a message in b and lowers c's level (so it expires sooner).
    sql(
        fresh_archive,
        f'UPDATE dossier SET content = replace(content, \'"content_original":"\', '
        f"'\"content_original\":\"（已篡改）') WHERE id = '{b['id']}'",
        f"UPDATE dossier SET retention_until = NULL, level = 'I' WHERE id = '{c['id']}'",
    )
    report = fresh_archive.get("/api/v1/archive/verify").json()
    assert report["ok"] is False
    assert report["altered"] == sorted([b["id"], c["id"]])
    problems = {(p["dossier_id"], p["problem"]) for p in report["problems"]}
    assert (b["id"], "content_altered") in problems
    assert (c["id"], "header_altered") in problems
    assert a["id"] not in {p["dossier_id"] for p in report["problems"]}
    metrics = fresh_archive.client.get("/metrics").text
    assert "minsheng_archive_verification_failures_total" in metrics
    assert "minsheng_archive_chain_length 3.0" in metrics


def test_a_chain_rehashed_after_an_alteration_is_caught_by_the_seal(fresh_archive):
    a, b, c = _seal_three(fresh_archive)
    rows = {}
    for d in (b, c):
        full = fresh_archive.get(f"/api/v1/archive/dossiers/{d['id']}").json()
        rows[d["id"]] = full
    # The attacker alters b and recomputes every hash from b to the head, but cannot make the seal.
    content = rows[b["id"]]["content"]
    content["messages"][0]["content_original"] = "（已篡改）"
    text = service.canonical_json(content)
    digest = service.sha256_hex(text)
    link_b = service.chain_hash(
        prev=a["chain_hash"],
        seq=b["seq"],
        content_sha256=digest,
        dossier_id=b["id"],
        header_sha256=rows[b["id"]]["header_sha256"],
    )
    link_c = service.chain_hash(
        prev=link_b,
        seq=c["seq"],
        content_sha256=c["content_sha256"],
        dossier_id=c["id"],
        header_sha256=rows[c["id"]]["header_sha256"],
    )
    quoted = text.replace("'", "''")
    sql(
        fresh_archive,
        f"UPDATE dossier SET content = '{quoted}', content_sha256 = '{digest}', chain_hash = '{link_b}' "
        f"WHERE id = '{b['id']}'",
        f"UPDATE dossier SET prev_chain_hash = '{link_b}', chain_hash = '{link_c}' WHERE id = '{c['id']}'",
        f"UPDATE chain_head SET chain_hash = '{link_c}'",
    )
    report = fresh_archive.get("/api/v1/archive/verify").json()
    assert report["ok"] is False
    assert report["altered"] == sorted([b["id"], c["id"]])
    assert {p["problem"] for p in report["problems"]} == {"seal_invalid"}


def test_the_database_refuses_to_update_or_delete_a_sealed_dossier(fresh_archive):
    a, _, _ = _seal_three(fresh_archive)
    refused = (sqlite3.DatabaseError,)
    if fresh_archive.backend == "postgres":
        import asyncpg

        refused = (asyncpg.PostgresError,)
    for statement in (
        f"UPDATE dossier SET title = 'x' WHERE id = '{a['id']}'",
        f"DELETE FROM dossier WHERE id = '{a['id']}'",  # level IV, closed recently: under retention
    ):
        with pytest.raises(refused) as caught:
            sql(fresh_archive, statement, bypass_guard=False)
        assert "sealed" in str(caught.value) or "retention" in str(caught.value)
    assert fresh_archive.get("/api/v1/archive/verify").json()["ok"] is True


def test_retention_follows_the_policy_and_the_disposal_list_shows_what_expired(fresh_archive):
    old = datetime(2010, 6, 30, 20, 0, tzinfo=UTC)
    sealed = {}
    for i, level in enumerate((Level.I, Level.II, Level.III, Level.IV)):
        incident, messages, notes = synth.build(40 + i, level=level, closed_at=old)
        fresh_archive.close(incident, messages, notes)
        sealed[level.value] = fresh_archive.dossiers_of(incident.id)[0]
    assert sealed["I"]["retention_until"] is None and sealed["II"]["retention_until"] is None
    assert sealed["III"]["retention_until"].startswith("2040-12-31T16:00")  # 2011-01-01 local + 30 years
    assert sealed["IV"]["retention_until"].startswith("2020-12-31T16:00")
    page = fresh_archive.get("/api/v1/archive/disposal").json()
    assert [i["id"] for i in page["items"]] == [sealed["IV"]["id"]] and page["items"][0][
        "retention_years"
    ] == 10
    later = fresh_archive.get(
        "/api/v1/archive/disposal", params={"as_of": "2041-01-02T00:00:00+08:00"}
    ).json()
    assert [i["level"] for i in later["items"]] == ["IV", "III"]
    assert fresh_archive.get("/api/v1/archive/disposal", params={"as_of": "soon"}).status_code == 422


@pytest.mark.once
def test_retention_from_closing_when_the_policy_says_so():
    closed = datetime(2024, 2, 29, 3, 0, tzinfo=UTC)
    policy = {"retention_years": {"IV": 10, "I": None}, "retention_starts": "closed"}
    assert service.retention_until(level="IV", closed_at=closed, policy=policy) == datetime(
        2034, 2, 28, 3, 0, tzinfo=UTC
    )
    assert service.retention_until(level="I", closed_at=closed, policy=policy) is None


@pytest.mark.once
def test_canonical_json_is_one_byte_exact_form():
    a = service.canonical_json({"b": 1, "a": ["停水", {"y": None, "x": 1.5}]})
    b = service.canonical_json({"a": ["停水", {"x": 1.5, "y": None}], "b": 1})
    assert a == b == '{"a":["停水",{"x":1.5,"y":null}],"b":1}'
