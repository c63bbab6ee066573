"""Settings for the test suite: the project's own, with test-only speed-ups."""

import os
import tempfile
import uuid
from pathlib import Path

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
# A prefix per test run keeps runs that share a Redis apart.
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"chat-test-{uuid.uuid4().hex[:8]}")

from server.settings import *  # noqa: F403

# The real hashers are slow on purpose; tests hash thousands of passwords.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
GRAPHQL_INTROSPECTION = True
GRAPHIQL = True
# Offline is announced at once, as most tests expect; the grace has tests of its own.
PRESENCE_OFFLINE_GRACE = 0
LOGGING["loggers"]["httpx"] = {"level": "WARNING"}  # noqa: F405

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, as the embedded server uses: an in-memory shared-cache database takes table
    # locks that ignore the busy timeout, which concurrent-writer tests would trip over.
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(tempfile.gettempdir(), f"chat-tests-{os.getpid()}.sqlite3")
    }

# Uploaded files of this run, apart from the development server's.
MEDIA_ROOT = Path(tempfile.mkdtemp(prefix="chat-media-tests-"))
