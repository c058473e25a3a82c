"""The gateway's cost of forwarding one request: CPU per request of its upstream client, side by side.

    .venv/bin/python -m bench.gateway_upstream [--requests 8000] [--concurrency 16]

A stand-in service in another process answers every request at once with a fixed 201 (so only the
client's work differs); this process forwards POSTs of a portal message's size through
- kit.http's httpx pool transport, the way the gateway forwarded until this change, and
- gateway.upstream (aiohttp's client), the way it forwards now,
alternating rounds, and prints the CPU this process spent per request (user + system) and the ratio.
"""

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time

import httpx

from gateway.upstream import Upstream
from kit.http import make_http_client
from tests.support import free_port

_ANSWER = b'{"message_id":"6f1c0c9e-5d6a-4a57-9c8e-0c6f3f4b9a10","tracking_code":"MS-4K7Q-9XH2-PD3M"}'
_RESPONSE = b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(_ANSWER),
    _ANSWER,
)


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """The stand-in service: every request on a connection gets the same 201 at once."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            writer.write(_RESPONSE)
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def serve(port: int) -> None:
    """Run the stand-in service (in its own process)."""
    import uvloop

    async def run() -> None:
        server = await asyncio.start_server(_answer, "127.0.0.1", port)
        print("ready", flush=True)
        await server.serve_forever()

    uvloop.run(run())


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _round(send, requests: int, concurrency: int) -> float:
    """CPU seconds per request over `requests` sent by `concurrency` workers."""

    async def worker() -> None:
        for _ in range(requests // concurrency):
            await send()

    c0 = _cpu()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (_cpu() - c0) / (requests // concurrency * concurrency)


async def measure(port: int, requests: int, concurrency: int, rounds: int) -> dict[str, list[float]]:
    url = f"http://127.0.0.1:{port}/api/v1/messages"
    body = (
        '{"channel":"portal","title":"小区停水","content":"' + "小区停水三天无人处理。" * 40 + '"}'
    ).encode()
    headers = [
        ("content-type", "application/json"),
        ("x-request-id", "bench"),
        ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("x-minsheng-principal", "x" * 300),
    ]
    client = make_http_client(max_connections=200)
    upstream = Upstream(connect_timeout=2.0, read_timeout=30.0, max_connections=200)
    await upstream.start()

    async def via_httpx() -> None:
        req = httpx.Request(
            "POST", url, headers=headers, content=body, extensions={"timeout": client.timeout.as_dict()}
        )
        resp = await client.pool_transport.handle_async_request(req)
        b"".join([chunk async for chunk in resp.aiter_raw()])
        await resp.aclose()
        assert resp.status_code == 201

    async def via_aiohttp() -> None:
        resp = await upstream.send("POST", url, headers, body)
        try:
            assert resp.status == 201 and await resp.read() == _ANSWER
        finally:
            resp.release()

    out: dict[str, list[float]] = {"httpx pool (before)": [], "aiohttp (gateway.upstream)": []}
    try:
        for send in (via_httpx, via_aiohttp):  # warm both pools
            await _round(send, concurrency * 20, concurrency)
        for _ in range(rounds):
            out["httpx pool (before)"].append(await _round(via_httpx, requests, concurrency))
            out["aiohttp (gateway.upstream)"].append(await _round(via_aiohttp, requests, concurrency))
    finally:
        await client.aclose()
        await upstream.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8000, help="requests per round and client")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", f"from bench.gateway_upstream import serve; serve({port})"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        import uvloop

        t0 = time.perf_counter()
        figures = uvloop.run(measure(port, args.requests, args.concurrency, args.rounds))
    finally:
        server.terminate()
        server.wait()
    print(
        f"CPU per forwarded request ({args.rounds} alternating rounds of {args.requests}, "
        f"{args.concurrency} at a time; {time.perf_counter() - t0:.0f} s):"
    )
    medians = {name: statistics.median(xs) * 1e6 for name, xs in figures.items()}
    for name, xs in figures.items():
        print(f"  {name:<28} {medians[name]:7.0f} µs   rounds: " + ", ".join(f"{x * 1e6:.0f}" for x in xs))
    before, after = medians.values()
    print(f"  aiohttp / httpx: {after / before:.2f}")


if __name__ == "__main__":
    main()
