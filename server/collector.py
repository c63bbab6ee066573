"""When the garbage collector walks the objects of open WebSockets.

A subscribed socket is a few hundred objects that live as long as it does. CPython's
full collection walks every one of them whenever the heap has grown by a quarter: while
5,000 sockets connected that was 15 walks, 16 % of the CPU (bench/reconnect.py, issue
14). Nothing but a closed socket makes them garbage.

So while the process holds sockets, whatever reaches the collector's oldest generation is
frozen at once (`gc.freeze`, after each walk of the middle generation): the collector
skips frozen objects, while reference counting still frees whatever is not in a cycle.
Everything is walked again (`gc.unfreeze`, a full collection, then freeze) after a wave:

- once a quarter of the sockets the heap holds (open, or closed since the last walk), and
  at least `GC_SOCKET_CHURN`, have closed: their cycles are garbage;
- once as many have opened: a freeze also takes what handshakes and requests in flight
  will leave as cycles (300,000 objects after a 5,000-socket reconnect storm), which only
  a full walk reclaims;
- and every `GC_FULL_INTERVAL` seconds at the latest.

A wave's walk waits for the wave to pause for a second (at most `CLOSING_SETTLE` or
`OPENING_SETTLE`), so a mass disconnect is one walk and the reconnect storm after it
another, rather than one walk per second while they last.

Freezing at the middle walk rather than on a timer matters because of how CPython paces
its walks of the oldest generation: once what survived into it since its last walk is a
quarter of what that walk kept, checked every tenth middle walk. A freeze empties that
generation, so the quarter becomes almost nothing. Freezing every 5 s, CPython walked the
generation about once a second in between, each walk over everything opened since the last
freeze and longer than the last: in a 5,000-socket reconnect storm, 18 walks, 6 s of the
storm's 16 s of CPU, none of which found garbage.
"""

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Seconds a wave's walk waits for it to pause.
CLOSING_SETTLE = 5.0
OPENING_SETTLE = 30.0


@dataclass
class Wave:
    """Sockets opened (or closed) since the last walk, as of now and of the last tick."""

    count: int = 0
    seen: int = 0
    # The last tick at which the wave was too small to walk for.
    since: float = 0.0

    def due(self, now: float, enough: int, settle: float) -> bool:
        """Enough, and paused since the last tick or enough for `settle` seconds. Called
        once a tick: it also notes the count as of this tick."""
        paused, self.seen = self.count == self.seen, self.count
        if self.count < enough:
            self.since = now
            return False
        return paused or now - self.since >= settle

    def reset(self, now: float) -> None:
        self.count = self.seen = 0
        self.since = now


@dataclass
class Collector:
    churn: int
    full_interval: float
    clock: Callable[[], float] = time.monotonic
    collector: Any = gc  # the gc module; tests pass a recorder
    # Sockets open now (counted by the consumers), and the waves since the last walk.
    held: int = 0
    opened: Wave = field(default_factory=Wave)
    closed: Wave = field(default_factory=Wave)
    last_full: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.last_full = self.clock()
        self.opened.reset(self.last_full)
        self.closed.reset(self.last_full)
        self.collector.callbacks.append(self._walked)

    def stop(self) -> None:
        """No longer freeze after walks (tests)."""
        self.collector.callbacks.remove(self._walked)

    def socket_opened(self) -> None:
        self.held += 1
        self.opened.count += 1

    def socket_closed(self) -> None:
        self.held -= 1
        self.closed.count += 1

    def _walked(self, phase: str, info: dict[str, int]) -> None:
        """After a walk of the middle generation, freeze what it passed on to the oldest
        while sockets are held. (A freeze moves lists and resets counters; it is safe
        here, where the walk is complete.)"""
        if phase == "stop" and info["generation"] == 1 and self.held:
            self.collector.freeze()

    def tick(self) -> bool:
        """Walk everything if due; called every second. Returns whether it walked."""
        now = self.clock()
        enough = max(self.churn, (self.held + self.closed.count) // 4)
        closing = self.closed.due(now, enough, CLOSING_SETTLE)
        opening = self.opened.due(now, enough, OPENING_SETTLE)
        if not (closing or opening or now - self.last_full >= self.full_interval):
            return False
        self.collector.unfreeze()
        self.collector.collect()
        self.collector.freeze()
        self.last_full = now
        self.opened.reset(now)
        self.closed.reset(now)
        return True


# Walks of the middle generation CPython lets pass before it considers walking the oldest
# (its own default: 10).
OLDEST_EVERY = 100


def pace_full_walks(collector: Any = gc) -> None:
    """Consider a walk of the oldest generation once per `OLDEST_EVERY` middle walks.

    A request in flight during a middle walk is passed on to the oldest generation, and
    freed there by reference counting once answered: nothing of a request is left in
    cycles (server.handler). CPython still counted it as growth, and walked the oldest
    generation every 100-200 requests, finding nothing. Those walks (1-3.5 ms each) were a
    history page's p99 (bench/RESULTS.md, issue 14, session 24). Cycles that do reach the
    oldest generation wait ten times longer for a walk; what open sockets hold is frozen
    anyway (`Collector`)."""
    young, middle, _ = collector.get_threshold()
    collector.set_threshold(young, middle, OLDEST_EVERY)


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
