"""CPU per request of the HTTP clients this change replaced, side by side with their replacements.

    .venv/bin/python -m bench.http_clients [--requests 8000] [--concurrency 16] [--rounds 3]

A stand-in service in another process answers every request at once with a fixed 201 (so only the
client's work differs). This process sends POSTs of a portal message's size, in alternating rounds:
- the gateway's forwarding: kit.http's httpx pool transport, as the gateway forwarded before, against
  gateway.upstream (aiohttp's client), as it forwards now;
- the benchmarks' load generator: httpx's client on that pool (bench.common.client), as the throughput
  benchmarks sent their load before, against bench.loadgen, as they send it now.
It prints the CPU this process spent per request (user + system, median of the rounds) and the ratios.
"""

import argparse
import asyncio
import resource
import statistics
import subprocess
import sys
import time

import httpx
import orjson

from bench.common import client as load_client
from bench.loadgen import LoadClient
from gateway.upstream import Upstream
from kit.http import KEEPALIVE_SECONDS, PoolTransport
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
    limits = httpx.Limits(
        max_connections=200, max_keepalive_connections=200, keepalive_expiry=KEEPALIVE_SECONDS
    )
    pool = PoolTransport(limits=limits)
    timeout = httpx.Timeout(connect=2.0, read=30.0, write=30.0, pool=5.0).as_dict()
    upstream = Upstream(connect_timeout=2.0, read_timeout=30.0, max_connections=200)
    await upstream.start()
    base = f"http://127.0.0.1:{port}"
    http = load_client()
    lean = LoadClient(base)
    message = orjson.loads(body)

    async def via_httpx_pool() -> None:
        req = httpx.Request("POST", url, headers=headers, content=body, extensions={"timeout": timeout})
        resp = await pool.handle_async_request(req)
        assert resp.status_code == 201 and b"".join([c async for c in resp.aiter_raw()]) == _ANSWER
        await resp.aclose()

    async def via_aiohttp() -> None:
        resp = await upstream.send("POST", url, headers, body)
        try:
            assert resp.status == 201 and await resp.read() == _ANSWER
        finally:
            resp.release()

    async def via_httpx_client() -> None:
        resp = await http.post(url, json=message, headers={"X-API-Key": "demo-portal-key"})
        assert resp.status_code == 201 and resp.json()["tracking_code"]

    async def via_loadgen() -> None:
        resp = await lean.post("/api/v1/messages", json=message, headers={"X-API-Key": "demo-portal-key"})
        assert resp.status_code == 201 and resp.json()["tracking_code"]

    senders = {
        GATEWAY_BEFORE: via_httpx_pool,
        GATEWAY_NOW: via_aiohttp,
        LOAD_BEFORE: via_httpx_client,
        LOAD_NOW: via_loadgen,
    }
    out: dict[str, list[float]] = {name: [] for name in senders}
    try:
        for send in senders.values():  # warm every pool
            await _round(send, concurrency * 20, concurrency)
        for _ in range(rounds):
            for name, send in senders.items():
                out[name].append(await _round(send, requests, concurrency))
    finally:
        await pool.aclose()
        await upstream.close()
        await http.aclose()
        await lean.aclose()
    return out


GATEWAY_BEFORE, GATEWAY_NOW = "gateway: httpx pool (before)", "gateway: aiohttp (now)"
LOAD_BEFORE, LOAD_NOW = "load: httpx client (before)", "load: bench.loadgen (now)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8000, help="requests per round and client")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", f"from bench.http_clients import serve; serve({port})"],
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
        f"CPU per request ({args.rounds} alternating rounds of {args.requests}, "
        f"{args.concurrency} at a time; {time.perf_counter() - t0:.0f} s):"
    )
    medians = {name: statistics.median(xs) * 1e6 for name, xs in figures.items()}
    for name, xs in figures.items():
        print(f"  {name:<30} {medians[name]:7.0f} µs   rounds: " + ", ".join(f"{x * 1e6:.0f}" for x in xs))
    print(f"  gateway, now / before: {medians[GATEWAY_NOW] / medians[GATEWAY_BEFORE]:.2f}")
    print(f"  load generator, now / before: {medians[LOAD_NOW] / medians[LOAD_BEFORE]:.2f}")


if __name__ == "__main__":
    main()
