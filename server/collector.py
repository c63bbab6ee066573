"""When the garbage collector walks the objects of open WebSockets.

A subscribed socket is a few hundred objects that live as long as it does. CPython's
full collection walks every one of them whenever the heap has grown by a quarter: while
5,000 sockets connected that was 15 walks, 16 % of the CPU (bench/reconnect.py, issue
14). Nothing but a closed socket makes them garbage.

So while this process holds sockets, whatever survives into the oldest generation is
frozen at once (`gc.freeze`, when a walk of the middle generation has just passed it on):
the collector skips frozen objects, while reference counting still frees whatever is not
in a cycle. Everything is walked again (`gc.unfreeze`, a full collection, then freeze)
once enough sockets have closed, or at the latest every `GC_FULL_INTERVAL` seconds, so
cycles left by closed sockets and finished requests are reclaimed within that bound.
"Enough" is a quarter of the sockets the heap holds (open, or closed since the last
walk), as CPython's own rule is a quarter of the heap, and at least `GC_SOCKET_CHURN`.
The walk waits for closing to pause, so that a mass disconnect (a deploy, a network
blip) is one walk rather than one per second while it lasts.

Freezing at once, rather than every few seconds, matters because of how CPython paces its
walks of the oldest generation: once what survived into it since its last walk is a
quarter of what that walk kept, checked every tenth middle walk. A freeze empties that
generation, so the quarter becomes almost nothing, and between freezes CPython walked it
about every second, each walk over everything opened since the last freeze and longer
than the last. In a 5,000-socket reconnect storm, freezing every 5 s, that was 18 walks,
6 s of the storm's 16 s of CPU, none of which found garbage.
"""

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Seconds a walk after closes waits for them to pause.
CLOSING_SETTLE = 5.0


@dataclass
class Collector:
    churn: int
    full_interval: float
    clock: Callable[[], float] = time.monotonic
    collector: Any = gc  # the gc module; tests pass a recorder
    # Sockets open now (counted by the consumers), and closed since the last full walk.
    held: int = 0
    closed: int = 0
    # When everything was last walked; sockets closed as of the last tick, and since
    # when they have been closing.
    last_full: float = field(default=0.0)
    closed_seen: int = 0
    closing_since: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.last_full = self.clock()
        self.collector.callbacks.append(self._walked)

    def stop(self) -> None:
        """No longer freeze after walks (tests)."""
        self.collector.callbacks.remove(self._walked)

    def socket_opened(self) -> None:
        self.held += 1

    def socket_closed(self) -> None:
        self.held -= 1
        self.closed += 1

    def _walked(self, phase: str, info: dict[str, int]) -> None:
        """After a walk of the middle generation, freeze what it passed on to the oldest
        while sockets are held. (A freeze moves lists and resets counters; it is safe
        here, where the walk is complete.)"""
        if phase == "stop" and info["generation"] == 1 and self.held:
            self.collector.freeze()

    def tick(self) -> bool:
        """Walk everything if due; called every second. Returns whether it walked."""
        now = self.clock()
        if not self._walk_due(now):
            self.closed_seen = self.closed
            return False
        self.collector.unfreeze()
        self.collector.collect()
        self.collector.freeze()
        self.last_full = now
        self.closed = self.closed_seen = 0
        return True

    def _walk_due(self, now: float) -> bool:
        """Enough closed, and closing has paused for a tick (or gone on for
        `CLOSING_SETTLE` seconds)."""
        if now - self.last_full >= self.full_interval:
            return True
        if self.closed == 0:
            self.closing_since = now
            return False
        enough = max(self.churn, (self.held + self.closed) // 4)
        paused = self.closed == self.closed_seen
        return self.closed >= enough and (paused or now - self.closing_since >= CLOSING_SETTLE)


_process: Collector | None = None


def process_collector() -> Collector | None:
    """This process's collector policy; None when `GC_FREEZE` is off."""
    global _process
    from django.conf import settings

    if not settings.GC_FREEZE:
        return None
    if _process is None:
        _process = Collector(
            churn=settings.GC_SOCKET_CHURN, full_interval=settings.GC_FULL_INTERVAL
        )
    return _process
