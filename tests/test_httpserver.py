"""kit.httpserver: a response's head and body leave in one send; streams still leave chunk by chunk."""

import asyncio
import socket
import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from kit.httpserver import JoiningTransport
from tests.support import ServerThread


class _Recorder:
    """A transport that records what is written to it."""

    def __init__(self):
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def test_the_writes_of_one_loop_step_leave_together_and_the_next_steps_on_their_own():
    async def run() -> tuple[list[bytes], list[bytes], list[bytes]]:
        raw = _Recorder()
        t = JoiningTransport(raw, asyncio.get_running_loop())
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        t.writelines([b"o", b"k"])
        held = list(raw.writes)  # nothing sent before the step ends
        await asyncio.sleep(0)
        first = list(raw.writes)
        t.write(b"next")
        await asyncio.sleep(0)
        return held, first, raw.writes

    held, first, after = asyncio.run(run())
    assert held == []
    assert first == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    assert after == [first[0], b"next"]


def test_closing_sends_what_is_held_first_and_nothing_goes_to_a_closed_transport():
    async def run() -> tuple[list[bytes], bool, list[bytes]]:
        raw = _Recorder()
        t = JoiningTransport(raw, asyncio.get_running_loop())
        t.write(b"last words")
        t.close()
        sent, closed = list(raw.writes), raw.closed
        t.write(b"too late")  # e.g. a handler still answering after the peer went away
        await asyncio.sleep(0)
        return sent, closed, raw.writes

    sent, closed, after = asyncio.run(run())
    assert sent == [b"last words"] and closed
    assert after == [b"last words"]
    # Everything else is the real transport's.
    loop = asyncio.new_event_loop()
    try:
        assert JoiningTransport(_Recorder(), loop).get_extra_info("peername") == ("127.0.0.1", 1)
    finally:
        loop.close()


def _reads(port: int, path: str) -> list[bytes]:
    """What a raw client reads, recv by recv, until the server closes (one request, Connection: close)."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
            time.sleep(0.05)  # whatever the server sends apart arrives apart
        return chunks


async def _json(request):
    return JSONResponse({"ok": True})


async def _stream(request):
    async def parts():
        for i in range(3):
            yield f"part {i}\n".encode()
            await asyncio.sleep(0.2)

    return StreamingResponse(parts(), media_type="text/plain")


def test_a_served_response_arrives_in_one_piece_and_a_stream_part_by_part():
    app = Starlette(routes=[Route("/json", _json), Route("/stream", _stream)])
    with ServerThread(app) as server:
        whole = _reads(server.port, "/json")
        assert len(whole) == 1, whole
        assert whole[0].startswith(b"HTTP/1.1 200 OK\r\n") and whole[0].endswith(b'{"ok":true}')
        parts = _reads(server.port, "/stream")
        body = b"".join(parts)
        assert b"part 0\n" in body and b"part 2\n" in body
        # The parts were not held back until the end: they came in separate reads, the first with the head.
        assert len(parts) >= 3, parts
        assert b"part 0" in parts[0] and b"part 2" not in parts[0]
