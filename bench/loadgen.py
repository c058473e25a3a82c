"""A lean HTTP/1.1 load generator: keep-alive connections over asyncio streams, requests written as
bytes, responses read by their Content-Length (or chunks).

The benchmarks run on the machine they measure, so every millisecond the load generator spends is taken
from the platform. httpx, even on the services' pool, takes ≈ 1.5 ms of CPU per POST here (building the
request, its headers, cookies and hooks, then the response object); this client takes about a tenth,
as tools like wrk do. It speaks only what the benchmarks send: POSTs and GETs with a JSON body or none.
"""

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


class LoadError(Exception):
    """A call that got no complete answer (connection refused, closed or cut off)."""


@dataclass
class Answer:
    """A response: its status and body."""

    status_code: int
    content: bytes

    def json(self):
        return orjson.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class LoadClient:
    """Pooled keep-alive connections to one origin (at most one request on a connection at a time)."""

    def __init__(self, base_url: str, *, headers: dict[str, str] | None = None, timeout: float = 30.0):
        url = urlsplit(base_url)
        if url.scheme != "http":
            raise ValueError("the load generator speaks plain http only")
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout = timeout
        fixed = {"host": f"{self.host}:{self.port}", **{k.lower(): v for k, v in (headers or {}).items()}}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def __aenter__(self) -> "LoadClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the idle connections."""
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()

    async def post(self, path: str, *, json=None, headers: dict[str, str] | None = None) -> Answer:
        """POST a JSON body."""
        return await self.request("POST", path, body=orjson.dumps(json), headers=headers)

    async def get(self, path: str, *, headers: dict[str, str] | None = None) -> Answer:
        """GET a resource."""
        return await self.request("GET", path, headers=headers)

    async def request(
        self, method: str, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Answer:
        """One request and its complete answer; a reused connection the server closed is retried once
        on a new one (as any keep-alive client does)."""
        head = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), self._fixed]
        if headers:
            head.append("".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1"))
        if body is not None:
            head.append(b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body))
        head.append(b"\r\n")
        if body:
            head.append(body)
        data = b"".join(head)
        for attempt in (0, 1):
            reused = bool(self._idle)
            reader, writer = self._idle.pop() if reused else await self._connect()
            try:
                writer.write(data)
                answer, keep = await asyncio.wait_for(_read_answer(reader), self.timeout)
            except TimeoutError as exc:  # before OSError, of which it is a kind: never sent twice
                writer.close()
                raise LoadError(f"{method} {path}: no answer in {self.timeout} s") from exc
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                writer.close()
                if reused and attempt == 0:
                    continue
                raise LoadError(f"{method} {path}: {exc!r}") from exc
            if keep:
                self._idle.append((reader, writer))
            else:
                writer.close()
            return answer
        raise AssertionError("unreachable")

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), self.timeout)
        except (OSError, TimeoutError) as exc:
            raise LoadError(f"cannot connect to {self.host}:{self.port}: {exc!r}") from exc


async def _read_answer(reader: asyncio.StreamReader) -> tuple[Answer, bool]:
    """Status line, headers and body of one response; whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, chunked, keep = None, False, True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep = b"close" not in value.lower()
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        content = b"".join(parts)
    elif length is not None:
        content = await reader.readexactly(length)
    else:  # no length: the body runs to the end of the connection
        content, keep = await reader.read(), False
    return Answer(status, content), keep
