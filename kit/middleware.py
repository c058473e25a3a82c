"""ASGI middleware every process runs: request id, W3C trace context, access log, HTTP metrics."""

import logging
import time

from prometheus_client import Counter, Histogram

from kit.context import clean_request_id, request_id_var, trace_from_header, trace_var

log = logging.getLogger("minsheng.access")

HTTP_REQUESTS = Counter(
    "minsheng_http_requests_total", "HTTP requests handled", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "minsheng_http_request_duration_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
_QUIET = frozenset({"/livez", "/readyz", "/metrics", "/healthz"})


class RequestContextMiddleware:
    """Sets request id and trace for the request, echoes X-Request-ID, logs and measures it."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        rid = clean_request_id(headers.get("x-request-id"))
        trace = trace_from_header(headers.get("traceparent"))
        rid_token = request_id_var.set(rid)
        trace_token = trace_var.set(trace)
        scope.setdefault("state", {})["request_id"] = rid
        status_holder = {"status": 500}
        started = time.perf_counter()

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
                hdrs = list(message.get("headers", []))
                if not any(k.lower() == b"x-request-id" for k, _ in hdrs):
                    hdrs.append((b"x-request-id", rid.encode("latin-1")))
                hdrs.append((b"traceparent", trace.traceparent.encode("latin-1")))
                message["headers"] = hdrs
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = scope.get("minsheng_route") or getattr(route, "path", None) or "unmatched"
            status = status_holder["status"]
            HTTP_REQUESTS.labels(scope["method"], template, str(status)).inc()
            HTTP_LATENCY.labels(scope["method"], template).observe(elapsed)
            path = scope.get("path", "")
            if path not in _QUIET or status >= 400:
                log.info(
                    "%s %s %s %.1fms",
                    scope["method"],
                    path,
                    status,
                    elapsed * 1000,
                    extra={"status": status, "duration_ms": round(elapsed * 1000, 2), "route": template},
                )
            request_id_var.reset(rid_token)
            trace_var.reset(trace_token)
