"""uvicorn's httptools protocol, writing a response's head and body in one send.

uvicorn writes the status line and headers as soon as the app sends `http.response.start`, and the
body in a second write. Each write is a system call, and on loopback each can wake the reader (the
gateway, a client) once for the head and once more for the body. Here the writes of one event-loop
step are joined and sent at the end of that step: an ordinary response goes out in one send, and a
streamed one still leaves chunk by chunk (each `await` of the stream ends a step).

    uvicorn … --loop uvloop --http kit.httpserver:HttpToolsProtocol   (kit.http.HTTP_PROTOCOL)
"""

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _HttpToolsProtocol


class JoiningTransport:
    """A transport that holds the writes of one loop step and sends them together."""

    __slots__ = ("_loop", "_pending", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop):
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def writelines(self, chunks) -> None:
        # Through write, or it would overtake what this step holds.
        self.write(b"".join(chunks))

    def flush(self) -> None:
        """Send what this step wrote."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, set_protocol … (uvicorn writes
        # with write alone, and never half-closes)
        return getattr(self._transport, name)


class HttpToolsProtocol(_HttpToolsProtocol):
    """uvicorn's httptools protocol over a `JoiningTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # Flow control keeps watching the real transport; only the writes are joined.
        self.transport = JoiningTransport(transport, self.loop)
