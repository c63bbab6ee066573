"""Background loops end when cancelled, even when a Redis command loses the cancellation
(redis-py runs them under Python 3.11's `wait_for`, which can swallow one)."""

import asyncio
import contextlib

from chat import cancellation, presence
from server import consumers


async def swallowing_command() -> None:
    """A command that completes as its cancellation arrives, and returns."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0.05)


async def cancel_during_command(task: asyncio.Task) -> None:
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.wait([task], timeout=2)


async def test_a_loop_that_checks_ends_after_a_lost_cancellation():
    async def loop() -> None:
        while True:
            cancellation.check()
            await swallowing_command()

    task = asyncio.create_task(loop())
    await cancel_during_command(task)

    assert task.cancelled()


async def test_the_presence_heartbeat_ends_after_a_lost_cancellation(monkeypatch, settings):
    settings.PRESENCE_HEARTBEAT = 0
    monkeypatch.setattr(presence, "renew", swallowing_command)
    monkeypatch.setattr(consumers.fanout, "hub", lambda: type("Hub", (), {"outages": 0})())

    task = asyncio.create_task(consumers._beat_forever())
    await cancel_during_command(task)

    assert task.cancelled()
