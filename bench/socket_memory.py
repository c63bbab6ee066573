"""Where an idle subscribed socket's memory goes, by the line that allocated it.

    .venv/bin/python bench/socket_memory.py                  # 1,000 sockets, SQLite
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/socket_memory.py --sockets 2000

One daphne process (`python -m server.serve`) runs with tracemalloc on, and a
`sitecustomize` of this bench's own makes it write a snapshot on SIGUSR1. The bench opens
`--sockets` sockets following one room with `chatEvents` (bench/reconnect.py's clients),
snapshots before and after, and prints the Python memory per socket grouped by where it
was allocated, largest first, beside the RSS growth per socket. Python's allocations are
what tracemalloc sees; the difference to RSS is the allocator's own slack and C libraries
that allocate outside Python (OpenSSL, the kernel's socket buffers are not in RSS).
Only 127.0.0.1 is contacted; tracemalloc slows the server, so no timing is printed.
"""

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import rss_bytes  # noqa: E402
from bench.reconnect import Socket, crowd_stack, seed  # noqa: E402
from tests.system.live import live_database  # noqa: E402

SITECUSTOMIZE = """
import os, signal, tracemalloc

def _snapshot(signum, frame, count=[0]):
    import gc
    gc.collect()
    count[0] += 1
    path = os.path.join(os.environ["MEMSNAP_DIR"], f"snap-{count[0]}")
    tracemalloc.take_snapshot().dump(path + ".tmp")
    os.replace(path + ".tmp", path)

signal.signal(signal.SIGUSR1, _snapshot)
"""


async def snapshot(pid: int, directory: Path, n: int) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR1)
    path = directory / f"snap-{n}"
    deadline = time.monotonic() + 120
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the server wrote no snapshot")
        await asyncio.sleep(0.2)
    return tracemalloc.Snapshot.load(str(path))


async def measure(
    server, tokens: list[str], room: str, directory: Path, depth: int, rows: int
) -> None:
    pid = server.process.pid
    warm = [Socket(server.ws_url, token, room) for token in tokens[:20]]
    for socket in warm:  # the first sockets import and compile what every socket uses
        socket.start()
        await socket.acked.wait()
    await asyncio.sleep(2)
    before, rss_before = await snapshot(pid, directory, 1), rss_bytes(pid)
    sockets = [Socket(server.ws_url, token, room) for token in tokens[20:]]
    gate = asyncio.Semaphore(20)

    async def paced(socket: Socket) -> None:
        async with gate:
            socket.start()
            await socket.acked.wait()

    await asyncio.gather(*(paced(s) for s in sockets))
    await asyncio.sleep(5)  # presence flushed, every subscription in its group
    after, rss_after = await snapshot(pid, directory, 2), rss_bytes(pid)
    n = len(sockets)
    stats = after.compare_to(before, "traceback")
    python = sum(stat.size_diff for stat in stats)
    print(f"\n{n} idle subscribed sockets on one daphne process")
    print(f"RSS growth per socket: {(rss_after - rss_before) / n / 1024:.1f} KB")
    print(f"Python allocations per socket (tracemalloc): {python / n / 1024:.1f} KB\n")
    owners: dict[str, int] = {}
    for stat in stats:
        owner = _owner(stat.traceback)
        owners[owner] = owners.get(owner, 0) + stat.size_diff
    print("| whose | KB per socket |")
    print("|---|---|")
    for owner, size in sorted(owners.items(), key=lambda item: -item[1]):
        print(f"| {owner} | {size / n / 1024:.1f} |")
    print()
    print("| bytes per socket | blocks per socket | allocated at |")
    print("|---|---|---|")
    for stat in stats[:rows]:
        frames = " <- ".join(
            f"{_short(frame.filename)}:{frame.lineno}" for frame in reversed(stat.traceback[-3:])
        )
        print(f"| {stat.size_diff / n:.0f} | {stat.count_diff / n:.1f} | {frames} |")
    for socket in warm + sockets:
        await socket.stop()


OWNERS = (
    ("schema/", "this project (schema)"),
    ("chat/", "this project (chat)"),
    ("server/", "this project (server)"),
    ("strawberry/", "strawberry"),
    ("graphql/", "graphql-core"),
    ("channels_redis/", "channels-redis"),
    ("channels/", "channels"),
    ("daphne/", "daphne"),
    ("autobahn/", "autobahn"),
    ("txaio/", "autobahn"),
    ("twisted/", "twisted"),
    ("django/", "django"),
)


def _owner(traceback: tracemalloc.Traceback) -> str:
    """The first package of ours or a library's on the allocation's stack (innermost
    first), so asyncio's queues count for whoever made them."""
    for frame in reversed(traceback):  # tracemalloc lists the oldest frame first
        name = _short(frame.filename)
        for prefix, owner in OWNERS:
            if name.startswith(prefix):
                return owner
    return "other (asyncio, json, the standard library)"


def _short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3.11/", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--depth", type=int, default=6, help="frames kept per allocation")
    parser.add_argument("--rows", type=int, default=25, help="allocation sites printed")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp / "snaps").mkdir()
    with live_database(tmp) as database_url:
        stack = crowd_stack(tmp, database_url)
        room, tokens, _ = seed(database_url, args.sockets + 20)
        server = stack.start(
            # Importing the project under tracemalloc alone took 29 s on this machine.
            startup_timeout=180,
            PYTHONPATH=str(tmp / "site"),
            PYTHONTRACEMALLOC=str(args.depth),
            MEMSNAP_DIR=str(tmp / "snaps"),
        )
        try:
            asyncio.run(measure(server, tokens, room, tmp / "snaps", args.depth, args.rows))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
