"""The PostgreSQL backend's health check (server/postgresql/base.py): a reused connection
is checked by its socket, and one the server ended is still replaced before it is used."""

import time

import psycopg2
import pytest
from django.db import connections
from django.db.backends.postgresql import base

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def postgres():
    connection = connections["default"]
    if connection.vendor != "postgresql":
        pytest.skip("needs DATABASE_URL: runs in the PostgreSQL + Redis pass")
    connection.ensure_connection()
    settings_dict = connection.settings_dict
    health_checks = settings_dict["CONN_HEALTH_CHECKS"]
    settings_dict["CONN_HEALTH_CHECKS"] = True
    connection.health_check_enabled = True
    yield connection
    settings_dict["CONN_HEALTH_CHECKS"] = health_checks
    connection.health_check_enabled = health_checks


@pytest.fixture
def long_checks(monkeypatch) -> list[int]:
    """Each `SELECT 1` health check Django's backend runs."""
    checks: list[int] = []
    is_usable = base.DatabaseWrapper.is_usable

    def counted(self) -> bool:
        checks.append(1)
        return is_usable(self)

    monkeypatch.setattr(base.DatabaseWrapper, "is_usable", counted)
    return checks


def a_new_request(wrapper) -> None:
    """What `request_started` does for a reused connection, then the request's query."""
    wrapper.health_check_done = False
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_live_connection_is_reused_without_a_round_trip(postgres, long_checks):
    assert type(postgres).__module__ == "server.postgresql.base"
    first = a_new_request(postgres)
    for _ in range(3):
        assert a_new_request(postgres) == first
    assert long_checks == []


def test_a_connection_the_server_ended_is_replaced_before_the_request_uses_it(
    postgres, long_checks
):
    ended = a_new_request(postgres)
    params = postgres.get_connection_params()
    admin = psycopg2.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [ended])
    admin.close()
    deadline = time.monotonic() + 5
    while postgres._nothing_to_read() and time.monotonic() < deadline:
        time.sleep(0.01)  # the server's goodbye is on its way

    replaced = a_new_request(postgres)  # no error: checked the long way, and reconnected

    assert replaced != ended
    assert long_checks == [1]


def test_uuids_read_from_postgresql_are_the_uuids_uuid_parses():
    import pickle
    import uuid

    from server.postgresql.base import read_uuid

    values = [uuid.uuid4() for _ in range(200)] + [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1)]
    for value in values:
        read = read_uuid(str(value))
        assert type(read) is uuid.UUID
        assert read == value
        assert hash(read) == hash(value)
        assert str(read) == str(value)
        assert read.version == value.version
        assert pickle.loads(pickle.dumps(read)) == value  # noqa: S301 - our own bytes
    assert read_uuid(None) is None


def test_a_query_returns_uuids_and_arrays_of_them(postgres):
    import uuid

    one, two = uuid.uuid4(), uuid.uuid4()
    with postgres.cursor() as cursor:
        cursor.execute("SELECT %s::uuid, %s::uuid[], NULL::uuid", [one, [one, two]])
        single, array, null = cursor.fetchone()

    assert (single, array, null) == (one, [one, two], None)
    assert type(single) is uuid.UUID
    assert all(type(value) is uuid.UUID for value in array)
