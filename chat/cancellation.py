"""Loops that must end when their task is cancelled, even if the cancellation was lost.

redis-py runs its asyncio commands under `asyncio.wait_for`, which on Python 3.11 can
swallow a cancellation that arrives as the command completes: the command returns as if
nothing happened, and a loop that only ends by cancellation runs on forever. A fan-out
feed left while it joined its group did so, and kept a test's event loop from shutting
down (bench/RESULTS.md, issue 14). Each such loop calls `check` once a turn.
"""

import asyncio


def check() -> None:
    """Raise `CancelledError` if the current task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
