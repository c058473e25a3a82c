"""Per-request context carried through logs, outgoing calls and events (request id, W3C trace)."""

import re
import secrets
from contextvars import ContextVar
from dataclasses import dataclass

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
trace_var: ContextVar["TraceContext | None"] = ContextVar("trace", default=None)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """A W3C trace context: this hop's span within a trace."""

    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        """The `traceparent` header value for this span."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> "TraceContext":
        """A new span in the same trace (for an outgoing call)."""
        return TraceContext(self.trace_id, secrets.token_hex(8), self.flags)


def new_request_id() -> str:
    """A fresh request id."""
    return secrets.token_hex(12)


def clean_request_id(value: str | None) -> str:
    """The caller's request id when it is well-formed, otherwise a fresh one."""
    if value and _REQUEST_ID.match(value):
        return value
    return new_request_id()


def trace_from_header(value: str | None) -> TraceContext:
    """A child span of the caller's traceparent, or a new trace when there is none or it is malformed."""
    if value:
        m = _TRACEPARENT.match(value.strip().lower())
        if m and m.group(1) != "0" * 32 and m.group(2) != "0" * 16:
            return TraceContext(m.group(1), secrets.token_hex(8), m.group(3))
    return TraceContext(secrets.token_hex(16), secrets.token_hex(8))


def current_traceparent() -> str | None:
    """The traceparent of the current span, if any."""
    t = trace_var.get()
    return t.traceparent if t else None
