import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from graphql import GraphQLObjectType, GraphQLUnionType

from schema import schema

ROOT = Path(__file__).resolve().parent.parent


def test_schema_graphql_is_what_the_code_exports(tmp_path):
    exported = tmp_path / "schema.graphql"

    call_command("export_schema", "schema", "--path", str(exported), stdout=StringIO())

    assert exported.read_text() == (ROOT / "schema.graphql").read_text(), (
        "schema.graphql is out of date: run `make schema` and commit it"
    )


@pytest.mark.django_db
def test_models_and_migrations_agree():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


# Types strawberry-django generates for `handle_django_errors` (the `<Mutation>Payload`
# unions) carry no description and take none.
GENERATED_UNIONS = {
    name
    for name, type_ in schema._schema.type_map.items()
    if isinstance(type_, GraphQLUnionType) and name.endswith("Payload")
}
# strawberry-django's error types: their fields are described, the types are not.
LIBRARY_TYPES = {"OperationInfo", "OperationMessage", "OperationMessageKind"}


def test_every_public_type_field_and_argument_has_a_description():
    missing = []
    for name, type_ in schema._schema.type_map.items():
        if name.startswith("__") or name in GENERATED_UNIONS:
            continue
        if not type_.description and name not in LIBRARY_TYPES:
            missing.append(name)
        if isinstance(type_, GraphQLObjectType):
            for field_name, field in type_.fields.items():
                if not field.description:
                    missing.append(f"{name}.{field_name}")
                missing.extend(
                    f"{name}.{field_name}({arg_name})"
                    for arg_name, arg in field.args.items()
                    if not arg.description
                )
    builtins = {"String", "Boolean", "ID", "Int", "Float"}
    assert [m for m in missing if m not in builtins] == []


def _import_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    return subprocess.run(
        [sys.executable, "-c", "import server.settings"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def test_secret_key_is_required_when_debug_is_off():
    result = _import_settings()

    assert result.returncode == 1
    assert "SECRET_KEY is required when DEBUG is off." in result.stderr


def test_debug_runs_without_a_secret_key():
    assert _import_settings(DEBUG="true").returncode == 0


def test_a_malformed_boolean_setting_is_an_error_not_a_guess():
    result = _import_settings(DEBUG="maybe")

    assert "DEBUG must be a boolean, got 'maybe'" in result.stderr


@pytest.mark.parametrize(("ci", "exit_code"), [("true", 1), ("", 0)])
def test_the_services_pass_says_why_it_cannot_run(ci, exit_code):
    env = {
        **os.environ,
        "CI": ci,
        "DATABASE_URL": "postgres://postgres@127.0.0.1:1/nothing",
        "REDIS_URL": "redis://127.0.0.1:1/0",
    }

    result = subprocess.run(
        [sys.executable, "tests/run_on_services.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == exit_code
    assert "services pass: PostgreSQL at postgres://postgres@127.0.0.1:1/nothing" in result.stderr
    assert "services pass: Redis at 'redis://127.0.0.1:1/0' did not answer" in result.stderr
    verdict = "FAILED (CI=true requires" if ci else "skipped (set CI=true"
    assert f"services pass: {verdict}" in result.stderr


def test_requests_share_one_redis_connection_pool_and_client():
    """Each ASGI request gets its own cache object; they must not each open a pool, nor
    build a Redis client per call (that cost more than the call: chat.ratelimit)."""
    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        pytest.skip("needs REDIS_URL: runs in the PostgreSQL + Redis pass")
    import asyncio

    from asgiref.sync import ThreadSensitiveContext, sync_to_async

    from server.cache import RedisCache

    pools, clients = [], []

    def touch() -> None:
        cache = RedisCache(redis_url, {})  # what Django builds per request context
        cache.get("anything")
        for _ in range(2):
            clients.append(cache._cache.get_client("anything", write=True))
        pools.append(clients[-1].connection_pool)

    async def request() -> None:
        async with ThreadSensitiveContext():
            await sync_to_async(touch)()

    async def three_requests() -> None:
        for _ in range(3):
            await asyncio.create_task(request())

    asyncio.run(three_requests())

    assert len({id(pool) for pool in pools}) == 1
    assert len({id(client) for client in clients}) == 1


def test_server_serve_waits_for_handshakes_as_long_as_configured(settings):
    """Daphne drops a handshake not accepted within 5 s; in a reconnect storm every dropped
    one came back as a retry (bench/reconnect.py)."""
    from server.serve import ServeCommand

    settings.WEBSOCKET_CONNECT_TIMEOUT = 45
    default = ServeCommand().parser.parse_args(["server.asgi:application"])
    given = ServeCommand().parser.parse_args(
        ["--websocket_connect_timeout", "7", "server.asgi:application"]
    )

    assert (default.websocket_connect_timeout, given.websocket_connect_timeout) == (45, 7)


def test_the_server_freezes_what_it_imported_out_of_the_garbage_collectors_way():
    """Full collections walking the startup heap were a chat list's slowest requests."""
    result = subprocess.run(
        [sys.executable, "-c", "import gc, server.asgi; print(gc.get_freeze_count())"],
        cwd=ROOT,
        env={**os.environ, "SECRET_KEY": "x", "DATABASE_URL": "", "REDIS_URL": ""},
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(result.stdout) > 100_000
