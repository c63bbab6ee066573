"""A minimal HTTP/1.1 client on one kept-alive socket, for timing a server.

httpx's own work per request (building it, reading and parsing the response) added 0.2-0.5
ms to the median of a history page timed through it, on top of the server's 2.1-2.3 ms of
CPU (bench/RESULTS.md, issue 14, session 24): the client's time, not the server's. This
client sends what httpx sends, the same headers and the head and body in two writes, so
the server does the same work, and reads the reply by its Content-Length. It is not a
general client: no redirects, no chunked replies, 127.0.0.1.
"""

import socket
from dataclasses import dataclass
from json import dumps, loads
from typing import Any
from urllib.parse import urlsplit

# What httpx 0.28 sends besides the host, the body's headers and the caller's own.
HTTPX_HEADERS = {
    "Accept": "*/*",
    "Accept-Encoding": "gzip, deflate",
    "Connection": "keep-alive",
    "User-Agent": "python-httpx/0.28.1",
}


@dataclass
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return loads(self.content)


class KeepAliveClient:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float = 30) -> None:
        address = urlsplit(base_url)
        self.host = address.netloc
        self.headers = {**HTTPX_HEADERS, **headers}
        self.sock = socket.create_connection((address.hostname, address.port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = bytearray()

    def post(self, path: str, *, json: Any) -> Reply:
        """POST `json` to `path`, as `httpx.Client.post(path, json=...)` does."""
        body = dumps(json).encode()
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in self.headers.items()]
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}", "", ""]
        self.sock.sendall("\r\n".join(lines).encode())
        self.sock.sendall(body)
        return self._reply()

    def _reply(self) -> Reply:
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._read()
        status_line, *header_lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        fields = dict(line.split(":", 1) for line in header_lines)
        headers = {name.strip().lower(): value.strip() for name, value in fields.items()}
        if "content-length" not in headers:
            raise ValueError(f"A reply without Content-Length: {status_line}")
        start, length = end + 4, int(headers["content-length"])
        while len(self.buffer) < start + length:
            self._read()
        content = bytes(self.buffer[start : start + length])
        del self.buffer[: start + length]
        return Reply(int(status_line.split()[1]), content)

    def _read(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("The server closed the connection.")
        self.buffer += chunk

    def close(self) -> None:
        self.sock.close()
