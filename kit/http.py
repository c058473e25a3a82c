"""The one shared outbound HTTP client of a process: pooled, with explicit timeouts, carrying context."""

import httpx

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


def make_http_client(
    *,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
    max_connections: int = 100,
    max_keepalive: int = 50,
    **kwargs,
) -> httpx.AsyncClient:
    """A pooled client that forwards the request id and W3C trace context on every call.

    Its transport (the connection pool) is public as `client.pool_transport`, for a caller such as
    the gateway's proxy that forwards raw requests without the client's per-call conveniences
    (cookies, redirects, hooks), which cost a measurable part of a millisecond each.
    """
    transport = httpx.AsyncHTTPTransport(
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_keepalive,
            keepalive_expiry=KEEPALIVE_SECONDS,
        ),
        retries=0,
    )
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(connect=connect_timeout, read=read_timeout, write=read_timeout, pool=5.0),
        transport=transport,
        event_hooks={"request": [_carry_context]},
        trust_env=False,
        **kwargs,
    )
    client.pool_transport = transport
    return client
