"""A deliberately cheap webhook receiver for the benchmark: raw asyncio HTTP/1.1, keep-alive, 200.

Not uvicorn/starlette on purpose: the benchmark measures the executor, and a full ASGI stack
answering thousands of webhooks per second would eat a good part of the 2 CPUs being measured.
It parses just enough HTTP/1.1 (request line, ``Content-Length``, ``Connection: close``,
pipelining) to answer every request with ``200 {}``; ``GET /_stats`` answers the request counts
per path as JSON. Listens on 127.0.0.1 only.

Usage: python bench/webhook_server.py --port 28109
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections import Counter

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024

counts: Counter[str] = Counter()


class HttpProtocol(asyncio.Protocol):
    """One connection: answer each complete request in order, keep the connection open."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        for _ in range(10_000):  # bounded: at most this many pipelined requests per read
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._fail(b"431 Request Header Fields Too Large")
                return
            head = bytes(self.buffer[:end]).split(b"\r\n")
            length, close = 0, False
            for line in head[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        self._fail(b"400 Bad Request")
                        return
                elif name == b"transfer-encoding":
                    self._fail(b"411 Length Required")  # httpx sends Content-Length for bytes bodies
                    return
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            if length > MAX_BODY:
                self._fail(b"413 Content Too Large")
                return
            total = end + 4 + length
            if len(self.buffer) < total:
                return
            del self.buffer[:total]
            parts = head[0].split(b" ")
            method = parts[0].decode("latin-1") if parts else ""
            path = parts[1].decode("latin-1").split("?", 1)[0] if len(parts) > 1 else "/"
            if method == "GET" and path == "/_stats":
                body = json.dumps({"total": sum(counts.values()), "by_path": dict(counts)}).encode()
            else:
                counts[path] += 1
                body = b"{}"
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n%s"
                % (len(body), b"connection: close\r\n" if close else b"", body)
            )
            if close:
                self.transport.close()
                return

    def _fail(self, status: bytes) -> None:
        assert self.transport is not None
        self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        self.transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(HttpProtocol, "127.0.0.1", port, backlog=1024, reuse_address=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
