"""What the gateway adds for browsers: security headers on every answer and a strict CORS policy.

CORS admits only the exact origins of `cors_origins`; a preflight from anywhere else, or asking for a
method or header the API does not take, is refused with 403 in the platform's JSON error shape.
Credentials travel in headers (API key, bearer token), never cookies, so no origin gets
`Access-Control-Allow-Credentials`.
"""

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response

from kit.errors import error_response

CORS_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
CORS_REQUEST_HEADERS = frozenset(
    {
        "authorization",
        "content-type",
        "x-api-key",
        "idempotency-key",
        "x-request-id",
        "traceparent",
        "tracestate",
        "accept",
        "accept-language",
    }
)
CORS_EXPOSED = "X-Request-ID, Retry-After, X-RateLimit-Limit, Location, traceparent"

_API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# Swagger UI (/docs) loads its script and style from the CDN FastAPI points at.
_DOCS_CSP = (
    "default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def security_headers(path: str, hsts_seconds: int) -> list[tuple[str, str]]:
    """The headers every gateway answer carries (set unless the upstream already chose one)."""
    out = [
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Referrer-Policy", "no-referrer"),
        ("Content-Security-Policy", _DOCS_CSP if path == "/docs" else _API_CSP),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()"),
        # Answers carry personal data and staff views: no shared or browser cache keeps them.
        ("Cache-Control", "no-store"),
    ]
    if hsts_seconds > 0:
        out.append(("Strict-Transport-Security", f"max-age={hsts_seconds}; includeSubDomains"))
    return out


class SecurityHeadersMiddleware:
    """Adds the security headers to every response the gateway sends."""

    def __init__(self, app, *, hsts_seconds: int):
        self.app = app
        self.hsts_seconds = hsts_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        wanted = security_headers(scope.get("path", ""), self.hsts_seconds)

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in wanted:
                    if name.lower() == "content-security-policy" or name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_wrapper)


class CorsMiddleware:
    """A strict CORS policy: exact allowed origins, the API's methods and headers, no credentials."""

    def __init__(self, app, *, origins: list[str], max_age: int):
        self.app = app
        self.origins = frozenset(o.rstrip("/") for o in origins)
        self.max_age = max_age

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        allowed = origin in self.origins
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(scope, receive, send, headers, origin, allowed)
            return
        if not allowed:  # the browser withholds the answer from the page; other callers are unaffected
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Expose-Headers"] = CORS_EXPOSED
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_wrapper)

    async def _preflight(self, scope, receive, send, headers, origin: str, allowed: bool) -> None:
        method = headers["access-control-request-method"].upper()
        asked = {h.strip().lower() for h in headers.get("access-control-request-headers", "").split(",")}
        asked.discard("")
        problems = []
        if not allowed:
            problems.append(f"origin {origin} is not allowed")
        if method not in CORS_METHODS:
            problems.append(f"method {method} is not allowed")
        if asked - CORS_REQUEST_HEADERS:
            problems.append(f"headers not allowed: {', '.join(sorted(asked - CORS_REQUEST_HEADERS))}")
        if problems:
            response = error_response(403, "cors_refused", "; ".join(problems), headers={"Vary": "Origin"})
        else:
            response = Response(
                status_code=204,
                headers={
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": ", ".join(CORS_METHODS),
                    "Access-Control-Allow-Headers": ", ".join(sorted(asked)) if asked else "content-type",
                    "Access-Control-Max-Age": str(self.max_age),
                    "Vary": "Origin",
                },
            )
        await response(scope, receive, send)
