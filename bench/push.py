"""What push notifications cost a send, and how fast the worker delivers them.

    .venv/bin/python bench/push.py                      # 10,000 members, 500 devices
    .venv/bin/python bench/push.py --members 2000 --devices 100 --count 40

One daphne process (`python -m server.serve`, a fresh PostgreSQL database from
DATABASE_URL, else SQLite) with Web Push configured, and a client on 127.0.0.1 sending text
messages over HTTP, one at a time, alternating between three chats in the same run:

- a direct chat whose other member has no device (one task row queued per send);
- a room of `--members` members, none with a device (the baseline for the next);
- a room of as many other members, `--devices` of them offline with a browser subscription.

For each: the client's median latency and the server's CPU per send (user + system time
from /proc, so the client's work is not counted). Then `python manage.py db_worker` starts
and one more message goes to the room: the time until every device's push reached a push
service on 127.0.0.1, and the worker's CPU for it. Only 127.0.0.1 is contacted; the run is
bounded by `--count`.
"""

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proc import cpu_seconds  # noqa: E402
from tests.push import LIVE_SETTINGS, Browser, PushService  # noqa: E402
from tests.system.live import DbWorker, LiveStack, live_database  # noqa: E402

SEND = (
    "mutation($c: ID!, $b: String!) { sendMessage(input: {chatId: $c, body: $b}) { __typename } }"
)
OPEN = "mutation($u: ID!) { openDirectChat(userId: $u) { ... on Chat { id } } }"


def setup_django(database_url: str) -> None:
    os.environ.update(DJANGO_SETTINGS_MODULE="server.settings", DATABASE_URL=database_url)
    os.environ.setdefault("SECRET_KEY", "bench-only-not-secret")
    import django

    django.setup()
    logging.getLogger("httpx").setLevel(logging.WARNING)


def seed_room(name: str, author_email: str, members: int, devices: int, service) -> str:
    """A room of `members` (the author among them), `devices` of whom have a subscription:
    written with the ORM in bulk, as registering thousands over HTTP would take minutes."""
    from django.utils import timezone

    from chat.models import Chat, Device, Membership, User

    author = User.objects.get(email=author_email)
    room = Chat.objects.create(kind=Chat.Kind.GROUP, name=name, member_count=members)
    seen = timezone.now() - timezone.timedelta(hours=1)
    users = User.objects.bulk_create(
        User(email=f"{n}@{room.id.hex}.example.com", display_name=f"Member {n}", last_seen_at=seen)
        for n in range(members - 1)
    )
    Membership.objects.bulk_create(Membership(chat=room, user=user) for user in [author, *users])
    subscriptions = [Browser(service).subscription() for _ in range(devices)]
    Device.objects.bulk_create(
        Device(
            user=user,
            kind=Device.Kind.WEB_PUSH,
            address=subscription["endpoint"],
            p256dh=subscription["keys"]["p256dh"],
            auth=subscription["keys"]["auth"],
        )
        for user, subscription in zip(users[:devices], subscriptions, strict=True)
    )
    return str(room.id)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--count", type=int, default=30, help="sends to each chat")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-push-"))
    service = PushService()
    with live_database(tmp) as database_url:
        stack = LiveStack(tmp, database_url, **LIVE_SETTINGS)
        server = stack.start()
        try:
            run(stack, server, service, database_url, args)
        finally:
            stack.stop()
            service.close()


def run(stack, server, service, database_url: str, args) -> None:
    ada, grace = server.register("Ada"), server.register("Grace")
    me = server.graphql("{ me { id email } }", token=ada)["data"]["me"]
    grace_id = server.graphql("{ me { id } }", token=grace)["data"]["me"]["id"]
    direct = server.graphql(OPEN, {"u": grace_id}, token=ada)["data"]["openDirectChat"]["id"]
    setup_django(database_url)
    quiet = seed_room("Quiet", me["email"], args.members, 0, service)
    room = seed_room("Everyone", me["email"], args.members, args.devices, service)
    client = httpx.Client(headers={"Authorization": f"Bearer {ada}"}, timeout=60)
    url = f"{server.url}/graphql/"

    def send(chat: str, n: int) -> tuple[float, float]:
        cpu = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        body = {"query": SEND, "variables": {"c": chat, "b": f"message {n}"}}
        assert client.post(url, json=body).json()["data"]["sendMessage"]["__typename"] == "Message"
        return time.perf_counter() - started, cpu_seconds(server.process.pid) - cpu

    chats = {"direct": direct, "quiet": quiet, "room": room}
    for n in range(5):  # warm up every path
        for chat in chats.values():
            send(chat, n)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in chats}
    for n in range(args.count):  # alternated, so all see the same machine
        for name, chat in chats.items():
            figures[name].append(send(chat, n))

    print(f"{args.count} sends to each chat, alternated; server CPU from /proc\n")
    print("| sendMessage to | p50 latency | server CPU per send |")
    print("|---|---|---|")
    cpu = {name: statistics.mean(c for _, c in figures[name]) * 1000 for name in chats}
    for name, label in (
        ("direct", "a direct chat, no device"),
        ("quiet", f"a room of {args.members:,}, no device (baseline)"),
        ("room", f"a room of {args.members:,}, {args.devices} offline devices"),
    ):
        latency = statistics.median(t for t, _ in figures[name]) * 1000
        print(
            f"| {label} | {latency:.1f} ms | "
            f"{cpu[name]:.1f} ms (x{cpu[name] / cpu['quiet']:.2f}) |"
        )

    # The queued notifications are the worker's: drop them, then time one fan-out alone.
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from django_tasks_db.models import DBTaskResult; DBTaskResult.objects.all().delete()",
        ],
        cwd=ROOT,
        env=stack.env,
        check=True,
    )
    worker = DbWorker(stack, interval=0.05)
    try:
        time.sleep(2)  # started and idle
        before, cpu = len(service.received), cpu_seconds(worker.process.pid)
        started = time.perf_counter()
        send(room, 0)
        service.wait_for_total(before + args.devices, timeout=300)
        elapsed = time.perf_counter() - started
        worker_cpu = cpu_seconds(worker.process.pid) - cpu
    finally:
        worker.stop()
    print(
        f"\nOne message to the room: {args.devices} pushes delivered in {elapsed:.2f} s "
        f"(worker CPU {worker_cpu:.2f} s, {worker_cpu / args.devices * 1000:.1f} ms per push)"
    )


if __name__ == "__main__":
    main()
