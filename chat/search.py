"""Finding messages by their words, in the chats a user is in.

On PostgreSQL: the message's tsvector (kept by a trigger, GIN-indexed), the query read by
`websearch_to_tsquery` ("quoted phrases", OR, -word, as people type into search boxes),
ranked by cover density plus a bonus for the words as typed, in order and adjacent (the
exact phrase first, then words close together) among the newest `SEARCH_CANDIDATES`
matches, and cut into
a highlighted snippet by `ts_headline`. On the embedded SQLite default: every word must
appear (case-insensitively), newest first, snippets cut here. The API is the same.
"""

import html
import re

from django.conf import settings
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, FloatField, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Replace

from chat.models import Membership, Message, User

QUERY_MAX = 200
CONFIG = "simple"
# Around each match in a snippet; replaced by <mark> once the rest is escaped.
START, STOP = "\ue000", "\ue001"
# ts_headline drops what looks like HTML tags: angle brackets go in disguised, come back.
LT, GT = "\ue002", "\ue003"
SNIPPET_WORDS = 24
_WORD = re.compile(r"\w+", re.UNICODE)


def _postgresql() -> bool:
    return connection.vendor == "postgresql"


def search(*, viewer: User, query: str, chat_id: object | None = None) -> QuerySet[Message]:
    """The viewer's messages matching `query`, best first, each annotated `rank` and
    `headline` (PostgreSQL; else None). Never a deleted message, never a chat the viewer
    is not in. Precondition: `query` is cleaned (non-empty, at most QUERY_MAX)."""
    messages = Message.objects.filter(
        chat__in=Membership.objects.filter(user=viewer).values("chat_id"),
        deleted_at__isnull=True,
        kind__in=[Message.Kind.TEXT, Message.Kind.IMAGE, Message.Kind.FILE],
    )
    if chat_id is not None:
        messages = messages.filter(chat_id=chat_id)
    if _postgresql():
        terms = SearchQuery(query, search_type="websearch", config=CONFIG)
        # The words in the order typed, next to each other, earn a second rank on top.
        phrase = SearchQuery(query, search_type="phrase", config=CONFIG)
        vector = F("search_vector")
        # Ranking reads every candidate's tsvector: rank the newest matches only, so a
        # word found in a hundred thousand messages costs what one in a thousand does.
        newest = (
            messages.filter(search_vector=terms)
            .order_by("-created_at", "-id")
            .values("pk")[: settings.SEARCH_CANDIDATES]
        )
        return Message.objects.filter(pk__in=newest).annotate(
            # As float8, so a rank read back from a cursor compares equal to itself.
            rank=Cast(
                SearchRank(vector, terms, cover_density=True)
                + SearchRank(vector, phrase, cover_density=True),
                FloatField(),
            ),
            headline=SearchHeadline(
                Replace(Replace("body", Value("<"), Value(LT)), Value(">"), Value(GT)),
                terms,
                config=CONFIG,
                start_sel=START,
                stop_sel=STOP,
                max_words=SNIPPET_WORDS,
                min_words=8,
            ),
        )
    words = _words(query)
    condition = Q()
    for word in words:
        condition &= Q(body__icontains=word)
    return messages.filter(condition).annotate(
        rank=Value(0.0, output_field=FloatField()),
        headline=Value(None, output_field=TextField()),
    )


def _words(query: str) -> list[str]:
    return [w for w in _WORD.findall(query.lower()) if w] or [query.strip().lower()]


def snippet(message: Message, query: str) -> str:
    """The message's text around its matches, HTML-escaped, matches in <mark>: safe to set
    as innerHTML."""
    headline = getattr(message, "headline", None)
    if headline is None:
        headline = _cut(message.body, _words(query))
    escaped = html.escape(headline.replace(LT, "<").replace(GT, ">"))
    return escaped.replace(START, "<mark>").replace(STOP, "</mark>")


def _cut(body: str, words: list[str]) -> str:
    """About SNIPPET_WORDS words of `body` from just before the first match, with every
    match marked (the embedded default's ts_headline)."""
    lowered = body.lower()
    first = min((i for w in words if (i := lowered.find(w)) >= 0), default=0)
    tokens = body[first:].split()
    before = body[:first].split()[-4:]
    text = " ".join(before + tokens[: SNIPPET_WORDS - len(before)])
    pattern = re.compile(
        "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I
    )
    return pattern.sub(lambda m: f"{START}{m.group(0)}{STOP}", text)
