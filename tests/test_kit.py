"""The service kit and the shared contracts: signing, principals, settings, events, exactly-once delivery."""

import asyncio
import concurrent.futures
import contextlib
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from gateway.config import GatewaySettings
from kit.app import database_unreachable, retry_while_database_down
from kit.errors import AppError
from kit.outbox import Outbox
from kit.security import PRINCIPAL_HEADER, decode_principal, encode_principal, sign_request, verify_signature
from schema.dto import Principal
from schema.enums import CITIZEN_STATUS_OF, CITIZEN_STATUS_TEXT, IncidentStatus, Level
from schema.events import MessageReceived, MessageReceivedData, parse_event
from services.intake.config import IntakeSettings
from tests.support import DEMO_SECRET, signed


def test_signature_binds_secret_method_path_body_and_time():
    header = sign_request("s3cret", "POST", "/internal/events", b'{"a":1}')
    verify_signature("s3cret", header, "POST", "/internal/events", b'{"a":1}')
    for args in (
        ("other", header, "POST", "/internal/events", b'{"a":1}'),
        ("s3cret", header, "GET", "/internal/events", b'{"a":1}'),
        ("s3cret", header, "POST", "/internal/other", b'{"a":1}'),
        ("s3cret", header, "POST", "/internal/events", b'{"a":2}'),
    ):
        with pytest.raises(AppError) as exc:
            verify_signature(*args)
        assert exc.value.code == "invalid_signature"
    old = sign_request("s3cret", "POST", "/p", b"", now=int(time.time()) - 1000)
    with pytest.raises(AppError) as exc:
        verify_signature("s3cret", old, "POST", "/p", b"", window=300)
    assert exc.value.code == "signature_expired"
    with pytest.raises(AppError) as exc:
        verify_signature("s3cret", None, "POST", "/p", b"")
    assert exc.value.code == "missing_signature"


def test_principal_token_round_trip_and_tampering():
    p = Principal(kind="staff", sub="analyst", roles=["analyst"], client_ip="10.0.0.1")
    token = encode_principal(p, "k" * 32)
    assert decode_principal(token, "k" * 32) == p
    with pytest.raises(AppError):
        decode_principal(token, "x" * 32)
    with pytest.raises(AppError):
        decode_principal(encode_principal(p, "k" * 32, ttl=-5), "k" * 32)


_TOKENS_WITHOUT_CRYPTOGRAPHY = """
import sys
import {module}
from kit.security import decode_principal, encode_principal
from schema.dto import Principal
p = Principal(kind="staff", sub="analyst", roles=["analyst"])
assert decode_principal(encode_principal(p, "k" * 32), "k" * 32) == p
print(sorted(m for m in sys.modules if m == "cryptography" or m.startswith("cryptography.")))
import cryptography.fernet  # hidden only while pyjwt was imported
print("cryptography.fernet" in sys.modules)
"""


@pytest.mark.once
@pytest.mark.parametrize("module", ["gateway.main", "services.grading.main", "services.notify.main"])
def test_tokens_are_made_and_checked_without_loading_cryptography(module):
    """pyjwt would load `cryptography` (≈ 11 MB resident) for key types Minsheng never uses: the
    gateway and the services that need no encryption sign and check HS256 tokens without it, and can
    still import it later."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = _TOKENS_WITHOUT_CRYPTOGRAPHY.format(module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_a_token_signed_with_another_algorithm_is_refused():
    from kit.jwt_hs256 import jwt

    p = Principal(kind="staff", sub="analyst", roles=["analyst"])
    claims = jwt.decode(encode_principal(p, "k" * 32), options={"verify_signature": False})
    for alg, key in (("none", None), ("HS512", "k" * 64)):
        forged = jwt.encode(claims, key, algorithm=alg)
        with pytest.raises(AppError) as exc:
            decode_principal(forged, "k" * 32)
        assert exc.value.code == "invalid_principal"


def test_production_refuses_demo_secrets():
    with pytest.raises(ValidationError, match="demo secrets"):
        IntakeSettings(mode="production", service_secret="real-secret-of-some-length-0123456789")
    with pytest.raises(ValidationError, match="demo secrets"):
        GatewaySettings(mode="production", service_secret="real-secret-of-some-length-0123456789")
    ok = IntakeSettings(
        mode="production",
        service_secret="real-secret-of-some-length-0123456789",
        pii_keys=["V0hBVC1BLVJFQUwta2V5LWZvci10ZXN0aW5nLTAxMjM="],
    )
    assert ok.mode == "production"


def test_gateway_refuses_to_start_in_production_while_demo_users_exist(service_app):
    # First run in demo mode seeds the demo users into this database …
    from fastapi.testclient import TestClient

    from gateway.config import GatewaySettings as GS
    from gateway.main import create_app

    demo = service_app("gateway")
    url = demo.app.state.settings.database_url
    demo.__exit__(None, None, None)
    prod = GS(
        mode="production",
        database_url=url,
        service_secret="real-secret-of-some-length-0123456789",
        jwt_keys={"k1": "real-jwt-key-of-some-length-0123456789"},
        jwt_active_kid="k1",
        log_json=False,
    )
    with pytest.raises(RuntimeError, match="demo credentials"), TestClient(create_app(prod)):
        pass


def test_citizen_status_mapping_covers_every_state():
    assert set(CITIZEN_STATUS_OF) == set(IncidentStatus)
    assert CITIZEN_STATUS_TEXT[CITIZEN_STATUS_OF[IncidentStatus.replied]] == "办理中"  # a draft is not public
    assert [lv.rank for lv in Level] == [1, 2, 3, 4]


def test_events_parse_by_type_and_reject_what_does_not_fit():
    data = MessageReceivedData(
        message_id="m1", tracking_code="T", channel="portal", content="x", received_at=datetime.now(UTC)
    )
    raw = MessageReceived.build(source="intake", data=data).model_dump(mode="json")
    raw["data"]["a_field_from_a_newer_sender"] = 1
    assert isinstance(parse_event(raw), MessageReceived)
    with pytest.raises(ValidationError):
        parse_event({**raw, "type": "message.unknown"})
    with pytest.raises(ValidationError):
        parse_event({**raw, "data": {"message_id": "m1"}})


def test_outbox_backoff_grows_with_jitter_and_a_cap():
    class S:
        relay_backoff_base_seconds = 0.5
        relay_backoff_max_seconds = 60.0

    ob = Outbox.__new__(Outbox)
    ob.settings = S()
    for attempts, low, high in ((1, 0.25, 0.75), (3, 1.0, 3.0), (30, 30.0, 90.0)):
        for _ in range(50):
            assert low <= ob._backoff(attempts) <= high


def _received(message_id: str) -> dict:
    data = MessageReceivedData(
        message_id=message_id,
        tracking_code=f"T-{message_id[:8]}",
        channel="portal",
        title="A3区学士街道路灯不亮",
        content="A3区学士街道路灯不亮，夜间出行不便。",
        received_at=datetime.now(UTC),
    )
    return MessageReceived.build(source="intake", data=data).model_dump(mode="json")


def test_an_event_delivered_twice_or_concurrently_is_applied_once(service_app):
    server = service_app("grading", serve=True)  # real HTTP, so that deliveries can race
    url = f"{server.url}/internal/events"
    event = _received(str(uuid.uuid4()))
    first = signed("POST", url, body={"events": [event]})
    again = signed("POST", url, body={"events": [event]})
    assert first.json()["results"][0]["status"] == "applied"
    assert again.json()["results"][0]["status"] == "duplicate"

    racing = _received(str(uuid.uuid4()))
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda _: signed("POST", url, body={"events": [racing]}), range(6)))
    statuses = sorted(r.json()["results"][0]["status"] for r in results)
    assert statuses.count("applied") == 1 and set(statuses) <= {"applied", "duplicate"}, statuses

    # Unsigned or wrongly signed calls never reach the handler; a malformed event is rejected for good.
    assert signed("POST", url, body={"events": [_received("x")]}, secret="wrong").status_code == 401
    bad = signed("POST", url, body={"events": [{"id": "1", "type": "message.received", "data": {}}]})
    assert bad.json()["results"][0]["status"] == "rejected"

    analyst = encode_principal(Principal(kind="staff", sub="analyst", roles=["analyst"]), DEMO_SECRET)
    for ev in (event, racing):
        resp = httpx.get(
            f"{server.url}/api/v1/incidents",
            params={"message_id": ev["data"]["message_id"]},
            headers={PRINCIPAL_HEADER: analyst},
        )
        assert resp.json()["total"] == 1, resp.text


def test_demo_secret_constant_matches_the_default():
    assert IntakeSettings().service_secret == DEMO_SECRET


def test_batch_handlers_share_one_transaction_and_fall_back_one_by_one(service_app):
    from kit.inbox import EventConsumer
    from services.intake.models import InboxEvent

    intake = service_app("intake")
    state = intake.app.state
    consumer = EventConsumer(inbox_model=InboxEvent)
    calls: list[list[str]] = []

    @consumer.on_batch("message.received")
    async def handle(session, events, st):
        calls.append([e.data.message_id for e in events])
        if any(e.data.message_id == "poison" for e in events):
            raise RuntimeError("cannot apply")

    good = [_received(f"m{i}") for i in range(3)]
    results = intake.portal.call(consumer.apply_all, [*good, good[0]], state)
    assert [r.status for r in results] == ["applied", "applied", "applied", "duplicate"]
    assert calls == [["m0", "m1", "m2"]]  # one call, one transaction for the run

    calls.clear()
    poison = _received("poison")
    fresh = [_received("m9"), poison, good[1]]
    results = intake.portal.call(consumer.apply_all, fresh, state)
    assert [r.status for r in results] == ["applied", "error", "duplicate"]
    assert calls[0] == ["m9", "poison"] and ["m9"] in calls[1:]
    # The failed one is not in the inbox: a redelivery is applied, not ignored.
    assert intake.portal.call(consumer.apply_all, [poison], state)[0].status == "error"


def test_a_start_up_step_waits_for_a_restarting_database_but_not_for_a_real_error():
    tries = []

    async def flaky():
        tries.append(time.monotonic())
        if len(tries) < 3:
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("the database is restarting"))
        return "seeded"

    assert asyncio.run(retry_while_database_down(flaky, seconds=10)) == "seeded"
    assert len(tries) == 3

    # PostgreSQL refusing connections while it starts or stops comes through asyncpg as a server error
    # (SQLSTATE 57P03 / 57P01), which SQLAlchemy wraps as a plain DBAPIError: still an outage.
    tries.clear()

    async def starting_up():
        tries.append(time.monotonic())
        if len(tries) == 1:
            cause = asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
            orig = Exception("adapted")
            orig.__cause__ = cause
            raise DBAPIError("SELECT 1", {}, orig)
        if len(tries) == 2:
            raise DBAPIError("SELECT 1", {}, asyncpg.exceptions.AdminShutdownError("terminating connection"))
        return "up"

    assert asyncio.run(retry_while_database_down(starting_up, seconds=10)) == "up"
    assert len(tries) == 3
    unique = DBAPIError("INSERT", {}, asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not database_unreachable(unique)

    # Not a database outage, so no retry: the production-mode refusal, and a missing file (an OSError,
    # but waiting will not bring it back).
    for error in (
        RuntimeError("production mode refuses to start while demo credentials exist"),
        FileNotFoundError("deploy/bundles/x/units.yaml"),
    ):

        async def fails(error=error):
            tries.append(time.monotonic())
            raise error

        tries.clear()
        with pytest.raises(type(error)):
            asyncio.run(retry_while_database_down(fails, seconds=10))
        assert len(tries) == 1, error

    async def down():
        raise OperationalError("SELECT 1", {}, ConnectionRefusedError("down"))

    started = time.monotonic()
    with pytest.raises(OperationalError):
        asyncio.run(retry_while_database_down(down, seconds=0.5))
    assert time.monotonic() - started < 5  # gives up after its time, for the supervisor to restart


def test_the_pool_sees_a_connection_the_server_closed():
    # The pool's check of idle connections goes through kit.http's stream: a connection the server
    # has closed must read as "readable" (so it is dropped, not reused for the next request).
    from kit.http import _Backend

    async def go():
        closed = asyncio.Event()

        async def serve(reader, writer):
            await closed.wait()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        stream = await _Backend().connect_tcp("127.0.0.1", port)
        before = stream.get_extra_info("is_readable")
        closed.set()
        for _ in range(100):
            if stream.get_extra_info("is_readable"):
                break
            await asyncio.sleep(0.01)
        after = stream.get_extra_info("is_readable")
        await stream.aclose()
        server.close()
        return before, after

    before, after = asyncio.run(go())
    assert (before, after) == (False, True)


def test_a_pooled_connection_the_server_ended_is_replaced_at_checkout(databases, backend):
    # No pre-ping round trips: a connection PostgreSQL terminated (as in a restart) is seen closed at
    # checkout and replaced, so the next transaction succeeds on a new backend.
    if backend != "postgres":
        pytest.skip("PostgreSQL only: SQLite has no server to end a connection")
    from sqlalchemy import text

    from kit.db import make_engine

    url = databases.url("pool")

    async def go():
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:
                first = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            admin = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", first)
            finally:
                await admin.close()
            await asyncio.sleep(0.3)  # the loop reads the server's goodbye
            async with engine.connect() as conn:
                second = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar()
            return first, second
        finally:
            await engine.dispose()

    first, second = asyncio.run(go())
    assert first != second


def test_prepared_statements_are_kept_within_a_parameter_budget(databases, backend):
    # A bulk statement is a new statement for every row count; each kept one holds a type and a codec
    # per parameter (on the server too). A connection keeps statements up to a budget of parameters:
    # the least recently used go first, one over the budget alone is run and let go.
    if backend != "postgres":
        pytest.skip("PostgreSQL only: prepared statements are asyncpg's")
    from sqlalchemy import column, select, text, values
    from sqlalchemy.types import Integer

    from kit.db import make_engine

    url = databases.url("stmts")

    def in_list(n: int):  # n values and the literal 0: n + 1 parameters
        rows = values(column("x", Integer), name="v").data([(i,) for i in range(n)])
        return select(rows.c.x).where(rows.c.x >= 0)

    async def go():
        engine = make_engine(url, pool_size=1, max_overflow=0, statement_cache_params=60)
        try:
            async with engine.connect() as conn:
                cache = (await conn.get_raw_connection()).dbapi_connection._prepared_statement_cache
                for n in (3, 5, 50, 200, 3, 50):
                    assert len((await conn.execute(in_list(n))).all()) == n
                await conn.execute(text("SELECT 1"))
                kept = [op.count("$") for op in cache]
                on_server = await conn.scalar(text("SELECT count(*) FROM pg_prepared_statements"))
            return kept, cache.params, on_server
        finally:
            await engine.dispose()

    kept, params, on_server = asyncio.run(go())
    # 4, 6 → 4, 6, 51 is over 60: 4 goes; 201 alone is over; 4 again: 6 goes; 51 used; SELECT 1
    assert kept == [4, 51, 0] and params == 55
    assert on_server <= 5  # the three kept, and at most two let go but not yet closed


def test_in_lists_of_every_length_share_a_few_prepared_statements(databases, backend):
    # An IN list of n values is a statement of its own per n; padded to powers of two, lists of
    # lengths 1..100 make 8 statements (1, 2, 4, …, 128) instead of 100, with the same answers.
    from sqlalchemy import func, select

    from kit.db import make_engine, padded

    assert padded([]) == [] and padded([7]) == [7] and padded([1, 2]) == [1, 2]
    assert padded([1, 2, 3]) == [1, 2, 3, 3] and len(padded(range(5))) == 8 and len(padded(range(8))) == 8
    assert all(set(padded(range(n))) == set(range(n)) for n in range(1, 300))
    if backend != "postgres":
        return
    url = databases.url("inlists")
    table = func.generate_series(0, 199).table_valued("x").render_derived(with_types=False)

    async def go(pad):
        engine = make_engine(url, pool_size=1, max_overflow=0)
        try:
            async with engine.connect() as conn:
                cache = (await conn.get_raw_connection()).dbapi_connection._prepared_statement_cache
                for n in range(1, 101):
                    wanted = list(range(0, 2 * n, 2))
                    q = select(table.c.x).where(table.c.x.in_(pad(wanted)))
                    assert sorted(x for (x,) in (await conn.execute(q)).all()) == wanted
                return len(cache)
        finally:
            await engine.dispose()

    assert asyncio.run(go(padded)) == 8
    assert asyncio.run(go(list)) == 100  # the control: one per length


def test_the_statement_cache_keeps_the_most_recently_used_within_its_capacity():
    from kit.db import StatementCache

    cache = StatementCache(capacity=2, budget=100)
    cache["a $1"], cache["b $1 $2"] = "A", "B"
    assert cache["a $1"] == "A"  # a is now the most recent
    cache["c"] = "C"
    assert list(cache) == ["a $1", "c"] and cache.params == 1 and "b $1 $2" not in cache
    cache["a $1"] = "A2"  # replaced, not counted twice
    assert cache.params == 1 and len(cache) == 2
    del cache["a $1"]
    assert cache.params == 0 and list(cache) == ["c"]


def test_the_pool_serves_a_long_queue():
    # Far more calls than connections: each waits for a connection and every one is answered once
    # (the pool skips an origin that can get no connection, so a long queue stays cheap).
    from kit.http import PoolTransport

    async def go():
        order: list[int] = []

        async def serve(reader, writer):
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:  # the client closed the connection
                    break
                path = head.split(b" ", 2)[1].decode()
                order.append(int(path.strip("/")))
                await asyncio.sleep(0.002)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        limits = httpx.Limits(max_connections=3, max_keepalive_connections=3)
        async with httpx.AsyncClient(transport=PoolTransport(limits=limits), trust_env=False) as http:
            tasks = []
            for i in range(300):
                tasks.append(asyncio.create_task(http.get(f"http://127.0.0.1:{port}/{i}")))
                await asyncio.sleep(0)  # each call queues before the next is made
            answers = await asyncio.gather(*tasks)
        server.close()
        return [r.status_code for r in answers], order

    statuses, order = asyncio.run(go())
    assert statuses == [200] * 300
    assert sorted(order) == list(range(300))


def test_the_pool_asks_one_socket_per_request_and_never_sends_on_one_the_server_closed():
    # The pool checks whether the server closed a connection when it picks that connection for a
    # request, not every idle connection's socket on every request: with 20 connections idle a request
    # costs a couple of socket checks, and after the server closed all of them a request still goes
    # out on a fresh connection instead of failing on a dead one.
    from kit import http as kit_http

    checks = 0
    readable = kit_http._Stream.get_extra_info

    def counted(self, info):
        nonlocal checks
        checks += info == "is_readable"
        return readable(self, info)

    async def go():
        writers: list[asyncio.StreamWriter] = []

        async def serve(reader, writer):
            writers.append(writer)
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionResetError):
                    break
                await asyncio.sleep(0.01)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        limits = httpx.Limits(max_connections=20, max_keepalive_connections=20, keepalive_expiry=60)
        transport = kit_http.PoolTransport(limits=limits)
        async with httpx.AsyncClient(transport=transport, trust_env=False) as http:
            assert {r.status_code for r in await asyncio.gather(*(http.get(url) for _ in range(20)))} == {200}
            assert len(writers) == 20  # twenty connections, idle now
            before = checks
            for _ in range(10):
                assert (await http.get(url)).status_code == 200
            per_request = (checks - before) / 10
            for writer in writers:  # the server ends every connection it has
                writer.close()
            await asyncio.sleep(0.1)
            after_close = await http.get(url)
        server.close()
        return per_request, after_close.status_code, len(writers)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kit_http._Stream, "get_extra_info", counted)
        per_request, status, connections = asyncio.run(go())
    assert per_request <= 2, per_request  # httpcore alone: two per idle connection, 40 here
    assert status == 200 and connections == 21  # a new connection carried it


def test_revisions_are_read_as_alembic_reads_them_without_importing_it(databases, tmp_path):
    # Serving processes compare the database's revision with the code's for readiness, without
    # Alembic in memory: the head read from the scripts must be Alembic's, for every service.
    import subprocess
    import sys
    from pathlib import Path

    from alembic.script import ScriptDirectory

    from kit.db import make_engine
    from kit.migrate import alembic_config, upgrade
    from kit.schema_revision import current_revision, head_revision

    root = Path(__file__).resolve().parents[1]
    dirs = sorted(root.glob("services/*/migrations"))
    assert len(dirs) == 4
    for d in dirs:
        assert (
            head_revision(d) == ScriptDirectory.from_config(alembic_config(d, "sqlite://")).get_current_head()
        )

    # A folder with two heads is an error, not a guess.
    forked = tmp_path / "forked" / "versions"
    forked.mkdir(parents=True)
    for rev, down in (("a1", None), ("b2", "a1"), ("c3", "a1")):
        (forked / f"{rev}.py").write_text(f"revision: str = {rev!r}\ndown_revision: str | None = {down!r}\n")
    with pytest.raises(RuntimeError, match="several heads"):
        head_revision(forked.parent)

    grading = root / "services/grading/migrations"
    url = databases.url("revisions")

    async def read():
        engine = make_engine(url)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    assert asyncio.run(read()) is None  # never migrated
    upgrade(grading, url)
    assert asyncio.run(read()) == head_revision(grading)

    probe = "import sys, services.grading.main; print(sorted({'alembic', 'mako'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == "[]"


def test_table_models_default_their_containers_without_builtin_factories():
    # pydantic reads a default factory's signature whenever it fills a default (model_validate, and a
    # row kit.tables cannot build directly), and for a builtin (list, dict) that parses its text
    # signature: ≈ 50 µs per field per row. kit.db.new_list / new_dict cost a tenth of that.
    tables = _table_models()
    slow = [
        f"{model.__name__}.{name}"
        for model in tables
        for name, field in model.model_fields.items()
        if field.default_factory in (list, dict, set, tuple, frozenset)
    ]
    assert slow == []


def _table_models() -> list:
    """Every table class of the gateway and the services."""
    import importlib

    from sqlmodel import SQLModel

    for module in (
        "gateway.models",
        *(f"services.{s}.models" for s in ("intake", "grading", "notify", "archive")),
    ):
        importlib.import_module(module)
    tables = sorted(
        (c for c in _subclasses(SQLModel) if getattr(c, "__table__", None) is not None),
        key=lambda c: (c.__module__, c.__name__),
    )
    assert len(tables) > 20
    return tables


def _fields_of(row) -> dict:
    return {k: v for k, v in row.__dict__.items() if k != "_sa_instance_state"}


def test_table_rows_are_built_as_sqlmodel_builds_them():
    """kit.tables.DirectInit fills a new row's dict at once: the same values, defaults and set of
    given fields as SQLModel's construction, for every table, with only the required fields given
    and with every field given; a mutable default is a fresh object for each row."""
    from kit.tables import _PLANS, built_as_sqlmodel

    checked = 0
    for model in _table_models():
        required = {n: f"{model.__name__}.{n}" for n, f in model.model_fields.items() if f.is_required()}
        every = {n: f"{model.__name__}.{n}" for n in model.model_fields}
        for data in (required, every):
            row, reference = model(**data), built_as_sqlmodel(model, **data)
            assert _fields_of(row) == _fields_of(reference), model.__name__
            assert row.__pydantic_fields_set__ == reference.__pydantic_fields_set__, model.__name__
        assert _PLANS[model] is not None, f"{model.__name__} is built SQLModel's way"
        again = model(**required)
        for name, value in _fields_of(model(**required)).items():
            if isinstance(value, list | dict | set):
                assert again.__dict__[name] is not value, f"{model.__name__}.{name} is shared"
                checked += 1
    assert checked > 10


def test_a_row_built_at_once_is_inserted_tracked_and_read_back(databases, backend):
    """A row built without per-field setattr is inserted with all its values (defaults and JSON
    included), and changes made to it afterwards are tracked and saved like any other."""
    from deploy.launcher import migrations_dir
    from kit.db import make_engine, make_session_factory
    from kit.migrate import upgrade
    from services.grading.models import OutboxEvent

    url = databases.url("grading")
    upgrade(migrations_dir("grading"), url)
    at = datetime(2026, 12, 7, 8, 30, tzinfo=UTC)
    given = {
        "event_id": "e-1",
        "event_type": "incident.graded",
        "destination": "notify",
        "payload": {"title": "小区停水", "units": ["A1区水务局"], "n": 3},
        "created_at": at,
        "next_attempt_at": at,
    }

    async def go():
        engine = make_engine(url)
        sessions = make_session_factory(engine)
        try:
            async with sessions() as session:
                row = OutboxEvent(**given)
                session.add(row)
                await session.commit()
                inserted = await session.get(OutboxEvent, row.id, populate_existing=True)
                first = inserted.model_dump()
                inserted.attempts, inserted.last_error = 2, "超时"
                await session.commit()
            async with sessions() as session:
                return first, (await session.get(OutboxEvent, row.id)).model_dump()
        finally:
            await engine.dispose()

    first, changed = asyncio.run(go())
    defaults = {
        "claimed_until": None,
        "attempts": 0,
        "delivered_at": None,
        "dead_at": None,
        "last_error": None,
    }
    assert first == {"id": first["id"], **given, **defaults}
    assert changed == {**first, "attempts": 2, "last_error": "超时"}


def _subclasses(cls) -> set:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out


_REBUILDS = """
import sys
import numpy as np
from kit.app import pin_malloc_mmap_threshold
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * 4096
pinned = pin_malloc_mmap_threshold(int(sys.argv[1]))
base = rss()
keys, slots, lasting = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int32), []
for _ in range(100):  # two sorted arrays rebuilt with more each time, as grading's index does
    new = np.arange(20000, dtype=np.uint64)
    pos = np.searchsorted(keys, new)
    keys, slots = np.insert(keys, pos, new), np.insert(slots, pos, new.astype(np.int32))
    lasting.append(bytes(3000))  # what lives on between two rebuilds
print(pinned, (rss() - base) / (keys.nbytes + slots.nbytes))
"""


@pytest.mark.once
def test_a_pinned_mmap_threshold_gives_rebuilt_buffers_back():
    """Large buffers rebuilt again and again cost what they hold once the threshold is pinned; with
    glibc's sliding one the heap keeps the holes they leave (the control run shows it)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]

    def run(threshold: int) -> tuple[str, float]:
        cmd = [sys.executable, "-c", _REBUILDS, str(threshold)]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=True).stdout.split()
        return out[0], float(out[1])

    pinned, ratio = run(128 * 1024)
    if pinned != "True":
        pytest.skip("no glibc mallopt here")
    assert ratio < 1.2
    control, control_ratio = run(0)
    assert control == "False" and control_ratio > 1.3


_LOADED_BY_A_SERVICE = """
import sys
import {module}
import httpx
if "{module}" in ("services.grading.main", "services.archive.main"):
    from kit.segmenter import segmenter
    assert segmenter().cut("南京市长江大桥的小区") == ["南京市", "长江大桥", "的", "小区"]
if "{module}" == "services.grading.main":
    from services.grading.clustering import MatterIndex
    from services.grading.bundle import load_bundle
    from services.grading.tests.helpers import BUNDLE
    MatterIndex(load_bundle(BUNDLE).policy.clustering)
assert callable(httpx.main)
names = ("rich", "pygments", "rjieba", "rjieba.rjieba", "numpy.random", "joblib", "sklearn")
print(sorted(n for n in names if n in sys.modules))
"""


@pytest.mark.once
@pytest.mark.parametrize(
    ("module", "loaded"),
    [
        ("gateway.main", []),
        ("services.intake.main", []),
        ("services.grading.main", ["rjieba.rjieba"]),
        ("services.notify.main", []),
        ("services.archive.main", ["rjieba.rjieba"]),
    ],
)
def test_a_service_process_loads_no_library_it_does_not_use(module, loaded):
    """Resident memory a service would carry for nothing: httpx's command-line client (rich, pygments:
    3.4 MB), rjieba's default dictionary (`import rjieba`: 34 MB; grading and archive build their own
    segmenter from the compiled module, 26 MB), numpy.random (2.8 MB; grading's MinHash permutations
    are drawn without it), joblib and scikit-learn (models are plain pickles of arrays)."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = _LOADED_BY_A_SERVICE.format(module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True)
    assert out.stdout.strip() == str(loaded)


@pytest.mark.once
def test_the_segmenter_cuts_every_real_text_as_rjiebas_default_dictionary(tmp_path):
    """Same words in every mode the services use, over every text field of ../shared/data; a later
    `import rjieba` reuses the compiled module."""
    import json

    from kit.segmenter import build_segmenter, dictionary_path, segmenter

    seg = segmenter()
    import rjieba

    assert rjieba.Jieba is type(seg)
    texts = []
    for path in sorted((Path(__file__).resolve().parents[2] / "shared" / "data").glob("*.jsonl")):
        with path.open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts += [row.get("title") or "", row.get("body") or "", row.get("reply") or ""]
    texts = [t for t in texts if t]
    assert len(texts) > 15_000
    ours, theirs = seg.cut_for_search, rjieba.cut_for_search
    differ = [t for t in texts if seg.cut(t) != rjieba.cut(t) or ours(t, False) != theirs(t, False)]
    assert differ == []
    # A segmenter holds the words of the file it is given: one word more, one cut different.
    with_extra = dictionary_path().read_text(encoding="utf-8") + "物业乱收费 50000 n\n"
    extra = tmp_path / "dict.txt"
    extra.write_text(with_extra, encoding="utf-8")
    assert build_segmenter(extra).cut("小区物业乱收费") == ["小区", "物业乱收费"]
    assert seg.cut("小区物业乱收费") == ["小区", "物业", "乱收费"]


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no CA signed, and its key."""
    from datetime import timedelta
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    address = x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1"))])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(address, critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.mark.once
def test_the_pooled_client_still_checks_tls_certificates(tmp_path):
    """The pooled transport no longer builds httpx's SSL context up front: an https call still checks
    the server's certificate (the system's CA bundle refuses a self-signed one)."""
    import ssl

    from kit.http import make_http_client

    cert, key = _self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def answer(reader, writer):
        with contextlib.suppress(Exception):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    async def scenario():
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        try:
            async with make_http_client() as client:
                with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.get(url)
            # The same server answers a client that trusts its certificate: the refusal was the check.
            async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=str(cert))) as trusting:
                assert (await trusting.get(url)).text == "ok"
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())
