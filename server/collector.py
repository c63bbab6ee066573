"""When the garbage collector walks the objects of open WebSockets.

A subscribed socket is a few hundred objects that live as long as it does. CPython's
full collection walks every one of them whenever the heap has grown by a quarter: while
5,000 sockets connected that was 15 walks, 16 % of the CPU (bench/reconnect.py, issue
14). Nothing but a closed socket makes them garbage.

So this process freezes what it holds (`gc.freeze`: the collector skips those objects,
while reference counting still frees whatever is not in a cycle) once enough sockets
have opened since the last time, and walks everything again (`gc.unfreeze`, a full
collection, then freeze) once enough have closed, or at the latest every
`GC_FULL_INTERVAL` seconds, so cycles left by closed sockets and finished requests are
reclaimed within that bound. "Enough" is a quarter of the sockets open at the last
freeze, as CPython's own rule is a quarter of the heap, and at least `GC_SOCKET_CHURN`.
"""

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Collector:
    churn: int
    full_interval: float
    clock: Callable[[], float] = time.monotonic
    collector: Any = gc  # the gc module; tests pass a recorder
    # Sockets opened and closed since the last freeze (counted by the consumers).
    opened: int = 0
    closed: int = 0
    # Sockets open at the last freeze, and when everything was last walked.
    frozen_open: int = 0
    last_full: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.last_full = self.clock()

    def socket_opened(self) -> None:
        self.opened += 1

    def socket_closed(self) -> None:
        self.closed += 1

    def tick(self, open_now: int) -> str | None:
        """Walk everything, freeze, or do nothing; called every few seconds. Returns
        what it did: "full", "freeze" or None."""
        enough = max(self.churn, self.frozen_open // 4)
        if self.closed >= enough or self.clock() - self.last_full >= self.full_interval:
            self.collector.unfreeze()
            self.collector.collect()
            self.collector.freeze()
            self.last_full = self.clock()
            done = "full"
        elif self.opened >= enough:
            # The young generations first, so that what is garbage already is not frozen.
            self.collector.collect(1)
            self.collector.freeze()
            done = "freeze"
        else:
            return None
        self.opened = self.closed = 0
        self.frozen_open = open_now
        return done


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
