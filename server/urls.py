from django.conf import settings
from django.contrib import admin
from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from schema import schema
from server import media
from server.metrics import metrics
from server.views import HTTP_SUBSCRIPTION_PROTOCOLS, GraphQLView, healthz

urlpatterns = [
    # CSRF is checked inside the view, for cookie-authenticated requests only. With or
    # without the slash: a redirect would turn a browser's POST into a GET.
    re_path(
        r"^graphql/?$",
        csrf_exempt(
            GraphQLView.as_view(
                schema=schema,
                graphql_ide="graphiql" if settings.GRAPHIQL else None,
                # Subscriptions over HTTP: multipart/mixed (Apollo's HttpLink) and
                # text/event-stream (urql's fetchSubscriptions, graphql-sse).
                subscription_protocols=HTTP_SUBSCRIPTION_PROTOCOLS,
                # File uploads by the GraphQL multipart request spec (apollo-upload-client,
                # urql); CSRF for cookie sessions is checked in the view (`csrf_refusal`).
                multipart_uploads_enabled=True,
            )
        ),
    ),
    path("healthz", healthz),
    path("metrics", metrics),
    # Uploaded files, by signed URL only (chat.storage); on S3 the bucket serves them.
    path("media/<path:name>", media.serve, name="media"),
    path("admin/", admin.site.urls),
]
