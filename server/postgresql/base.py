"""Django's PostgreSQL backend, with the per-request health check asked of the socket,
and psycopg2's UUIDs read without parsing every form a UUID may be written in.

With `CONN_HEALTH_CHECKS`, Django runs `SELECT 1` before each request's first query on a
reused connection: one more round trip for every request that queries (PostgreSQL's
statement log showed a `SELECT 1` before each history page's statements). PostgreSQL ends a
connection (a restart, `pg_terminate_backend`, an idle timeout) by sending the reason and
closing the socket, so an idle connection with nothing to read is as alive as `SELECT 1`
would find it: only one with something to read, or that cannot be polled, is checked
the long way. A peer that vanished without closing (a cut network) passes both checks
alike; the request then fails as SERVICE_UNAVAILABLE and the connection is dropped.
"""

import select
import uuid
from typing import Any

from django.db.backends.postgresql import base
from django.db.backends.postgresql.psycopg_any import is_psycopg3

_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def read_uuid(text: str | None, cursor: Any = None) -> uuid.UUID | None:
    """The `uuid.UUID` PostgreSQL's text form of a uuid stands for.

    psycopg2's typecaster (`register_uuid`, which Django installs) calls `UUID(text)`,
    which accepts braces, URNs and any hyphens: 1.4 µs a value, where PostgreSQL only
    ever writes the canonical form. A chat list reads about 300 UUIDs, a history page 200.
    The same value (equal, same hash and text), in half the time."""
    if text is None:
        return None
    value = _new(uuid.UUID)
    _set(value, "int", int(text.replace("-", ""), 16))
    _set(value, "is_safe", _UNKNOWN)
    return value


if not is_psycopg3:
    from psycopg2 import extensions

    UUID_TYPE = extensions.new_type((2950,), "UUID", read_uuid)
    extensions.register_type(UUID_TYPE)
    extensions.register_type(extensions.new_array_type((2951,), "UUID[]", UUID_TYPE))


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is not None
            and self.health_check_enabled
            and not self.health_check_done
            and not self.pool
            and self._nothing_to_read()
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()

    def _nothing_to_read(self) -> bool:
        """The idle connection's socket is open and empty (the server sent nothing)."""
        try:
            if self.connection.closed:
                return False
            poll = select.poll()
            poll.register(self.connection.fileno(), select.POLLIN | select.POLLPRI)
            return not poll.poll(0)
        except (OSError, ValueError, self.Database.Error):
            return False
