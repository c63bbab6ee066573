"""The cache's async API (server.cache), which code on the event loop uses, and the rate
limits over it: the same keys and values as the sync API, and the same fallback to
process memory when Redis cannot be reached."""

import asyncio
import os

import pytest
from django.core.cache import caches
from django.test import RequestFactory

from chat import ratelimit
from chat.exceptions import RateLimited
from server.cache import LocMemCache, RedisCache


def redis_cache(location: str | None = None) -> RedisCache:
    url = location or os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL: runs in the PostgreSQL + Redis pass")
    return RedisCache(url, {"KEY_PREFIX": "test-cache", "OPTIONS": {"socket_timeout": 0.5}})


def test_the_async_and_sync_apis_read_each_others_values():
    cache = redis_cache()
    values = {"text": "query { me { id } }", "number": 7, "mapping": {"a": [1, 2]}}

    async def scenario() -> dict:
        for name, value in values.items():
            await cache.aset(f"async-{name}", value, timeout=60)
        return {name: await cache.aget(f"sync-{name}") for name in values}

    for name, value in values.items():
        cache.set(f"sync-{name}", value, timeout=60)

    read_async = asyncio.run(scenario())
    read_sync = {name: cache.get(f"async-{name}") for name in values}

    assert read_async == values
    assert read_sync == values
    ttl = cache._cache.get_client().ttl(cache.make_and_validate_key("async-text"))
    assert 55 <= ttl <= 60


def test_async_add_delete_and_a_zero_timeout_behave_as_djangos():
    cache = redis_cache()
    cache.delete("present")
    cache.delete("absent")

    async def scenario() -> list:
        return [
            await cache.aadd("present", 1, timeout=60),
            await cache.aadd("present", 2, timeout=60),
            await cache.aget("present"),
            await cache.aget("absent", "default"),
            await cache.aadd("gone", 1, timeout=0),
            await cache.aget("gone"),
            await cache.adelete("present"),
            await cache.adelete("present"),
        ]

    assert asyncio.run(scenario()) == [True, False, 1, "default", True, None, True, False]


def test_the_in_memory_cache_answers_the_async_api_in_place():
    cache = LocMemCache("test-async-locmem", {})
    loop_thread: list[bool] = []
    get = cache.get

    def recording_get(*args, **kwargs):
        loop_thread.append(asyncio.get_running_loop() is not None)
        return get(*args, **kwargs)

    cache.get = recording_get

    async def scenario() -> list:
        await cache.aset("key", "value")
        return [
            await cache.aget("key"),
            await cache.aadd("key", "other"),
            await cache.adelete("key"),
            await cache.aget("key"),
        ]

    assert asyncio.run(scenario()) == ["value", False, True, None]
    assert loop_thread == [True, True]  # not hopped to a thread


def test_the_blocking_and_awaited_charges_spend_one_bucket(settings):
    settings.GRAPHQL_COST_RATE_BURST, settings.GRAPHQL_COST_RATE_PER_SECOND = 3, 0.01

    ratelimit.hit("graphql_cost", "someone", 2)
    asyncio.run(ratelimit.ahit("graphql_cost", "someone", 1))
    with pytest.raises(RateLimited) as refused:
        asyncio.run(ratelimit.ahit("graphql_cost", "someone", 1))

    assert refused.value.retry_after >= 90
    asyncio.run(ratelimit.ahit("graphql_cost", "someone else", 3))


def test_an_awaited_charge_falls_back_to_process_memory_when_redis_is_unreachable(
    settings, caplog
):
    redis_cache()  # the services pass: where the configured cache is Redis
    settings.CACHES = {
        "default": {
            "BACKEND": "server.cache.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
        }
    }
    settings.GRAPHQL_COST_RATE_BURST, settings.GRAPHQL_COST_RATE_PER_SECOND = 2, 0.01
    subject = f"unreachable-{os.getpid()}-{id(settings)}"
    ratelimit._last_warning = 0.0

    async def three() -> list:
        outcomes = []
        for _ in range(3):
            try:
                await ratelimit.ahit("graphql_cost", subject, 1)
                outcomes.append("spent")
            except RateLimited:
                outcomes.append("refused")
        return outcomes

    assert asyncio.run(three()) == ["spent", "spent", "refused"]
    assert "Rate limits use process memory" in caplog.text
    assert isinstance(caches["default"], RedisCache)


@pytest.mark.django_db
def test_execute_sync_still_charges_the_query_budget(settings, make_user):
    from schema import schema
    from schema.context import Context

    settings.GRAPHQL_COST_RATE_BURST, settings.GRAPHQL_COST_RATE_PER_SECOND = 2, 0.01
    viewer = make_user()

    def run():
        context = Context(request=RequestFactory().post("/graphql/"), user=viewer)
        return schema.execute_sync("{ me { id } }", context_value=context)

    results = [run() for _ in range(3)]

    assert [r.errors is None for r in results] == [True, True, False]
    assert results[2].errors[0].extensions["code"] == "RATE_LIMITED"


def test_concurrent_awaited_charges_are_batched_and_each_counted_once(settings):
    redis_cache()  # the services pass: where the configured cache is Redis
    settings.GRAPHQL_COST_RATE_BURST, settings.GRAPHQL_COST_RATE_PER_SECOND = 150, 0.01
    sent: list[int] = []

    async def scenario() -> list:
        await ratelimit.ahit("graphql_cost", "warm-up", 1)
        batch = ratelimit._batches[caches["default"].async_client()]
        original = batch.send

        async def counting(items):
            sent.append(len(items))
            return await original(items)

        batch.send = counting
        outcomes = await asyncio.gather(
            *(ratelimit.ahit("graphql_cost", f"user-{i % 2}", 1) for i in range(400)),
            return_exceptions=True,
        )
        return ["spent" if outcome is None else type(outcome).__name__ for outcome in outcomes]

    outcomes = asyncio.run(scenario())

    assert outcomes.count("spent") == 300  # 150 for each of the two users
    assert outcomes.count("RateLimited") == 100
    assert sum(sent) == 400
    assert len(sent) <= 3  # one call for the first, the rest together (at most 1,000 each)


def test_a_cancelled_charge_does_not_stop_the_others_in_its_batch(settings):
    redis_cache()
    settings.GRAPHQL_COST_RATE_BURST, settings.GRAPHQL_COST_RATE_PER_SECOND = 10, 0.01

    async def scenario() -> list:
        charges = [
            asyncio.ensure_future(ratelimit.ahit("graphql_cost", "cancelled-batch", 1))
            for _ in range(5)
        ]
        await asyncio.sleep(0)  # all five are waiting for the batch
        charges[0].cancel()
        return await asyncio.gather(*charges, return_exceptions=True)

    outcomes = asyncio.run(scenario())

    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert outcomes[1:] == [None] * 4
