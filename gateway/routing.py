"""The gateway's route table, built from each service's OpenAPI document.

A service declares its public routes and who may call each (`x-access`) next to the handler; the
gateway reads the documents, routes only what they declare, and enforces `x-access` before a request
leaves the gateway. Paths under /internal are never routed. When a service's document cannot be
read (the service is down), paths under the prefixes it owns answer 502 instead of 404.
"""

import asyncio
import contextlib
import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx

log = logging.getLogger("minsheng.gateway.routing")

# Fixed public-contract prefixes (DESIGN §3) and the service that owns each.
OWNED_PREFIXES: dict[str, str] = {
    "/api/v1/messages": "intake",
    "/api/v1/public": "intake",
    "/open311": "intake",
    "/api/v1/incidents": "grading",
    "/api/v1/assignments": "grading",
    "/api/v1/supervision": "grading",
    "/api/v1/stats": "grading",
    "/api/v1/grading": "grading",
    "/api/v1/notifications": "notify",
    "/api/v1/archive": "archive",
}
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One routable operation."""

    service: str
    template: str
    method: str
    access: tuple[str, ...]


@dataclass
class _PathEntry:
    service: str
    template: str
    pattern: re.Pattern
    literal_segments: int
    operations: dict[str, Operation]


@dataclass
class Match:
    """The outcome of looking a request up."""

    operation: Operation | None = None
    allowed_methods: tuple[str, ...] = ()
    owner_down: str | None = None


def _compile(template: str) -> tuple[re.Pattern, int]:
    parts = template.strip("/").split("/")
    regex, literal = [], 0
    for p in parts:
        if p.startswith("{") and p.endswith("}"):
            name = p[1:-1]
            regex.append(r"[^/]+" if ":path" not in name else r".+")
        else:
            regex.append(re.escape(p))
            literal += 1
    return re.compile("^/" + "/".join(regex) + "/?$"), literal


def is_public_path(path: str) -> bool:
    """Paths the gateway may forward at all."""
    return not (path.startswith("/internal") or path in ("/livez", "/readyz", "/metrics", "/openapi.json"))


class RouteTable:
    """Operations of every service, refreshed from their OpenAPI documents."""

    def __init__(self, *, services: dict[str, str], http: httpx.AsyncClient, refresh_seconds: float):
        self.services = services
        self.http = http
        self.refresh_seconds = refresh_seconds
        self.specs: dict[str, dict[str, Any]] = {}
        self._entries: list[_PathEntry] = []
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self.attempted = False  # a full round of fetching has run (readiness waits for it)

    async def refresh(self, only_missing: bool = False) -> None:
        """Fetch the services' documents and rebuild the table (keeps the last good one on failure)."""
        async with self._lock:
            names = [n for n in self.services if not (only_missing and n in self.specs)]
            results = await asyncio.gather(*(self._fetch(n) for n in names))
            changed = False
            for name, spec in zip(names, results, strict=True):
                if spec is not None and spec != self.specs.get(name):
                    self.specs[name] = spec
                    changed = True
            if changed or not self._entries:
                self._rebuild()
            if not only_missing:
                self.attempted = True

    async def _fetch(self, name: str) -> dict[str, Any] | None:
        try:
            resp = await self.http.get(f"{self.services[name]}/openapi.json", timeout=3.0)
            resp.raise_for_status()
            return resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot read the OpenAPI document of %s: %s", name, exc)
            return None

    def _rebuild(self) -> None:
        entries = []
        for name, spec in self.specs.items():
            for template, item in spec.get("paths", {}).items():
                if not is_public_path(template):
                    continue
                ops = {}
                for method in HTTP_METHODS:
                    op = item.get(method)
                    if op is None:
                        continue
                    access = tuple(op.get("x-access", ()))
                    if not access:
                        continue  # undeclared access: never exposed
                    ops[method.upper()] = Operation(name, template, method.upper(), access)
                if ops:
                    pattern, literal = _compile(template)
                    entries.append(_PathEntry(name, template, pattern, literal, ops))
        # Literal segments win over parameters: /messages/batch before /messages/{id}.
        entries.sort(key=lambda e: (-e.literal_segments, -len(e.template)))
        self._entries = entries

    def match(self, method: str, path: str) -> Match:
        """The operation for a request, the methods allowed on the path, or the owner that is down."""
        allowed: list[str] = []
        for e in self._entries:
            if e.pattern.match(path):
                op = e.operations.get(method.upper())
                if op is not None:
                    return Match(operation=op)
                allowed.extend(e.operations)
        if allowed:
            return Match(allowed_methods=tuple(sorted(set(allowed))))
        for prefix, owner in OWNED_PREFIXES.items():
            if (path == prefix or path.startswith(prefix + "/")) and owner not in self.specs:
                return Match(owner_down=owner)
        return Match()

    def start(self) -> None:
        """Refresh in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="route-refresh")

    async def stop(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.refresh()
            except Exception:
                log.exception("route refresh failed")
            # Poll fast until every service has answered once, then settle to the configured pace.
            delay = self.refresh_seconds if len(self.specs) == len(self.services) else min(delay * 2, 5.0)
            await asyncio.sleep(delay)
