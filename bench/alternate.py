"""One read over HTTP against two checkouts of the project, alternated, on one database.

    .venv/bin/python bench/alternate.py BEFORE_DIR AFTER_DIR [history|chats|floor]

Starts one daphne process from each checkout (`git worktree add /tmp/before REV` makes the
"before"), both on bench/history.py's database (run that once to fill it), and POSTs the
operation to each in turn (through `bench.keepalive`, as bench/history.py times them), in
blocks of `BLOCK` requests (default 100) for `ROUNDS` rounds (default 12), swapping which
goes first each round. Prints each server's CPU per request (user + system from /proc) and
latency, and the after/before ratio of each round: this machine's speed drifts by a
quarter within minutes, and a ratio taken block by block, in the same minutes, is what
stays meaningful.
"""

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import history  # noqa: E402  (sets the bench database and settings)

os.environ.pop("REDIS_URL", None)


def main() -> None:
    before, after = (Path(arg).resolve() for arg in sys.argv[1:3])
    operation = sys.argv[3] if len(sys.argv) > 3 else "history"
    rounds, block = int(os.environ.get("ROUNDS", "12")), int(os.environ.get("BLOCK", "100"))
    import django

    django.setup()
    from bench.keepalive import KeepAliveClient, Reply
    from bench.proc import cpu_seconds
    from chat import auth
    from chat.models import User
    from tests.system import live

    ids = {n: uuid.uuid5(uuid.NAMESPACE_DNS, f"bench-{n}") for n in ("reader", "busy", "big")}
    query, user, variables = {
        "history": (history.HISTORY, "reader", {"chatId": str(ids["big"])}),
        "chats": (history.CHATS, "busy", {}),
        "floor": ("query { __typename }", "reader", {}),
    }[operation]
    token = auth.issue_token(user=User.objects.get(pk=ids[user]))[0]
    env = {**os.environ, "DEBUG": "false"}
    servers = {}
    try:
        for name, root in (("before", before), ("after", after)):
            live.ROOT = root  # the process serves the code of its own checkout
            servers[name] = live.LiveServer(env, Path(tempfile.mkdtemp()) / "daphne.log")
        headers = {"Authorization": f"Bearer {token}"}
        clients = {server: KeepAliveClient(server.url, headers) for server in servers.values()}

        def post(server: live.LiveServer) -> Reply:
            return clients[server].post("/graphql/", json={"query": query, "variables": variables})

        for server in servers.values():
            for _ in range(history.WARMUP * 3):
                history.check_reply(post(server))
        history.quiet_client_heap()
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        latency: dict[str, list[float]] = {name: [] for name in servers}
        for turn in range(rounds):
            order = list(servers) if turn % 2 == 0 else list(reversed(servers))
            for name in order:
                server = servers[name]
                used = cpu_seconds(server.process.pid)
                for _ in range(block):
                    started = time.perf_counter()
                    reply = post(server)
                    latency[name].append((time.perf_counter() - started) * 1000)
                    history.check_reply(reply)  # the bench's work, not the server's time
                cpu[name].append((cpu_seconds(server.process.pid) - used) / block * 1000)
        for name in servers:
            times = sorted(latency[name])
            print(
                f"{operation:<8} {name:<7} server CPU {statistics.median(cpu[name]):6.2f} ms"
                f"   median {times[len(times) // 2]:6.2f} ms"
                f"   p99 {times[int(len(times) * 0.99) - 1]:6.2f} ms"
            )
        ratios = [a / b for a, b in zip(cpu["after"], cpu["before"], strict=True)]
        print(
            f"{operation:<8} after/before CPU by round: "
            + " ".join(f"{ratio:.2f}" for ratio in ratios)
            + f"   median {statistics.median(ratios):.3f}"
        )
    finally:
        for server in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
