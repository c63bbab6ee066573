"""fanout.Mailbox stands in for asyncio.Queue on every socket (Strawberry's incoming
frames, a subscription's events) with its one reader: it must keep their order and lose
nothing when a reader is cancelled."""

import asyncio

import pytest

from schema.fanout import Mailbox


async def test_items_come_out_in_the_order_they_went_in():
    box = Mailbox()
    for n in range(3):
        box.put_nowait({"n": n})

    assert box.qsize() == 3
    assert [(await box.get())["n"] for _ in range(3)] == [0, 1, 2]
    assert box.empty()


async def test_a_waiting_reader_wakes_for_the_next_item():
    box = Mailbox()
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)

    box.put_nowait({"n": 1})

    assert await asyncio.wait_for(reader, 1) == {"n": 1}


async def test_a_cancelled_reader_loses_nothing():
    box = Mailbox()
    reader = asyncio.create_task(box.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)

    box.put_nowait({"n": 1})

    assert await asyncio.wait_for(box.get(), 1) == {"n": 1}


def test_taking_from_an_empty_mailbox_says_so():
    with pytest.raises(asyncio.QueueEmpty):
        Mailbox().get_nowait()


async def test_a_drained_mailbox_holds_no_deque():
    box = Mailbox()
    box.put_nowait({"n": 1})
    box.put_nowait({"n": 2})

    assert box.get_nowait() == {"n": 1}
    assert box._items is not None
    assert await box.get() == {"n": 2}
    assert box._items is None
    box.put_nowait({"n": 3})
    assert await box.get() == {"n": 3}
