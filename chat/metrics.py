"""What an operator scrapes from `/metrics` (Prometheus's text format).

The same figures the benchmarks print: open sockets, live subscriptions, events written
to sockets directly by the fan-out hub or queued for a subscription's generator,
`sendMessage` and connect latency, channel-layer errors, subscriptions resumed with
`after` (reconnects), and the push queue's depth.

Several processes on one machine share `PROMETHEUS_MULTIPROC_DIR` (prometheus-client's
multiprocess mode: set it, to an empty directory, before the processes start), so one
scrape of any of them reports the machine's totals; gauges count live processes only.
Without it each process reports its own figures.
"""

from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Latency buckets from 2.5 ms to 10 s.
BUCKETS = (0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

OPEN_SOCKETS = Gauge(
    "chat_websockets_open",
    "Signed-in WebSockets open now.",
    multiprocess_mode="livesum",
)
SUBSCRIPTIONS = Gauge(
    "chat_subscriptions_active",
    "Subscriptions running now, on WebSocket and over HTTP.",
    multiprocess_mode="livesum",
)
DELIVERIES = Counter(
    "chat_deliveries",
    "Events for subscriptions: written as a frame executed once per query (direct: by "
    "the fan-out hub, or a replayed change while catching up) or queued for the "
    "subscription's own generator (queued).",
    ["path"],
)
SEND_SECONDS = Histogram(
    "chat_send_message_seconds",
    "Time to append a message (sendMessage): checks, the chat's row lock, insert, commit.",
    buckets=BUCKETS,
)
CONNECT_SECONDS = Histogram(
    "chat_websocket_connect_seconds",
    "From a socket's connection_init to its acknowledgement (token, caps, presence).",
    buckets=BUCKETS,
)
LAYER_ERRORS = Counter(
    "chat_channel_layer_errors",
    "Channel-layer failures: a publish that did not go out, or a failed probe.",
    ["operation"],
)
RESUMES = Counter(
    "chat_subscription_resumes",
    "chatEvents subscriptions that resumed with `after` (clients reconnecting).",
)
REFUSED_SOCKETS = Counter(
    "chat_websockets_refused",
    "Sockets closed at connection_init: signed out, over a cap, or a service down.",
    ["reason"],
)


class TaskQueue(Collector):
    """The push queue's depth, read from the database at scrape time (one table shared by
    every process, so it is reported once, not summed). Finished tasks are not counted:
    their rows stay until `prune_db_task_results`."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.db.models import Count
        from django_tasks.base import TaskResultStatus
        from django_tasks_db.models import DBTaskResult

        family = GaugeMetricFamily(
            "chat_tasks_pending",
            "Background tasks (push delivery) waiting or running.",
            labels=["status"],
        )
        counts = dict.fromkeys([TaskResultStatus.READY, TaskResultStatus.RUNNING], 0)
        rows = (
            DBTaskResult.objects.filter(status__in=list(counts))
            .values_list("status")
            .annotate(n=Count("pk"))
            .order_by()
        )
        counts.update(dict(rows))
        for status, count in counts.items():
            family.add_metric([str(status).lower()], count)
        yield family
