import pytest

from tests.system.live import LiveStack, live_database

pytestmark = pytest.mark.system

# The system tier's socket timeout: short, so the test of it is quick.
CONNECTION_INIT_TIMEOUT = 2


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    with live_database(tmp) as database_url:
        stack = LiveStack(
            tmp, database_url, GRAPHQL_WS_CONNECTION_INIT_TIMEOUT=str(CONNECTION_INIT_TIMEOUT)
        )
        try:
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="session")
def daphne_server(live_stack):
    return live_stack.start()
