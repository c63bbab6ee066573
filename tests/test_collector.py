"""server.collector: open sockets' objects are frozen out of the garbage collector's
walks, and walked again once enough sockets closed or enough time passed."""

import gc
import weakref

import pytest

from server.collector import Collector


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def collect(self, generation: int = 2) -> int:
        self.calls.append(("collect", generation))
        return 0

    def freeze(self) -> None:
        self.calls.append(("freeze",))

    def unfreeze(self) -> None:
        self.calls.append(("unfreeze",))


FREEZE = [("collect", 1), ("freeze",)]
FULL = [("unfreeze",), ("collect", 2), ("freeze",)]


@pytest.fixture
def now():
    return [0.0]


@pytest.fixture
def policy(now):
    return Collector(churn=100, full_interval=600, clock=lambda: now[0], collector=Recorder())


def opened(policy: Collector, n: int) -> None:
    for _ in range(n):
        policy.socket_opened()


def closed(policy: Collector, n: int) -> None:
    for _ in range(n):
        policy.socket_closed()


def test_sockets_are_frozen_once_enough_have_opened(policy):
    opened(policy, 99)
    assert policy.tick(open_now=99) is None
    opened(policy, 1)
    assert policy.tick(open_now=100) == "freeze"
    assert policy.collector.calls == FREEZE
    assert policy.tick(open_now=100) is None  # nothing new


def test_enough_is_a_quarter_of_those_open_at_the_last_freeze(policy):
    opened(policy, 4000)
    policy.tick(open_now=4000)
    policy.collector.calls.clear()

    opened(policy, 999)
    assert policy.tick(open_now=4999) is None
    opened(policy, 1)
    assert policy.tick(open_now=5000) == "freeze"
    closed(policy, 1249)
    assert policy.tick(open_now=3751) is None
    closed(policy, 1)
    assert policy.tick(open_now=3750) == "full"
    assert policy.collector.calls == FREEZE + FULL


def test_everything_is_walked_again_every_full_interval_at_the_latest(policy, now):
    opened(policy, 10)
    now[0] = 599
    assert policy.tick(open_now=10) is None
    now[0] = 600
    assert policy.tick(open_now=10) == "full"
    now[0] = 1199
    assert policy.tick(open_now=10) is None
    assert policy.collector.calls == FULL


def test_frozen_cycles_are_reclaimed_by_the_full_walk():
    """With the real collector: a closed socket's cycle survives collections while
    frozen, and goes at the full walk its closing triggers."""

    class Socket:
        pass

    policy = Collector(churn=1, full_interval=600)
    sockets = [Socket() for _ in range(4)]
    for socket in sockets:
        socket.me = socket  # a cycle, as a consumer and its tasks make
    alive = weakref.ref(sockets[0])
    try:
        opened(policy, 4)
        assert policy.tick(open_now=4) == "freeze"

        del socket, sockets
        gc.collect()
        assert alive() is not None  # frozen: not walked

        closed(policy, 4)
        assert policy.tick(open_now=0) == "full"
        assert alive() is None
    finally:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
