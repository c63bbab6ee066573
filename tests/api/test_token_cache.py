"""Token checks from the process's cache (chat.tokencache, server.tokens): the database is
asked once per token, and nothing that ends or changes a sign-in is missed."""

import asyncio
import contextlib
import contextvars
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from chat import auth, events, services, tokencache
from chat.events import SESSION_MESSAGE_TYPE, SESSIONS_CHANGED_GROUP
from chat.models import AuthToken
from chat.tokencache import TokenCache
from schema import fanout
from server import tokens
from tests.api.realtime import http, signed_in
from tests.factories import PASSWORD, UserFactory, token_for
from tests.ws import LEGACY_WS, TRANSPORT_WS, GraphQLSocket

ME = "query { me { displayName } }"
LOGOUT = "mutation { logout { __typename } }"
CHANGE_PASSWORD = """
mutation($current: String!, $new: String!) {
  changePassword(currentPassword: $current, newPassword: $new) { __typename }
}
"""


def recorded(monkeypatch, owner: object, name: str) -> list:
    """The argument of each call to `owner.name`, which is still made."""
    seen: list = []
    original = getattr(owner, name)

    def record(argument):
        seen.append(argument)
        return original(argument)

    monkeypatch.setattr(owner, name, record)
    return seen


@pytest.fixture
def lookups(monkeypatch) -> list[str]:
    """The token lookups that reach the database."""
    return recorded(monkeypatch, auth, "lookup_token")


async def cached(app, token: str) -> None:
    """Use `token` until it comes from the cache (the process hears revocations from its
    first check on)."""
    for _ in range(50):
        assert (await http(app, ME, {}, token))["data"]["me"]
        if tokencache.cache().get(auth.hash_token(token)) is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the token never reached the cache")


def refused(reply: dict) -> bool:
    return reply.get("data") is None and [e["extensions"]["code"] for e in reply["errors"]] == [
        "UNAUTHENTICATED"
    ]


@pytest.fixture
def ada(transactional_db):
    user = UserFactory(display_name="Ada")
    return user, token_for(user)


async def test_a_token_is_looked_up_once_then_answered_from_the_cache(asgi_app, ada, lookups):
    _, token = ada
    await cached(asgi_app, token)
    lookups.clear()

    for _ in range(5):
        assert (await http(asgi_app, ME, {}, token)) == {"data": {"me": {"displayName": "Ada"}}}

    assert lookups == []


async def test_a_request_signed_in_from_the_cache_builds_no_database_connection(
    asgi_app, ada, monkeypatch
):
    """Each request on the event loop is a context of its own: asking it for the database
    connection there built a `DatabaseWrapper` per request, only to name its alias."""
    from django.db import connections

    if connections["default"].vendor != "postgresql":
        pytest.skip("needs DATABASE_URL: SQLite's columns have converters, which need one")
    _, token = ada
    await cached(asgi_app, token)
    created = recorded(monkeypatch, connections, "create_connection")
    for _ in range(5):
        # A context of its own, as daphne gives each request: not the test's, which holds
        # a connection already.
        request = http(asgi_app, "{ __typename }", {}, token)
        assert (await asyncio.create_task(request, context=contextvars.Context()))["data"]

    assert created == []


async def test_an_unknown_token_is_never_cached(asgi_app, ada, lookups):
    _, token = ada
    await cached(asgi_app, token)
    lookups.clear()

    for _ in range(3):
        assert refused(await http(asgi_app, ME, {}, token + "x"))

    assert len(lookups) == 3


@pytest.mark.parametrize("how", ["logout", "change_password", "admin_revoke", "deactivate"])
async def test_a_sign_in_ended_any_way_is_refused_at_once(asgi_app, ada, how, monkeypatch):
    """By this process even before its own broadcast comes back (here: never)."""
    user, token = ada
    other = await sync_to_async(token_for)(user)
    await cached(asgi_app, token)
    send = events._send
    monkeypatch.setattr(
        events, "_send", lambda group, m: group != SESSIONS_CHANGED_GROUP and send(group, m)
    )

    if how == "logout":
        assert (await http(asgi_app, LOGOUT, {}, token))["data"]
    elif how == "change_password":
        variables = {"current": PASSWORD, "new": "an entirely new passphrase"}
        assert (await http(asgi_app, CHANGE_PASSWORD, variables, other))["data"]
    elif how == "admin_revoke":
        row = await AuthToken.objects.aget(key_hash=auth.hash_token(token))
        await sync_to_async(auth.revoke_token)(row)
    else:
        user.is_active = False
        await sync_to_async(user.save)()

    assert refused(await http(asgi_app, ME, {}, token))


@pytest.fixture
def broadcasts(monkeypatch) -> list[str]:
    """The groups published to, in order (nothing is sent). Not `events_sent`: that records
    chat events, and a session message names none."""
    sent: list[str] = []
    monkeypatch.setattr(events, "_send", lambda group, message: sent.append(group))
    return sent


# Transactional: each service commits for real, running what waits for the commit.
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("how", ["change_password", "reset_password", "deactivate", "logout"])
def test_a_sign_in_ended_any_way_tells_the_processes_once(how, broadcasts):
    """A password change saves the user and revokes their tokens: one broadcast, not one
    for each."""
    user = UserFactory()
    token = AuthToken.objects.get(key_hash=auth.hash_token(token_for(user)))
    broadcasts.clear()

    if how == "change_password":
        services.change_password(
            user=user, current_password=PASSWORD, new_password="a brand new passphrase", keep=None
        )
    elif how == "reset_password":
        services.reset_password(
            uid=urlsafe_base64_encode(force_bytes(user.pk)),
            token=default_token_generator.make_token(user),
            new_password="a brand new passphrase",
        )
    elif how == "deactivate":
        user.is_active = False
        user.save()
    else:
        services.logout(token=token)

    assert broadcasts.count(SESSIONS_CHANGED_GROUP) == 1


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_broadcast_does_not_stand_for_the_next_one(broadcasts):
    user = UserFactory()
    broadcasts.clear()

    with transaction.atomic():
        with contextlib.suppress(RuntimeError), transaction.atomic():
            events.sessions_changed(user.pk)
            raise RuntimeError
        events.sessions_changed(user.pk)

    assert broadcasts == [SESSIONS_CHANGED_GROUP]


async def test_a_profile_change_shows_at_once(asgi_app, ada):
    user, token = ada
    await cached(asgi_app, token)

    user.display_name = "Ada Lovelace"
    await sync_to_async(user.save)(update_fields=["display_name"])

    reply = await http(asgi_app, ME, {}, token)
    assert reply == {"data": {"me": {"displayName": "Ada Lovelace"}}}


async def test_another_process_revoking_evicts_when_its_broadcast_arrives(asgi_app, ada):
    """What another process's revocation looks like here: the row changes underneath, then
    the broadcast arrives."""
    user, token = ada
    await cached(asgi_app, token)
    await AuthToken.objects.filter(user=user).aupdate(revoked_at=timezone.now())
    # Still from the cache: the broadcast is what this process goes by.
    assert (await http(asgi_app, ME, {}, token))["data"]

    await get_channel_layer().group_send(
        SESSIONS_CHANGED_GROUP, {"type": SESSION_MESSAGE_TYPE, "user_id": str(user.pk)}
    )
    for _ in range(100):
        if tokencache.cache().get(auth.hash_token(token)) is None:
            break
        await asyncio.sleep(0.01)

    assert refused(await http(asgi_app, ME, {}, token))


async def test_while_the_layer_fails_every_check_asks_the_database(asgi_app, ada, lookups):
    """Broadcasts may be lost in an outage: the cache is emptied and stays off until the
    layer is back."""
    user, token = ada
    await cached(asgi_app, token)
    hub = fanout.hub()
    hub.layer_ok = False
    hub.resync()  # what the hub's probe does on an outage
    lookups.clear()
    try:
        assert len(tokencache.cache()) == 0
        assert (await http(asgi_app, ME, {}, token))["data"]
        await AuthToken.objects.filter(user=user).aupdate(revoked_at=timezone.now())
        assert refused(await http(asgi_app, ME, {}, token))
        assert len(lookups) == 2
        assert len(tokencache.cache()) == 0
    finally:
        hub.layer_ok = True


async def test_a_token_expiring_while_cached_is_refused(asgi_app, ada, monkeypatch):
    _, token = ada
    await cached(asgi_app, token)
    later = timezone.now() + timedelta(days=365)
    monkeypatch.setattr(tokens.timezone, "now", lambda: later)

    assert refused(await http(asgi_app, ME, {}, token))


async def test_a_cached_token_notes_its_use_once_a_minute(asgi_app, ada, monkeypatch, lookups):
    _, token = ada
    await cached(asgi_app, token)
    lookups.clear()
    before = (await AuthToken.objects.aget(key_hash=auth.hash_token(token))).last_used_at
    writes = []
    touch = auth.touch_token
    monkeypatch.setattr(auth, "touch_token", lambda *a: writes.append(a) or touch(*a))
    later = timezone.now() + auth.LAST_USED_RESOLUTION * 2
    monkeypatch.setattr(tokens.timezone, "now", lambda: later)

    for _ in range(3):
        assert (await http(asgi_app, ME, {}, token))["data"]

    assert len(writes) == 1
    assert lookups == []
    row = await AuthToken.objects.aget(key_hash=auth.hash_token(token))
    assert row.last_used_at == later != before


async def test_a_token_noted_as_used_by_its_lookup_is_cached_as_noted(asgi_app, ada, monkeypatch):
    """The lookup that fills the cache writes `last_used_at`; the cached row must carry
    what it wrote, or the first answer from the cache writes it again (in a reconnect
    storm, a database write and a thread hop per socket)."""
    _, token = ada
    writes = []
    touch = auth.touch_token
    monkeypatch.setattr(auth, "touch_token", lambda *a: writes.append(a) or touch(*a))

    await cached(asgi_app, token)
    for _ in range(3):
        assert (await http(asgi_app, ME, {}, token))["data"]

    assert len(writes) == 1


async def test_a_user_from_the_cache_loads_what_it_left_out(asgi_app, ada):
    """The password hash and `last_seen_at` are not kept; they are read if asked for."""
    _, token = ada
    await cached(asgi_app, token)

    cached_token = await tokens.authenticate(token)

    assert cached_token.user.get_deferred_fields() == {"password", "last_seen_at"}
    assert await sync_to_async(lambda: cached_token.user.check_password(PASSWORD))()


# The cache alone.


def live_cache(size: int = 3, seconds: float = 60) -> TokenCache:
    cache = TokenCache(size, seconds)
    cache.live = lambda: True
    return cache


def test_the_least_recently_used_entry_goes_first():
    cache = live_cache(size=2)
    for key in ("a", "b"):
        cache.put(key, (key,), key, cache.mark())
    assert cache.get("a") == ("a",)
    cache.put("c", ("c",), "c", cache.mark())

    assert cache.get("b") is None
    assert cache.get("a") == ("a",)
    assert cache.get("c") == ("c",)


def test_an_entry_is_trusted_for_a_bounded_time(monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(tokencache.time, "monotonic", lambda: clock[0])
    cache = live_cache(seconds=60)
    cache.put("a", ("a",), "u", cache.mark())
    clock[0] += 59
    assert cache.get("a") == ("a",)
    clock[0] += 2
    assert cache.get("a") is None
    assert len(cache) == 0


def test_a_lookup_overtaken_by_an_eviction_is_not_kept():
    """A row read before a revocation committed must not be cached after it."""
    cache = live_cache()
    mark = cache.mark()
    cache.forget_user("someone else")  # any eviction: the row may be stale

    cache.put("a", ("a",), "u", mark)

    assert cache.get("a") is None


def test_forgetting_a_user_drops_all_their_tokens_only():
    cache = live_cache(size=10)
    for key, user in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        cache.put(key, (key,), user, cache.mark())

    cache.forget_user("a")

    assert [cache.get(k) for k in ("a1", "a2", "b1")] == [None, None, ("b1",)]


def test_the_cache_answers_nothing_unless_it_hears_revocations_or_when_off():
    deaf = TokenCache(3, 60)
    deaf.put("a", ("a",), "u", deaf.mark())
    assert deaf.get("a") is None
    assert len(deaf) == 0
    off = live_cache(size=0)
    off.put("a", ("a",), "u", off.mark())
    assert off.get("a") is None
    assert len(off) == 0


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_deactivated_user_is_refused_and_their_open_socket_closed(asgi_app, ada, protocol):
    """Over WebSocket: an open socket is closed 4403, and the cached token signs in no
    new one."""
    user, token = ada
    await cached(asgi_app, token)
    open_socket = await signed_in(asgi_app, token, protocol)

    user.is_active = False
    await sync_to_async(user.save)()

    assert await open_socket.receive_close() == 4403
    socket = GraphQLSocket(asgi_app, protocol)
    await socket.connect()
    await socket.send({"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}})
    assert await socket.receive_close() == 4403
