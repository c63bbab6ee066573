"""server.collector: while sockets are held, what reaches the oldest generation is frozen
out of the garbage collector's walks at once; everything is walked again after a wave of
closes or opens (once, when it pauses), or once enough time passed."""

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from server.collector import CLOSING_SETTLE, OPENING_SETTLE, Collector


class Recorder:
    """The gc module's part the policy uses, recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.callbacks: list = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(("collect", generation))
        return 0

    def freeze(self) -> None:
        self.calls.append(("freeze",))

    def unfreeze(self) -> None:
        self.calls.append(("unfreeze",))

    def walked(self, generation: int) -> None:
        """What CPython does around a walk of `generation`."""
        for callback in self.callbacks:
            callback("start", {"generation": generation})
            callback("stop", {"generation": generation, "collected": 0, "uncollectable": 0})


FREEZE = [("freeze",)]
FULL = [("unfreeze",), ("collect", 2), ("freeze",)]


@pytest.fixture
def now():
    return [0.0]


@pytest.fixture
def policy(now):
    return Collector(churn=100, full_interval=600, clock=lambda: now[0], collector=Recorder())


@pytest.fixture
def real_policy() -> Iterator[Collector]:
    """The policy on the real collector; everything is thawed and walked afterwards."""
    policy = Collector(churn=1, full_interval=600)
    try:
        yield policy
    finally:
        policy.stop()
        gc.unfreeze()
        gc.collect()
        gc.freeze()  # as the process was (server.asgi)


def opened(policy: Collector, n: int) -> None:
    for _ in range(n):
        policy.socket_opened()


def closed(policy: Collector, n: int) -> None:
    for _ in range(n):
        policy.socket_closed()


def ticks(
    policy: Collector, now: list[float], counts: list[int], change: Callable = closed
) -> list[bool]:
    """One tick a second, with `counts[i]` sockets closing (or, with `change=opened`,
    opening) in the second before tick i."""
    walked = []
    for n in counts:
        change(policy, n)
        now[0] += 1
        walked.append(policy.tick())
    return walked


def test_a_middle_walk_freezes_what_it_passed_on_while_sockets_are_held(policy):
    recorder = policy.collector
    recorder.walked(1)
    assert recorder.calls == []  # no socket: CPython's own pace

    opened(policy, 1)
    recorder.walked(0)
    assert recorder.calls == []  # a young walk passes nothing to the oldest generation
    recorder.walked(2)
    assert recorder.calls == []
    recorder.walked(1)
    assert recorder.calls == FREEZE

    closed(policy, 1)
    recorder.walked(1)
    assert recorder.calls == FREEZE


def test_held_sockets_keep_cpythons_oldest_generation_walks_away(real_policy):
    """While 600 sockets open, each holding 250 objects, the oldest generation is not
    walked once: each middle walk's survivors are frozen. Before, they stayed there until
    the next tick (5 s), and CPython walked them about once a second in a storm, each
    walk longer than the last; here, once."""
    walks: list[int] = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            walks.append(1)

    gc.collect()
    held = []
    gc.callbacks.append(count)
    try:
        for _ in range(600):
            real_policy.socket_opened()
            held.append([[n] for n in range(250)])
    finally:
        gc.callbacks.remove(count)
    assert walks == []
    assert gc.get_freeze_count() >= 600 * 250


def held(policy: Collector, now: list[float], n: int) -> None:
    """`n` sockets open, and the walk after their wave done."""
    opened(policy, n)
    ticks(policy, now, [0, 0])
    policy.collector.calls.clear()


def test_a_quarter_of_the_sockets_held_must_close_before_a_walk(policy, now):
    held(policy, now, 4000)
    assert ticks(policy, now, [999, 0]) == [False, False]  # 999 < (3001 + 999) / 4
    assert ticks(policy, now, [1, 0]) == [False, True]  # walked once closing paused
    assert policy.collector.calls == FULL
    assert ticks(policy, now, [0, 0]) == [False, False]


def test_at_least_churn_sockets_must_close(policy, now):
    held(policy, now, 10)
    assert ticks(policy, now, [10, 0, 0]) == [False, False, False]


def test_a_mass_disconnect_is_one_walk_once_closing_pauses(policy, now):
    """Daphne takes a few seconds to close 5,000 sockets dropped at once; walking each
    second while it does would walk the whole heap three or four times."""
    held(policy, now, 5000)
    walked = ticks(policy, now, [1500, 2000, 1500, 0, 0, 0])
    assert walked == [False, False, False, True, False, False]
    assert policy.collector.calls == FULL


def test_closing_that_never_pauses_is_walked_within_the_settle_time(policy, now):
    held(policy, now, 1000)
    settle = int(CLOSING_SETTLE)
    walked = ticks(policy, now, [300] + [10] * (settle + 1))
    # Enough closed by the first tick; walked `settle` seconds after the tick before it.
    assert walked.index(True) + 1 == settle


def test_a_wave_of_opens_is_walked_once_it_pauses(policy, now):
    """A freeze takes what the handshakes in flight will leave as cycles: a reconnect
    storm is walked once, after it, not left for GC_FULL_INTERVAL."""
    held(policy, now, 4000)
    assert ticks(policy, now, [500, 500, 0], opened) == [False, False, False]  # 1000 < 5000 / 4
    assert ticks(policy, now, [400, 0, 0], opened) == [False, True, False]  # 1400 >= 5400 / 4
    assert policy.collector.calls == FULL


def test_opening_that_never_pauses_is_walked_within_the_settle_time(policy, now):
    settle = int(OPENING_SETTLE)
    walked = ticks(policy, now, [100] * (settle + 2), opened)
    # Enough opened by the first tick; walked `settle` seconds after the tick before it.
    assert walked.index(True) + 1 == settle


def test_everything_is_walked_again_every_full_interval_at_the_latest(policy, now):
    opened(policy, 10)
    now[0] = 599
    assert policy.tick() is False
    now[0] = 600
    assert policy.tick() is True
    now[0] = 1199
    assert policy.tick() is False
    assert policy.collector.calls == FULL


def test_frozen_cycles_are_reclaimed_by_the_full_walk(real_policy):
    """With the real collector: a closed socket's cycle, frozen once a middle walk passed
    it on, survives CPython's own walks, and goes at the full walk its closing triggers."""

    class Socket:
        pass

    opened(real_policy, 4)
    sockets = [Socket() for _ in range(4)]
    for socket in sockets:
        socket.me = socket  # a cycle, as a consumer and its tasks make
    alive = weakref.ref(sockets[0])
    gc.collect(1)  # passes them on to the oldest generation, and so freezes them

    del socket, sockets
    gc.collect()
    assert alive() is not None  # frozen: not walked

    closed(real_policy, 4)
    real_policy.last_full -= real_policy.full_interval  # due now, whatever the clock says
    assert real_policy.tick() is True
    assert alive() is None


def test_paced_the_oldest_generation_is_walked_a_tenth_as_often():
    """Objects in flight at a middle walk, like a request's, reach the oldest generation
    and die there by reference counting; CPython counted them as growth and walked it
    every tenth middle walk."""
    from collections import deque

    from server.collector import pace_full_walks

    def full_walks() -> int:
        walks: list[int] = []

        def count(phase: str, info: dict) -> None:
            if phase == "start" and info["generation"] == 2:
                walks.append(1)

        # With the heap frozen first, the full walk leaves the oldest generation empty:
        # CPython's other rule (a quarter's growth) then allows a walk whenever the
        # threshold does, as in a server whose heap is frozen at startup.
        gc.freeze()
        gc.collect()
        # Each "request" holds 1,000 objects, more than a young walk's threshold (700),
        # and is dropped once the next is in flight.
        in_flight: deque = deque(maxlen=2)
        gc.callbacks.append(count)
        try:
            for _ in range(2000):
                in_flight.append([[n] for n in range(1000)])
        finally:
            gc.callbacks.remove(count)
        return len(walks)

    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # CPython's default
        unpaced = full_walks()
        pace_full_walks()
        paced = full_walks()
        assert gc.get_threshold() == (700, 10, 100)
    finally:
        gc.set_threshold(*saved)

    assert unpaced >= 10
    assert paced * 5 <= unpaced, (paced, unpaced)
