"""Concurrent writers, each on its own connection in its own thread, released together.

On PostgreSQL these exercise the row locks and unique keys; on SQLite, the IMMEDIATE
transactions that queue writers.
"""

import threading
from collections.abc import Callable

import pytest
from django.db import connection

from chat import services
from chat.models import Chat, Message

pytestmark = pytest.mark.django_db(transaction=True)


def at_once(count: int, work: Callable[[int], object]) -> tuple[list, list[BaseException]]:
    barrier = threading.Barrier(count)
    results, errors, lock = [], [], threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            result = work(i)
            with lock:
                results.append(result)
        except BaseException as error:
            with lock:
                errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


@pytest.fixture(autouse=True)
def _generous_rate(settings):
    settings.SEND_RATE_BURST = 1000


def test_twenty_concurrent_sends_get_seqs_1_to_20(user, grace):
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)

    results, errors = at_once(
        20,
        lambda i: services.send_message(author=(user, grace)[i % 2], chat_id=chat.id, body=f"{i}"),
    )

    assert errors == []
    assert sorted(m.seq for m in results) == list(range(1, 21))
    assert sorted(Message.objects.filter(chat=chat).values_list("seq", flat=True)) == list(
        range(1, 21)
    )
    chat.refresh_from_db()
    assert chat.last_seq == 20


def test_both_users_opening_their_direct_chat_at_once_get_one_chat(user, grace):
    pairs = [(user, grace), (grace, user)] * 4

    results, errors = at_once(
        len(pairs),
        lambda i: services.open_direct_chat(user=pairs[i][0], other_user_id=pairs[i][1].id),
    )

    assert errors == []
    assert len({chat.pk for chat in results}) == 1
    assert Chat.objects.count() == 1
    assert Chat.objects.get().memberships.count() == 2


def test_the_same_client_id_sent_at_once_is_one_message(user, grace):
    chat = services.open_direct_chat(user=user, other_user_id=grace.id)

    results, errors = at_once(
        6,
        lambda i: services.send_message(
            author=user, chat_id=chat.id, body="hi", client_id="dup-1"
        ),
    )

    assert errors == []
    assert len({m.pk for m in results}) == 1
    assert Message.objects.filter(chat=chat).count() == 1
    chat.refresh_from_db()
    assert chat.last_seq == 1
