"""The gateway's pool of connections to the services, for forwarding public requests.

aiohttp's client, whose parser and connection handling are compiled: forwarding a request costs the
gateway ≈ 0.08 ms of CPU on it, where httpx's pool took ≈ 0.56 ms (bench.http_clients). The gateway
keeps kit's httpx client for its own calls (the services' OpenAPI documents, readiness).
"""

import aiohttp
from yarl import URL

from kit.http import KEEPALIVE_SECONDS

# Only what the caller sent goes upstream: aiohttp adds none of its own defaults for these.
_NO_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})


class Upstream:
    """Keep-alive connections to the services, with the gateway's connect and read timeouts."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, max_connections: int):
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=connect_timeout + 5.0, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the pool (inside the running event loop)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=KEEPALIVE_SECONDS),
            timeout=self.timeout,
            auto_decompress=False,  # a proxy passes bodies on as they are encoded
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NO_AUTO_HEADERS,
        )

    async def close(self) -> None:
        """Close every connection."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, method: str, url: str, headers: list[tuple[str, str]], body: bytes
    ) -> aiohttp.ClientResponse:
        """Send a request (the URL exactly as encoded) and return once the answer's head is in."""
        if self._session is None:
            raise RuntimeError("the upstream pool is not started")
        return await self._session.request(
            method,
            URL(url, encoded=True),
            headers=headers,
            data=body or None,
            allow_redirects=False,
        )
