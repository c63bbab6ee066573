"""ASGI entry point: HTTP to Django, WebSocket `/graphql/` to the GraphQL consumer.

HTTP GraphQL goes through Django's view, not Channels' HTTP consumer, because that one
skips Django's middleware (sessions, CSRF, body-size limits).
"""

import gc
import os
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "server.settings")
django.setup(set_prefix=False)

from server.handler import PooledASGIHandler  # noqa: E402

# Django's handler, with requests' sync work on a bounded set of threads (server.handler).
django_application = PooledASGIHandler()

# Imported after Django is set up: they load models.
from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from schema import schema  # noqa: E402
from server.bodylimit import BodyLimit  # noqa: E402
from server.collector import pace_full_walks  # noqa: E402
from server.consumers import GraphQLConsumer  # noqa: E402
from server.sessions import websocket_endpoint  # noqa: E402

graphql_consumer = websocket_endpoint(
    r"^graphql/?$",
    GraphQLConsumer,
    schema=schema,
    connection_init_wait_timeout=timedelta(seconds=settings.GRAPHQL_WS_CONNECTION_INIT_TIMEOUT),
    max_subscriptions_per_connection=settings.GRAPHQL_WS_MAX_SUBSCRIPTIONS,
    # Browsers on these origins may connect; same-origin pages and clients that send no
    # Origin (native apps, servers) always may. Checked before anything else runs.
    allowed_origins=settings.ALLOWED_ORIGINS,
)

application = ProtocolTypeRouter(
    {
        "http": BodyLimit(
            ASGIStaticFilesHandler(django_application)
            if settings.SERVE_STATIC
            else django_application
        ),
        # The session only, not Channels' AuthMiddleware: that looks the user up (and
        # reopens a database connection) on every handshake, where most sockets sign in
        # with a token; the consumer reads the session only for sockets that send none.
        "websocket": graphql_consumer,
    }
)

# Everything imported so far (Django, the schema, graphql-core's and Strawberry's types)
# lives as long as the process. Freezing it keeps the garbage collector's full collections
# from walking it again and again: they were the slowest requests (a chat list's p99 at
# 66 ms against a 18 ms median, 20 ms frozen; bench/RESULTS.md, issue 14).
gc.freeze()
if settings.GC_FREEZE:
    pace_full_walks()
