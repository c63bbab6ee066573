"""What a presence lease costs the process when many sockets take theirs at once, as in a
reconnect storm, against the same leases taken one at a time (each its own round trip,
as every lease was before `chat.coalesce`), in the same process and run.

    REDIS_URL=redis://127.0.0.1:6379/0 .venv/bin/python bench/leases.py
    ... bench/leases.py --sockets 5000 --rounds 5

Prints the process's CPU per lease taken and dropped, both ways, and the ratio. Talks to
Redis on REDIS_URL only, under a key prefix of its own.
"""

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


async def measure(sockets: int, rounds: int) -> None:
    from chat import presence

    leases = presence.RedisLeases(os.environ["REDIS_URL"], f"bench-leases-{os.getpid()}")
    await leases.hold("warm-up", "socket")
    pairs = [(f"user-{i // 20}", f"socket-{i}") for i in range(sockets)]

    async def together() -> tuple[float, float]:
        started = time.process_time()
        await asyncio.gather(*(leases.hold(u, c, cap=20) for u, c in pairs))
        taken = time.process_time()
        await asyncio.gather(*(leases.release(u, c) for u, c in pairs))
        return taken - started, time.process_time() - taken

    async def one_at_a_time() -> tuple[float, float]:
        started = time.process_time()
        for u, c in pairs:
            await leases.hold(u, c, cap=20)
        taken = time.process_time()
        for u, c in pairs:
            await leases.release(u, c)
        return taken - started, time.process_time() - taken

    print(f"{sockets} sockets, {rounds} rounds of each, alternated; CPU per lease (µs)\n")
    print("| round | at once: take / drop | one at a time: take / drop | ratio (take + drop) |")
    print("|---|---|---|---|")
    for round_ in range(1, rounds + 1):
        batched, alone = await together(), await one_at_a_time()
        per = [seconds / sockets * 1e6 for seconds in (*batched, *alone)]
        ratio = sum(batched) / sum(alone)
        at_once, alone_ = f"{per[0]:.0f} / {per[1]:.0f}", f"{per[2]:.0f} / {per[3]:.0f}"
        print(f"| {round_} | {at_once} | {alone_} | {ratio:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        sys.exit("Set REDIS_URL: leases are shared through Redis only.")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
    os.environ.setdefault("SECRET_KEY", "bench")
    import django

    django.setup()
    asyncio.run(measure(args.sockets, args.rounds))


if __name__ == "__main__":
    main()
