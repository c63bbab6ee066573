"""Django's PostgreSQL backend, with the per-request health check asked of the socket.

With `CONN_HEALTH_CHECKS`, Django runs `SELECT 1` before each request's first query on a
reused connection: a round trip on every request, about a tenth of a history page's
database time and a third of a request that only checks a token. PostgreSQL ends a
connection (a restart, `pg_terminate_backend`, an idle timeout) by sending the reason and
closing the socket, so an idle connection with nothing to read is as alive as `SELECT 1`
would find it: only one with something to read, or that cannot be polled, is checked
the long way. A peer that vanished without closing (a cut network) passes both checks
alike; the request then fails as SERVICE_UNAVAILABLE and the connection is dropped.
"""

import select

from django.db.backends.postgresql import base


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
