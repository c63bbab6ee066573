"""Presence leases taken and dropped by many sockets at once: on Redis they share script
calls (`chat.coalesce`), and each answers exactly as it would alone, in the order asked."""

import asyncio
import os
import uuid

import pytest

from chat import presence

USERS_CAP = 20


def store(kind: str) -> presence.Leases:
    if kind == "memory":
        return presence.MemoryLeases()
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL: runs in the PostgreSQL + Redis pass")
    return presence.RedisLeases(url, f"test-leases-{uuid.uuid4().hex}")


def counted(leases: presence.Leases, calls: list[int]) -> None:
    """Record the size of every script call the Redis store makes."""
    for coalescer in (leases._holds, leases._releases):
        send = coalescer.send

        async def counting(items, send=send):
            calls.append(len(items))
            return await send(items)

        coalescer.send = counting


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_leases_taken_and_dropped_together_answer_as_one_at_a_time(kind):
    leases = store(kind)
    calls: list[int] = []
    if kind == "redis":
        counted(leases, calls)

    async def scenario() -> tuple:
        held = await asyncio.gather(
            *(leases.hold("ada", f"a{i}", cap=USERS_CAP) for i in range(25)),
            *(leases.hold("bo", f"b{i}") for i in range(3)),
        )
        counts = (await leases.count("ada"), await leases.count("bo"))
        released = await asyncio.gather(
            *(leases.release("ada", f"a{i}") for i in range(USERS_CAP)),
            leases.release("ada", "never-held"),
            leases.release("bo", "b0"),
        )
        online = await leases.online(["ada", "bo"])
        return held, counts, released, online

    held, counts, released, online = asyncio.run(scenario())

    # Ada came online with her first socket; the 20 after it are her cap, the rest refused.
    assert held[:25] == [1] + [0] * (USERS_CAP - 1) + [presence.OVER_CAP] * 5
    assert held[25:] == [1, 0, 0]
    assert counts == (USERS_CAP, 3)
    # She went offline with the last of her sockets; Bo has two left.
    assert released == [False] * (USERS_CAP - 1) + [True, False, False]
    assert online == {"bo"}
    if kind == "redis":
        assert calls == [28, 22]  # two script calls, where there were 50
