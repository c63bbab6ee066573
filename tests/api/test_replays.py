"""Subscriptions resuming from the same place at once share one catch-up read
(schema.replays), and sharing loses nothing: a read that has started serves only the
callers already waiting for it."""

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from schema import replays
from schema.subscriptions import _changes
from tests.api.realtime import events, signed_in
from tests.api.test_resume import AFTER_REVISION_3, RESUMING, history_while_away, summary


async def test_callers_waiting_together_share_one_query():
    calls = []
    reads = replays.SharedReads(lambda *key: calls.append(key) or [key])

    first, second = await asyncio.gather(reads.read("chat", 3), reads.read("chat", 3))

    assert first == second == [("chat", 3)]
    assert calls == [("chat", 3)]


async def test_different_keys_are_different_queries():
    reads = replays.SharedReads(lambda *key: [key])

    results = await asyncio.gather(reads.read("chat", 3), reads.read("chat", 4))

    assert results == [[("chat", 3)], [("chat", 4)]]
    assert reads.queries == 2


async def test_a_caller_arriving_once_the_query_started_waits_for_the_next():
    # Its snapshot may predate what that caller has not heard live: sharing it could lose
    # an event committed in between.
    started, release, answers = threading.Event(), threading.Event(), iter(["old", "new"])

    def query(*key):
        started.set()
        release.wait(5)
        return [next(answers)]

    reads = replays.SharedReads(query)
    early = asyncio.create_task(reads.read("chat", 3))
    await sync_to_async(started.wait, thread_sensitive=False)(5)
    late = asyncio.create_task(reads.read("chat", 3))
    await asyncio.sleep(0)
    release.set()

    assert await early == ["old"]
    assert await late == ["new"]
    assert reads.queries == 2


async def test_a_failed_read_fails_every_caller_and_the_next_one_queries_again():
    failing = True

    def query(*key):
        if failing:
            raise ConnectionError("the database went away")
        return ["row"]

    reads = replays.SharedReads(query)
    results = await asyncio.gather(
        reads.read("chat", 3), reads.read("chat", 3), return_exceptions=True
    )
    failing = False

    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    assert await reads.read("chat", 3) == ["row"]


async def test_a_caller_going_away_does_not_cancel_the_read_of_the_others():
    release = threading.Event()
    reads = replays.SharedReads(lambda *key: release.wait(5) and ["row"])
    leaving = asyncio.create_task(reads.read("chat", 3))
    staying = asyncio.create_task(reads.read("chat", 3))
    await asyncio.sleep(0)

    leaving.cancel()
    release.set()

    assert await staying == ["row"]


@pytest.mark.django_db(transaction=True)
async def test_sockets_resuming_from_the_same_revision_share_one_read(asgi_app, people):
    room = await history_while_away(people)
    reads = replays.shared(_changes)
    opened = [await signed_in(asgi_app, people["ada_token"]) for _ in range(8)]
    # Hold the thread database work runs on while all eight subscribe: a reconnect storm
    # in miniature, every membership check queued before the first catch-up can start.
    busy, release = threading.Event(), threading.Event()
    holding = asyncio.create_task(sync_to_async(lambda: busy.set() or release.wait(10))())
    await sync_to_async(busy.wait, thread_sensitive=False)(5)
    variables = {"chatId": str(room.id), "after": 3}
    for socket in opened:
        await socket.subscribe("s", RESUMING, variables)
    await asyncio.sleep(0.3)
    release.set()
    await holding

    received = [summary(await events(socket, 7)) for socket in opened]
    for socket in opened:
        await socket.close()

    # The last membership check may finish just as the first read starts.
    assert reads.queries <= 2
    assert received == [received[0]] * 8
    assert [row[:2] for row in received[0]] == AFTER_REVISION_3
