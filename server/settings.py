"""Settings, all read from the environment (see `.env.example`).

With nothing set the project runs embedded: SQLite, the in-memory channel layer and a
local-memory cache, which is right for one process. `DATABASE_URL` and `REDIS_URL` switch
to PostgreSQL and Redis, which several daphne processes can share.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = env_str(name).lower()
    if not value:
        return default
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, got {value!r}")


def env_int(name: str, default: int) -> int:
    value = env_str(name)
    try:
        return int(value) if value else default
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from error


def env_float(name: str, default: float) -> float:
    value = env_str(name)
    try:
        return float(value) if value else default
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from error


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG")

SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required when DEBUG is off.")
    SECRET_KEY = "insecure-development-key-never-use-in-production"  # noqa: S105

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
# Browser origins allowed to open a WebSocket or send a cross-site request: the WebSocket
# origin check, CORS (django-cors-headers) and CSRF all read this one list.
ALLOWED_ORIGINS = env_list("ALLOWED_ORIGINS")
CSRF_TRUSTED_ORIGINS = ALLOWED_ORIGINS
CORS_ALLOWED_ORIGINS = ALLOWED_ORIGINS
# Cookies (a session signed in at /admin/) may travel, but only to listed origins.
CORS_ALLOW_CREDENTIALS = True
# The API and uploaded media; the admin and GraphiQL are same-origin pages.
CORS_URLS_REGEX = r"^/(graphql/?|media/.*)$"
CORS_ALLOW_HEADERS = (
    "accept",
    "authorization",
    "content-type",
    "x-csrftoken",
    # Apollo Client's upload link and its CSRF prevention; urql and Apollo name operations.
    "apollo-require-preflight",
    "x-apollo-operation-name",
    "graphql-preflight",
)
# Clients read Retry-After on a 503 (and a RATE_LIMITED error carries retryAfter too).
CORS_EXPOSE_HEADERS = ("retry-after",)
CORS_PREFLIGHT_MAX_AGE = 86400

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "corsheaders",
    "strawberry.django",
    "strawberry_django",
    "django_tasks",
    "django_tasks_db",
    "chat",
]

# Django's own, run on the event loop rather than a thread hop per method (server.middleware).
MIDDLEWARE = [
    "server.middleware.SecurityMiddleware",
    # Before anything that may answer: a preflight is answered here, and every answer to a
    # listed origin (errors included) carries its CORS headers.
    "corsheaders.middleware.CorsMiddleware",
    "server.middleware.SessionMiddleware",
    "server.middleware.CommonMiddleware",
    "server.middleware.CsrfViewMiddleware",
    "server.middleware.AuthenticationMiddleware",
    "server.middleware.MessageMiddleware",
    "server.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "server.urls"
ASGI_APPLICATION = "server.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "server" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------

# Requests run their sync work (ORM, resolvers) on at most this many threads per process,
# each keeping its own database connection for DATABASE_CONN_MAX_AGE seconds (server.handler).
HTTP_SYNC_THREADS = env_int("HTTP_SYNC_THREADS", 8)
# Django's own connection pool, per process; psycopg 3 only (psycopg2-binary, the default
# driver, has none: use DATABASE_CONN_MAX_AGE or PgBouncer with it).
DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 0)
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        # Reused: a new PostgreSQL connection per request doubled the latency of a small
        # query (bench/RESULTS.md). Bounded threads keep it to HTTP_SYNC_THREADS + 1 per
        # process. Django's pool (DATABASE_POOL_SIZE) replaces it.
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0 if DATABASE_POOL_SIZE else 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's backend, with the health check asked of the socket (no `SELECT 1` per
    # request unless the server has sent something): server/postgresql/base.py.
    DATABASES["default"]["ENGINE"] = "server.postgresql"
    # An unreachable database fails a request in seconds (SERVICE_UNAVAILABLE), not after
    # the operating system's TCP timeout.
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int(
        "DATABASE_CONNECT_TIMEOUT", 5
    )
    # PgBouncer in transaction mode gives each transaction whichever server connection is
    # free, so a named server-side cursor (QuerySet.iterator()) would not outlive it.
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = env_bool("DATABASE_PGBOUNCER")
    if DATABASE_POOL_SIZE:
        try:
            import psycopg_pool  # noqa: F401 - the pool Django uses
            from psycopg import __version__  # noqa: F401 - Django prefers psycopg 3 when present
        except ImportError as error:
            raise ImproperlyConfigured(
                "DATABASE_POOL_SIZE needs psycopg 3 with its pool: "
                "pip install 'psycopg[binary,pool]' (see the README)"
            ) from error
        if DATABASES["default"]["CONN_MAX_AGE"]:
            raise ImproperlyConfigured(
                "DATABASE_POOL_SIZE and DATABASE_CONN_MAX_AGE exclude each other"
            )
        DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_SIZE}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN,
    # so concurrent writers queue on `timeout` instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "chat.User"

# --- Channel layer and cache ----------------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYER_PREFIX = env_str("CHANNEL_LAYER_PREFIX", "chat")

# The Redis layer: `channels_redis.core.RedisChannelLayer` (lists per channel, groups as
# sorted sets) or `channels_redis.pubsub.RedisPubSubChannelLayer` (Redis pub/sub). The
# README's "Scaling out" says which is the default and why (bench/fanout.py measured both).
CHANNEL_LAYER_BACKEND = env_str(
    "CHANNEL_LAYER_BACKEND", "channels_redis.pubsub.RedisPubSubChannelLayer"
)

# Seconds between each process's probes of the channel layer: while a probe fails, and
# once it works again, subscriptions catch up from the database (schema.fanout).
CHANNEL_LAYER_PROBE_INTERVAL = env_float("CHANNEL_LAYER_PROBE_INTERVAL", 2)
# Seconds to wait for Redis to accept a connection (and, for the cache, to answer): an
# unreachable Redis must degrade a request (rate limits in memory, events replayed from
# the database), not hang it for the operating system's TCP timeout.
REDIS_TIMEOUT = env_float("REDIS_TIMEOUT", 2)
# Redis connections per process for cache commands made on the event loop (the query
# budget, persisted documents, typing): a burst of requests waits for one of these.
CACHE_REDIS_CONNECTIONS = env_int("CACHE_REDIS_CONNECTIONS", 32)

if REDIS_URL:
    redis_host = {"address": REDIS_URL, "socket_connect_timeout": REDIS_TIMEOUT}
    if CHANNEL_LAYER_BACKEND.endswith("RedisPubSubChannelLayer"):
        # Pub/sub keeps no queues, so it has neither a capacity nor a group expiry.
        layer_config = {"hosts": [redis_host], "prefix": CHANNEL_LAYER_PREFIX}
    else:
        layer_config = {
            "hosts": [redis_host],
            "prefix": CHANNEL_LAYER_PREFIX,
            # The default of 100 is per channel: a subscriber that falls 100 events behind
            # would lose the rest. Group membership must outlive daphne's websocket timeout
            # (one day by default) or long-lived subscriptions go deaf; sockets also renew
            # their groups with every presence heartbeat.
            "capacity": env_int("CHANNEL_LAYER_CAPACITY", 5000),
            "group_expiry": env_int("CHANNEL_LAYER_GROUP_EXPIRY", 86400 * 2),
        }
    CHANNEL_LAYERS = {"default": {"BACKEND": CHANNEL_LAYER_BACKEND, "CONFIG": layer_config}}
    CACHES = {
        "default": {
            "BACKEND": "server.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": CHANNEL_LAYER_PREFIX,
            "OPTIONS": {"socket_connect_timeout": REDIS_TIMEOUT, "socket_timeout": REDIS_TIMEOUT},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            "CONFIG": {"capacity": env_int("CHANNEL_LAYER_CAPACITY", 5000)},
        }
    }
    CACHES = {"default": {"BACKEND": "server.cache.LocMemCache"}}

# --- Auth -----------------------------------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTH_TOKEN_TTL = timedelta(days=env_int("AUTH_TOKEN_TTL_DAYS", 30))
# Tokens each process keeps after checking them, so a request skips the database
# (chat.tokencache): how many (0 turns the cache off), and how long one is trusted at most.
# Revocations and user changes evict at once in every process through the channel layer;
# the age bounds what a broadcast lost without a detected layer outage could leave.
AUTH_TOKEN_CACHE_SIZE = env_int("AUTH_TOKEN_CACHE_SIZE", 10_000)
AUTH_TOKEN_CACHE_SECONDS = env_float("AUTH_TOKEN_CACHE_SECONDS", 300)
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)
# Where the emailed link points: the frontend page that reads `uid` and `token`.
PASSWORD_RESET_URL = env_str("PASSWORD_RESET_URL", "http://localhost:3000/reset-password")

# Failed logins allowed per (email, client address) and per client address in one window.
LOGIN_RATE_LIMIT = env_int("LOGIN_RATE_LIMIT", 5)
LOGIN_RATE_LIMIT_PER_ADDRESS = env_int("LOGIN_RATE_LIMIT_PER_ADDRESS", 30)
LOGIN_RATE_WINDOW = env_int("LOGIN_RATE_WINDOW", 900)
# Past this many failures for one email from anywhere, each further attempt from an
# address that never signed in to it waits twice as long as the last (1 s, 2 s, 4 s ... up
# to LOGIN_EMAIL_MAX_DELAY): guessing slows down, the owner is never locked out.
LOGIN_EMAIL_DELAY_AFTER = env_int("LOGIN_EMAIL_DELAY_AFTER", 10)
LOGIN_EMAIL_MAX_DELAY = env_int("LOGIN_EMAIL_MAX_DELAY", 60)
# Reset emails per address and per client in one window (against mail bombing).
PASSWORD_RESET_RATE_LIMIT = env_int("PASSWORD_RESET_RATE_LIMIT", 3)
PASSWORD_RESET_RATE_LIMIT_PER_ADDRESS = env_int("PASSWORD_RESET_RATE_LIMIT_PER_ADDRESS", 30)
PASSWORD_RESET_RATE_WINDOW = env_int("PASSWORD_RESET_RATE_WINDOW", 3600)
REGISTER_RATE_LIMIT_PER_ADDRESS = env_int("REGISTER_RATE_LIMIT_PER_ADDRESS", 20)
REGISTER_RATE_WINDOW = env_int("REGISTER_RATE_WINDOW", 3600)

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# --- GraphQL --------------------------------------------------------------------------

GRAPHIQL = env_bool("GRAPHIQL", DEBUG)
GRAPHQL_INTROSPECTION = env_bool("GRAPHQL_INTROSPECTION", DEBUG or GRAPHIQL)
GRAPHQL_MAX_DEPTH = env_int("GRAPHQL_MAX_DEPTH", 12)
GRAPHQL_MAX_ALIASES = env_int("GRAPHQL_MAX_ALIASES", 30)
GRAPHQL_MAX_TOKENS = env_int("GRAPHQL_MAX_TOKENS", 4000)
# Fields a document selects once every fragment spread is inlined (schema.limits).
GRAPHQL_MAX_SELECTIONS = env_int("GRAPHQL_MAX_SELECTIONS", 2000)
# The query budget per user (per client address when signed out): an operation costs what
# it can return (schema.limits); a burst, then a steady rate.
GRAPHQL_COST_RATE_BURST = env_int("GRAPHQL_COST_RATE_BURST", 20000)
GRAPHQL_COST_RATE_PER_SECOND = env_float("GRAPHQL_COST_RATE_PER_SECOND", 2000)
# Apollo's automatic persisted queries are kept this long in the shared cache.
APQ_TTL = env_int("APQ_TTL", 7 * 86400)
# A manifest of the documents the clients were built with (Apollo's persisted-query
# manifest, or {sha256: document}): when set, only those run (schema.persisted).
GRAPHQL_TRUSTED_DOCUMENTS = env_str("GRAPHQL_TRUSTED_DOCUMENTS")
# Seconds daphne (`python -m server.serve`) lets a WebSocket handshake wait to be accepted.
WEBSOCKET_CONNECT_TIMEOUT = env_int("WEBSOCKET_CONNECT_TIMEOUT", 30)
# Seconds between daphne's pings on each open WebSocket (its keep-alive and dead-peer check).
WEBSOCKET_PING_INTERVAL = env_int("WEBSOCKET_PING_INTERVAL", 20)
# Connections the kernel queues for `server.serve` before it accepts them (Twisted's
# default is 50; the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = env_int("LISTEN_BACKLOG", 4096)
GRAPHQL_WS_CONNECTION_INIT_TIMEOUT = env_int("GRAPHQL_WS_CONNECTION_INIT_TIMEOUT", 10)
GRAPHQL_WS_MAX_SUBSCRIPTIONS = env_int("GRAPHQL_WS_MAX_SUBSCRIPTIONS", 50)
# Open sockets per signed-in user (across processes) and per client address (per
# process); past either a socket is closed 4429.
GRAPHQL_WS_MAX_SOCKETS_PER_USER = env_int("GRAPHQL_WS_MAX_SOCKETS_PER_USER", 20)
GRAPHQL_WS_MAX_SOCKETS_PER_ADDRESS = env_int("GRAPHQL_WS_MAX_SOCKETS_PER_ADDRESS", 200)

STRAWBERRY_DJANGO = {
    "MUTATIONS_DEFAULT_HANDLE_ERRORS": True,
    "FIELD_DESCRIPTION_FROM_HELP_TEXT": True,
    "TYPE_DESCRIPTION_FROM_MODEL_DOCSTRING": True,
}

HEALTHZ_TIMEOUT = env_int("HEALTHZ_TIMEOUT", 3)
# `/metrics` (Prometheus) answers only requests bearing this token; empty turns it off.
METRICS_TOKEN = env_str("METRICS_TOKEN")

DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 1024 * 1024)

# --- The server process (server/serve.py) ---------------------------------------------

# A request body larger than this is refused (413) from its Content-Length, or as it
# streams, before daphne holds it in memory.
HTTP_MAX_BODY_SIZE = env_int("HTTP_MAX_BODY_SIZE", DATA_UPLOAD_MAX_MEMORY_SIZE)
# Bytes a WebSocket may have waiting to be written to a client that does not read; past
# it the socket is closed 1013 (try again later) and the client resumes with `after`.
WEBSOCKET_MAX_BUFFERED_BYTES = env_int("WEBSOCKET_MAX_BUFFERED_BYTES", 1024 * 1024)
# Seconds a process given SIGTERM waits for requests in flight before it exits.
SHUTDOWN_TIMEOUT = env_int("SHUTDOWN_TIMEOUT", 20)

# --- Email ----------------------------------------------------------------------------

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS")
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Chat <no-reply@localhost>")

# --- Static and media -----------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "server" / "static"]
# Serve /static/ from the ASGI app itself; turn off when a proxy or CDN serves it.
SERVE_STATIC = env_bool("SERVE_STATIC", True)
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT") or BASE_DIR / "media")

# Uploaded files (attachments and avatars) go through Django's storage API: the filesystem
# under MEDIA_ROOT by default, served by the app at /media/ behind signed, expiring URLs;
# an S3-compatible bucket when S3_BUCKET is set (django-storages), served by presigned
# URLs straight from the bucket. Several machines need the bucket: MEDIA_ROOT is local.
S3_BUCKET = env_str("S3_BUCKET")
STORAGES = {
    "default": (
        {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": S3_BUCKET,
                "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
                "region_name": env_str("S3_REGION") or None,
                "access_key": env_str("S3_ACCESS_KEY_ID") or None,
                "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
                # Objects are private; every URL the API gives out is presigned.
                "default_acl": None,
                "querystring_auth": True,
                "file_overwrite": False,
                "addressing_style": env_str("S3_ADDRESSING_STYLE") or None,
                "signature_version": "s3v4",
            },
        }
        if S3_BUCKET
        else {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    ),
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# The scheme and host media URLs start with (https://chat.example.com); by default the
# host each request or socket came in on. Set it behind a proxy that rewrites Host.
MEDIA_BASE_URL = env_str("MEDIA_BASE_URL")
# Seconds a media URL given out by the API stays valid: long enough for a screen, short
# enough that a leaked link dies. URLs are stable within a quarter of this, so browsers
# cache the image across renders.
MEDIA_URL_TTL = env_int("MEDIA_URL_TTL", 3600)
# Largest file one upload may carry; the request around it may add HTTP_MAX_BODY_SIZE.
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 10 * 1024 * 1024)
# Largest image (width x height, summed over an animation's frames) that is decoded; a
# larger one is refused before decoding (a decompression bomb).
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 50_000_000)
# Images decoded at once per process (each in a worker thread): bounds upload memory.
UPLOAD_DECODE_CONCURRENCY = env_int("UPLOAD_DECODE_CONCURRENCY", 2)
# Stored images are scaled to fit this many pixels on the long side.
UPLOAD_IMAGE_MAX_SIDE = env_int("UPLOAD_IMAGE_MAX_SIDE", 4096)
# Django's multipart parser: files above this spill to a temporary file, not memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = env_int("FILE_UPLOAD_MAX_MEMORY_SIZE", 512 * 1024)
# Fewer parts than Django's defaults: an upload request is `operations`, `map`, a file.
DATA_UPLOAD_MAX_NUMBER_FILES = env_int("DATA_UPLOAD_MAX_NUMBER_FILES", 4)
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 20)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Logging --------------------------------------------------------------------------

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}

# --- Chats ----------------------------------------------------------------------------

MESSAGE_MAX_LENGTH = env_int("MESSAGE_MAX_LENGTH", 4000)
# Writes a user may repeat: `<NAME>_RATE_BURST` at once, then `<NAME>_RATE_PER_SECOND`
# (token buckets shared across processes through Redis; chat.ratelimit.hit(name, user)).
SEND_RATE_BURST = env_int("SEND_RATE_BURST", 20)  # sendMessage
SEND_RATE_PER_SECOND = env_float("SEND_RATE_PER_SECOND", 1)
UPLOAD_RATE_BURST = env_int("UPLOAD_RATE_BURST", 10)  # sendAttachment, avatars (and SEND)
UPLOAD_RATE_PER_SECOND = env_float("UPLOAD_RATE_PER_SECOND", 0.2)
EDIT_RATE_BURST = env_int("EDIT_RATE_BURST", 20)  # editMessage, deleteMessage
EDIT_RATE_PER_SECOND = env_float("EDIT_RATE_PER_SECOND", 0.5)
ROOM_RATE_BURST = env_int("ROOM_RATE_BURST", 5)  # createRoom, updateRoom
ROOM_RATE_PER_SECOND = env_float("ROOM_RATE_PER_SECOND", 1 / 60)
MEMBERSHIP_RATE_BURST = env_int("MEMBERSHIP_RATE_BURST", 30)  # join, leave, add, remove, DMs
MEMBERSHIP_RATE_PER_SECOND = env_float("MEMBERSHIP_RATE_PER_SECOND", 0.5)
PROFILE_RATE_BURST = env_int("PROFILE_RATE_BURST", 10)  # updateProfile, changePassword
PROFILE_RATE_PER_SECOND = env_float("PROFILE_RATE_PER_SECOND", 0.1)
READ_RATE_BURST = env_int("READ_RATE_BURST", 120)  # markRead
READ_RATE_PER_SECOND = env_float("READ_RATE_PER_SECOND", 5)
REACTION_RATE_BURST = env_int("REACTION_RATE_BURST", 30)  # addReaction, removeReaction
REACTION_RATE_PER_SECOND = env_float("REACTION_RATE_PER_SECOND", 2)
# Distinct emoji one message may carry (each may be given by any number of members).
REACTION_MAX_DISTINCT = env_int("REACTION_MAX_DISTINCT", 20)
PIN_MAX = env_int("PIN_MAX", 50)  # pinned messages per chat
MENTION_MAX = env_int("MENTION_MAX", 50)  # members one message may mention
REPORT_RATE_BURST = env_int("REPORT_RATE_BURST", 10)  # reportMessage
REPORT_RATE_PER_SECOND = env_float("REPORT_RATE_PER_SECOND", 0.05)
BLOCK_RATE_BURST = env_int("BLOCK_RATE_BURST", 20)  # blockUser, unblockUser, hideChat
BLOCK_RATE_PER_SECOND = env_float("BLOCK_RATE_PER_SECOND", 0.2)
SEARCH_RATE_BURST = env_int("SEARCH_RATE_BURST", 30)  # users(search:), searchMessages
# searchMessages ranks at most this many of the newest matches (PostgreSQL).
SEARCH_CANDIDATES = env_int("SEARCH_CANDIDATES", 1000)
SEARCH_RATE_PER_SECOND = env_float("SEARCH_RATE_PER_SECOND", 1)
GRAPHQL_MAX_PAGE_SIZE = env_int("GRAPHQL_MAX_PAGE_SIZE", 100)
ROOM_MAX_MEMBERS = env_int("ROOM_MAX_MEMBERS", 10000)

# Presence: a socket's lease lasts PRESENCE_TTL seconds and is renewed every
# PRESENCE_HEARTBEAT; expired leases (a killed process) are swept every SWEEP_INTERVAL.
PRESENCE_TTL = env_int("PRESENCE_TTL", 45)
PRESENCE_HEARTBEAT = env_int("PRESENCE_HEARTBEAT", 15)
PRESENCE_SWEEP_INTERVAL = env_int("PRESENCE_SWEEP_INTERVAL", 10)
# How often users marked online in the database with no lease are marked offline.
PRESENCE_RECONCILE_INTERVAL = env_int("PRESENCE_RECONCILE_INTERVAL", 300)
# Presence changes are broadcast to direct chats and to rooms of at most this many members;
# in a room of N, N people connecting would cost N * N deliveries.
PRESENCE_ROOM_LIMIT = env_int("PRESENCE_ROOM_LIMIT", 200)
PRESENCE_REDIS_CONNECTIONS = env_int("PRESENCE_REDIS_CONNECTIONS", 32)
# Users coming online or going offline are written to the database and announced in
# batches gathered over this many seconds (one UPDATE per batch, not per user).
PRESENCE_FLUSH_DELAY = env_float("PRESENCE_FLUSH_DELAY", 0.1)
# A user whose last socket closed is announced offline only if no socket of theirs is
# back after this many seconds: a reconnect (a deploy, a network blip, a page reload)
# announces nothing, where it cost every member of every small chat two deliveries.
PRESENCE_OFFLINE_GRACE = env_float("PRESENCE_OFFLINE_GRACE", 10)
# Typing: an indicator lasts TYPING_TTL seconds unless refreshed; a user's "typing" calls
# are accepted at most once per TYPING_THROTTLE seconds per chat ("stopped" always is).
TYPING_TTL = env_int("TYPING_TTL", 6)
TYPING_THROTTLE = env_int("TYPING_THROTTLE", 2)

# Garbage collection (server.collector): while sockets are open, freeze whatever survives
# into the oldest generation; walk everything again after GC_SOCKET_CHURN sockets (or a
# quarter of those held) have closed or opened, or every GC_FULL_INTERVAL s at the latest.
GC_FREEZE = env_bool("GC_FREEZE", True)
GC_SOCKET_CHURN = env_int("GC_SOCKET_CHURN", 100)
GC_FULL_INTERVAL = env_float("GC_FULL_INTERVAL", 600)

# --- Push notifications (chat/push) ---------------------------------------------------

# Background work is queued in the project's database, in the transaction that causes it;
# `python manage.py db_worker` runs it.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
# Web Push (RFC 8291/8292). `python manage.py generate_vapid_keys` prints a pair; without
# one, browsers cannot subscribe (`vapidPublicKey` is null, `registerDevice` refuses).
VAPID_PUBLIC_KEY = env_str("VAPID_PUBLIC_KEY")
VAPID_PRIVATE_KEY = env_str("VAPID_PRIVATE_KEY")
VAPID_SUBJECT = env_str("VAPID_SUBJECT", "mailto:admin@example.com")
# Push services a browser subscription may point at (a host or a parent domain). Anything
# else is refused, so an endpoint cannot make the worker call into the private network.
# http:// is allowed only for a listed loopback host (tests, local development).
WEBPUSH_ENDPOINT_HOSTS = env_list(
    "WEBPUSH_ENDPOINT_HOSTS",
    "fcm.googleapis.com,push.services.mozilla.com,notify.windows.com,push.apple.com",
)
# FCM HTTP v1: a service-account key (a path to its JSON file, or the JSON itself).
FCM_CREDENTIALS = env_str("FCM_CREDENTIALS")
FCM_PROJECT_ID = env_str("FCM_PROJECT_ID")  # default: the service account's project
FCM_BASE_URL = env_str("FCM_BASE_URL", "https://fcm.googleapis.com").rstrip("/")
PUSH_TTL = env_int("PUSH_TTL", 86400)  # how long a push service keeps an undelivered one
PUSH_TIMEOUT = env_float("PUSH_TIMEOUT", 10)
PUSH_MAX_ATTEMPTS = env_int("PUSH_MAX_ATTEMPTS", 5)
PUSH_RETRY_DELAY = env_float("PUSH_RETRY_DELAY", 10)  # doubled after each failed attempt
PUSH_RETRY_MAX_DELAY = env_float("PUSH_RETRY_MAX_DELAY", 3600)  # Retry-After is capped too
PUSH_BATCH_SIZE = env_int("PUSH_BATCH_SIZE", 100)  # devices per delivery task
PUSH_CONCURRENCY = env_int("PUSH_CONCURRENCY", 8)  # requests in flight per delivery task
PUSH_PREVIEW_LENGTH = env_int("PUSH_PREVIEW_LENGTH", 120)
PUSH_MAX_DEVICES_PER_USER = env_int("PUSH_MAX_DEVICES_PER_USER", 10)
# registerDevice, unregisterDevice, muteChat, unmuteChat
NOTIFICATION_RATE_BURST = env_int("NOTIFICATION_RATE_BURST", 20)
NOTIFICATION_RATE_PER_SECOND = env_float("NOTIFICATION_RATE_PER_SECOND", 0.2)
