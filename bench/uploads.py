"""What a photo costs the server, against a text message in the same run.

    .venv/bin/python bench/uploads.py                 # 10 of each
    .venv/bin/python bench/uploads.py --count 20

One daphne process (`python -m server.serve`, a fresh PostgreSQL database from
DATABASE_URL, else SQLite) and a client on 127.0.0.1 sending, one at a time over HTTP, text
messages (the baseline), then a 12-megapixel phone photo (JPEG, 4032 x 3024, EXIF GPS), a
1-megapixel photo, and a 5 MB PDF, as multipart requests. For each: the client's latency
(median), the server's CPU per request (user + system time from /proc, so the client's own
work is not counted), and the process's peak resident memory (VmHWM) after each phase. Only
127.0.0.1 is contacted, and the run is bounded by `--count`.
"""

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds  # noqa: E402
from tests.media_files import GPS, GPS_IFD, ORIENTATION  # noqa: E402
from tests.system.live import LiveStack, live_database  # noqa: E402

SEND = (
    "mutation($c: ID!, $b: String!) { sendMessage(input: {chatId: $c, body: $b}) { __typename } }"
)
SEND_ATTACHMENT = """mutation($input: SendAttachmentInput!) {
  sendAttachment(input: $input) { __typename ... on Message { kind attachment { size } } }
}"""
OPEN = "mutation($u: ID!) { openDirectChat(userId: $u) { ... on Chat { id } } }"
MB = 1024 * 1024


def phone_photo(width: int, height: int) -> bytes:
    """A JPEG the size a phone writes, with smooth detail (it compresses like a photo),
    its GPS position and an orientation tag."""
    noise = Image.merge("RGB", [Image.effect_noise((width // 8, height // 8), 60)] * 3)
    image = noise.resize((width, height), Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[GPS_IFD] = GPS
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif)
    return buffer.getvalue()


def peak_rss(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure(server, send, count: int) -> dict:
    latencies = []
    cpu_before = cpu_seconds(server.process.pid)
    for n in range(count):
        started = time.perf_counter()
        send(n)
        latencies.append(time.perf_counter() - started)
    cpu = (cpu_seconds(server.process.pid) - cpu_before) / count
    return {
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "cpu_ms": round(cpu * 1000, 1),
        "peak_rss_mb": round(peak_rss(server.process.pid) / MB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-uploads-"))
    with live_database(tmp) as database_url:
        stack = LiveStack(
            tmp,
            database_url,
            SEND_RATE_BURST="100000",
            UPLOAD_RATE_BURST="100000",
            REGISTER_RATE_LIMIT_PER_ADDRESS="100000",
        )
        server = stack.start()
        try:
            run(server, args.count)
        finally:
            stack.stop()


def run(server, count: int) -> None:
    ada, grace = server.register("Ada"), server.register("Grace")
    grace_id = server.graphql("{ me { id } }", token=grace)["data"]["me"]["id"]
    chat = server.graphql(OPEN, {"u": grace_id}, token=ada)["data"]["openDirectChat"]["id"]
    client = httpx.Client(headers={"Authorization": f"Bearer {ada}"}, timeout=60)
    url = f"{server.url}/graphql/"

    def text(n: int) -> None:
        body = {"query": SEND, "variables": {"c": chat, "b": f"message {n}"}}
        assert client.post(url, json=body).json()["data"]["sendMessage"]["__typename"]

    def upload(name: str, data: bytes, kind: str):
        def send(n: int) -> None:
            variables = {"input": {"chatId": chat, "file": None}}
            response = client.post(
                url,
                data={
                    "operations": json.dumps({"query": SEND_ATTACHMENT, "variables": variables}),
                    "map": json.dumps({"0": ["variables.input.file"]}),
                },
                files={"0": (name, data, "application/octet-stream")},
            )
            assert response.json()["data"]["sendAttachment"]["kind"] == kind, response.text

        return send

    big, small = phone_photo(4032, 3024), phone_photo(1280, 960)
    document = b"%PDF-1.4\n" + bytes(5 * MB)
    phases = [
        ("sendMessage, text (baseline)", 0, text),
        ("sendAttachment, 12 MP JPEG", len(big), upload("IMG_0001.jpg", big, "IMAGE")),
        ("sendAttachment, 1.2 MP JPEG", len(small), upload("IMG_0002.jpg", small, "IMAGE")),
        ("sendAttachment, 5 MB PDF", len(document), upload("report.pdf", document, "FILE")),
    ]
    measure(server, text, 3)  # warm up
    print(f"{count} of each, one at a time; server CPU per request from /proc\n")
    print("| request | upload | p50 latency | server CPU per request | peak RSS after |")
    print("|---|---|---|---|---|")
    baseline = None
    for name, size, send in phases:
        figures = measure(server, send, count)
        baseline = baseline or figures["cpu_ms"]
        ratio = figures["cpu_ms"] / baseline if baseline else 0
        print(
            f"| {name} | {size / MB:.1f} MB | {figures['p50_ms']} ms | "
            f"{figures['cpu_ms']} ms (x{ratio:.0f}) | {figures['peak_rss_mb']} MB |"
        )


if __name__ == "__main__":
    main()
