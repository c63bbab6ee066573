import pytest

from tests.system.live import LiveStack, live_database

pytestmark = pytest.mark.system

# The system tier's timings: short, so the tests of them are quick.
CONNECTION_INIT_TIMEOUT = 2
PRESENCE_TTL, PRESENCE_HEARTBEAT, PRESENCE_SWEEP_INTERVAL = 3, 1, 1
PRESENCE_OFFLINE_GRACE = 1


@pytest.fixture(scope="session")
def live_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("live")
    with live_database(tmp) as database_url:
        stack = LiveStack(
            tmp,
            database_url,
            GRAPHQL_WS_CONNECTION_INIT_TIMEOUT=str(CONNECTION_INIT_TIMEOUT),
            PRESENCE_TTL=str(PRESENCE_TTL),
            PRESENCE_HEARTBEAT=str(PRESENCE_HEARTBEAT),
            PRESENCE_SWEEP_INTERVAL=str(PRESENCE_SWEEP_INTERVAL),
            PRESENCE_OFFLINE_GRACE=str(PRESENCE_OFFLINE_GRACE),
            SEND_RATE_BURST="1000",
            # Every system test signs people up from 127.0.0.1, through one shared cache.
            REGISTER_RATE_LIMIT_PER_ADDRESS="100000",
        )
        try:
            yield stack
        finally:
            stack.stop()


@pytest.fixture(scope="session")
def daphne_server(live_stack):
    return live_stack.start()
