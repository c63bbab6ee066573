"""`/metrics`: Prometheus's text format, for operators.

Off unless `METRICS_TOKEN` is set (404 otherwise), and then only with
`Authorization: Bearer <METRICS_TOKEN>`: the figures say how busy the service is, which is
nobody else's business. With `PROMETHEUS_MULTIPROC_DIR` set, any process answers for all
the processes of its machine (see `chat.metrics`).
"""

import os

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from chat.metrics import TaskQueue

_shared = CollectorRegistry()
_shared.register(TaskQueue())


def metrics(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if not token:
        raise Http404
    if not constant_time_compare(request.headers.get("Authorization", ""), f"Bearer {token}"):
        return HttpResponse(
            "Send Authorization: Bearer <METRICS_TOKEN>.\n",
            status=401,
            content_type="text/plain",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:
        processes = REGISTRY
    body = generate_latest(processes) + generate_latest(_shared)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
