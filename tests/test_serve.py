"""server.serve: daphne's listening endpoints get a backlog a reconnect storm fits in."""

import pytest

from server.serve import GracefulServer, with_backlog


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("tcp:port=8000:interface=127.0.0.1", "tcp:port=8000:interface=127.0.0.1:backlog=2048"),
        ("unix:/run/chat.sock", "unix:/run/chat.sock:backlog=2048"),
        ("tcp:port=8000:backlog=10", "tcp:port=8000:backlog=10"),  # its own is kept
        ("fd:fileno=3:domain=INET", "fd:fileno=3:domain=INET"),  # already listening
    ],
)
def test_an_endpoint_gets_the_backlog_unless_it_names_one(endpoint, expected):
    assert with_backlog(endpoint, 2048) == expected


def test_the_server_listens_with_the_configured_backlog(settings):
    settings.LISTEN_BACKLOG = 4096
    server = GracefulServer(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])

    assert server.endpoints == ["tcp:port=0:interface=127.0.0.1:backlog=4096"]
