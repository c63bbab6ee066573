"""Settings for the test suite: the project's own, with test-only speed-ups."""

import os
import uuid

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")
# A prefix per test run keeps runs that share a Redis apart.
os.environ.setdefault("CHANNEL_LAYER_PREFIX", f"chat-test-{uuid.uuid4().hex[:8]}")

from server.settings import *  # noqa: F403

# The real hashers are slow on purpose; tests hash thousands of passwords.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
GRAPHQL_INTROSPECTION = True
GRAPHIQL = True
LOGGING["loggers"]["httpx"] = {"level": "WARNING"}  # noqa: F405
