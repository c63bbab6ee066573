"""Persisted documents: Apollo's automatic persisted queries, and trusted documents.

Automatic persisted queries (APQ): a client sends `extensions.persistedQuery.sha256Hash`
without the query; a server that knows the hash runs the document it stored, else answers
`PersistedQueryNotFound` and the client sends the text with the hash once, which is checked
and stored. Documents live in the shared cache (Redis when configured), so every process
knows what any one of them learnt.

Trusted documents (`GRAPHQL_TRUSTED_DOCUMENTS`, a manifest file): in production the server
then runs only the documents its own clients were built with, by hash or by text; anything
else is refused. A stolen token can then only ask what the app itself asks.
"""

import hashlib
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.cache import cache as shared_cache
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

CACHE_PREFIX = "apq:"


class DocumentError(Exception):
    """A request's persisted-document extension cannot be honoured."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@cache
def _manifest(path: str) -> dict[str, str]:
    """hash -> document, from Apollo's persisted-query manifest
    (`{"operations": [{"id", "body"}]}`) or a plain `{hash: document}` object."""
    data = json.loads(Path(path).read_text())
    if isinstance(data, dict) and isinstance(data.get("operations"), list):
        documents = {op["id"]: op["body"] for op in data["operations"]}
    else:
        documents = dict(data)
    for digest, body in documents.items():
        if sha256(body) != digest:
            raise ValueError(f"{path}: the document listed as {digest} has another hash")
    return documents


def trusted_documents() -> dict[str, str] | None:
    path = settings.GRAPHQL_TRUSTED_DOCUMENTS
    return _manifest(path) if path else None


def _requested_hash(extensions: Any) -> str | None:
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is None:
        return None
    digest = persisted.get("sha256Hash") if isinstance(persisted, dict) else None
    if (
        not isinstance(persisted, dict)
        or persisted.get("version") != 1
        or not isinstance(digest, str)
        or len(digest) != 64
    ):
        raise DocumentError(
            "Unsupported persistedQuery: send version 1 and a sha256Hash.", "BAD_REQUEST"
        )
    return digest.lower()


async def resolve(query: str | None, extensions: Any) -> str | None:
    """The document to run for a request's `query` and `extensions`. Raises
    `DocumentError`: PERSISTED_QUERY_NOT_FOUND (send the text), BAD_REQUEST (a hash that
    does not match the text), TRUSTED_DOCUMENT_REQUIRED (not in the manifest)."""
    digest = _requested_hash(extensions)
    trusted = trusted_documents()
    if trusted is not None:
        document = trusted.get(digest) if digest else None
        if document is None and query is not None:
            document = trusted.get(sha256(query))
        if document is None:
            raise DocumentError(
                "This server runs only the documents its clients were built with.",
                "TRUSTED_DOCUMENT_REQUIRED",
            )
        return document
    if digest is None:
        return query
    if query:
        if sha256(query) != digest:
            raise DocumentError("provided sha does not match query", "BAD_REQUEST")
        await _store(digest, query)
        return query
    stored = await _load(digest)
    if stored is None:
        raise DocumentError("PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND")
    return stored


# Called on the event loop: the cache's async API (server.cache) never blocks it.
async def _store(digest: str, query: str) -> None:
    try:
        await shared_cache.aset(CACHE_PREFIX + digest, query, timeout=settings.APQ_TTL)
    except (RedisError, OSError) as error:  # the client sends the text again next time
        logger.warning("Could not store a persisted query: %s", error)


async def _load(digest: str) -> str | None:
    try:
        return await shared_cache.aget(CACHE_PREFIX + digest)
    except (RedisError, OSError) as error:
        logger.warning("Could not read a persisted query: %s", error)
        return None


def error_payload(error: DocumentError) -> dict[str, Any]:
    return {"message": error.message, "extensions": {"code": error.code}}
