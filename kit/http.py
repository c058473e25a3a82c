"""The one shared outbound HTTP client of a process: pooled, with explicit timeouts, carrying context."""

import time

import httpcore
import httpx
from httpcore._utils import is_socket_readable

from kit.context import request_id_var, trace_var


def context_headers() -> dict[str, str]:
    """X-Request-ID and a child traceparent of the current request, for an outgoing call."""
    out = {}
    rid = request_id_var.get()
    if rid:
        out["X-Request-ID"] = rid
    trace = trace_var.get()
    if trace:
        out["traceparent"] = trace.child().traceparent
    return out


async def _carry_context(request: httpx.Request) -> None:
    for name, value in context_headers().items():
        if name.lower() not in request.headers:
            request.headers[name] = value


# How long a pooled connection may sit idle: well under the servers' keep-alive timeout, or a request
# sent on a connection the server is just closing fails with "server disconnected" (a 502 at the
# gateway under load). The launcher and the containers start uvicorn with SERVER_KEEPALIVE_SECONDS.
KEEPALIVE_SECONDS = 4.0
SERVER_KEEPALIVE_SECONDS = 15
# uvicorn's --http of every process: httptools, with a response's head and body in one send.
HTTP_PROTOCOL = "kit.httpserver:HttpToolsProtocol"


class _Stream(httpcore.AsyncNetworkStream):
    """httpcore's anyio stream, answering "is_readable" from the socket it keeps at hand.

    The pool asks every idle connection whether the server closed it, twice per request; through
    anyio's typed attributes that lookup cost a third of the gateway's CPU under load.
    """

    def __init__(self, stream: httpcore.AsyncNetworkStream):
        self._inner = stream
        self._sock = stream.get_extra_info("socket")

    # httpcore's stream interface takes the timeouts as arguments.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # noqa: ASYNC109
        return await self._inner.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str):
        if info == "is_readable" and self._sock is not None:
            return is_socket_readable(self._sock)
        return self._inner.get_extra_info(info)


class _Backend(httpcore.AnyIOBackend):
    async def connect_tcp(self, *args, **kwargs) -> httpcore.AsyncNetworkStream:
        return _Stream(await super().connect_tcp(*args, **kwargs))


def _past_keepalive(connection, now: float) -> bool:
    """`has_expired()` without its socket check: the keep-alive time is over (or the connect failed)."""
    inner = connection._connection
    if inner is None:
        return connection.has_expired()
    expire_at = getattr(inner, "_expire_at", None)
    return expire_at is not None and now > expire_at


class _Pool(httpcore.AsyncConnectionPool):
    """httpcore's pool, its bookkeeping linear in the connections instead of quadratic, and one socket
    check per request instead of one per idle connection.

    httpcore 1.0 recounts the whole pool once per idle connection, every time a request comes or
    goes (`len([c.is_idle() for c in connections])`, which is the pool's size); with a few dozen
    connections to intake that was a sixth of the gateway's CPU. It also asks every idle connection's
    socket whether the server closed it (a poll system call each), twice per request: 14 % of the
    gateway's CPU with 32 clients. Here a connection's socket is asked when the connection is about to
    carry a request, which is when it matters; an idle one the server closed meanwhile goes when it
    is picked or its keep-alive time ends. Otherwise the same decisions, in the same order.
    """

    def _assign_requests_to_connections(self) -> list:
        closing, now = [], time.monotonic()
        for connection in list(self._connections):
            if connection.is_closed():
                self._connections.remove(connection)
            elif _past_keepalive(connection, now) or (
                connection.is_idle() and len(self._connections) > self._max_keepalive_connections
            ):
                self._connections.remove(connection)
                closing.append(connection)
        queued = [r for r in self._requests if r.is_queued()]
        if not queued:
            return closing
        blocked: list = []  # origins that can get no connection now (httpcore's Origin is unhashable)
        for pool_request in queued:
            origin = pool_request.request.url.origin
            if origin in blocked:
                continue
            available = self._pick(origin, closing)
            if available is not None:
                pool_request.assign_to_connection(available)
            elif len(self._connections) < self._max_connections:
                connection = self.create_connection(origin)
                self._connections.append(connection)
                pool_request.assign_to_connection(connection)
            else:
                idle = next((c for c in self._connections if c.is_idle()), None)
                if idle is not None:
                    self._connections.remove(idle)
                    closing.append(idle)
                    connection = self.create_connection(origin)
                    self._connections.append(connection)
                    pool_request.assign_to_connection(connection)
                else:
                    # Full, nothing idle: the loop only takes connections, so every later request for
                    # this origin waits too. Skipping them keeps a long queue (an overloaded upstream)
                    # from costing queue × pool on every request that comes or goes.
                    blocked.append(origin)
        return closing

    def _pick(self, origin, closing: list):
        """The first connection that can take a request for `origin` now and that the server has not
        closed; the closed ones met on the way are dropped."""
        for connection in list(self._connections):
            if connection.can_handle_request(origin) and connection.is_available():
                if not connection.has_expired():
                    return connection
                self._connections.remove(connection)
                closing.append(connection)
        return None


class PoolTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over an httpcore pool that keeps its bookkeeping cheap under load."""

    def __init__(self, *, limits: httpx.Limits, retries: int = 0):
        # Not httpx's __init__: it builds an SSL context (the CA bundle, 1.7 MB resident) for the pool
        # this one replaces. httpcore makes one when a connection needs TLS, as it did with that pool.
        self._pool = _Pool(
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            retries=retries,
            network_backend=_Backend(),
        )


def make_http_client(
    *,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
    max_connections: int = 100,
    max_keepalive: int = 50,
    **kwargs,
) -> httpx.AsyncClient:
    """A pooled client that forwards the request id and W3C trace context on every call."""
    transport = PoolTransport(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        retries=0,
    )
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=5.0),
        transport=transport,
        event_hooks={"request": [_carry_context]},
        trust_env=False,
        **kwargs,
    )
