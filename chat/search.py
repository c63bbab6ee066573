"""Finding messages by their words, in the chats a user is in.

On PostgreSQL: the message's tsvector (kept by a trigger, GIN-indexed), the query read by
`websearch_to_tsquery` ("quoted phrases", or, -word, as people type into search boxes),
ranked by cover density plus a bonus for the words as typed, in order and adjacent (the
exact phrase first, then words close together), among the newest `SEARCH_CANDIDATES`
matches, and cut into a highlighted snippet by `ts_headline`. On the embedded SQLite
default: the same syntax read here, every wanted word and phrase present and no excluded
one (case-insensitively for ASCII), newest first, snippets cut here. The API is the same.
"""

import html
import re

from django.conf import settings
from django.contrib.postgres.search import SearchHeadline, SearchQuery, SearchRank
from django.db import connection
from django.db.models import F, FloatField, Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Replace

from chat import ratelimit
from chat.models import Membership, Message, User
from chat.selectors import membership_for, with_related

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
    `headline` (PostgreSQL; else None), with what rendering them reads. Never a deleted
    message, never a chat the viewer is not in (`NotFound` for a `chat_id` they are not
    in). Spends the viewer's search limit. Precondition: `query` is cleaned (non-empty,
    at most QUERY_MAX)."""
    if chat_id is not None:
        chat_id = membership_for(user=viewer, chat_id=chat_id).chat_id
    ratelimit.hit("search", viewer)
    return with_related(_matching(viewer, query, chat_id))


def _matching(viewer: User, query: str, chat_id: object | None) -> QuerySet[Message]:
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
    return messages.filter(_websearch(query)).annotate(
        rank=Value(0.0, output_field=FloatField()),
        headline=Value(None, output_field=TextField()),
    )


# A "quoted phrase", a -excluded term, or a plain term (websearch_to_tsquery's syntax).
_TERM = re.compile(r'(-?)"([^"]*)"?|(-?)(\S+)')


def _terms(query: str) -> list[list[tuple[bool, str]]]:
    """The query as websearch_to_tsquery reads it: alternatives separated by `or`, each a
    list of (wanted, text) terms that must all hold."""
    alternatives: list[list[tuple[bool, str]]] = [[]]
    for match in _TERM.finditer(query.lower()):
        phrase_minus, phrase, minus, word = match.groups()
        if word == "or":
            alternatives.append([])
            continue
        text = " ".join(_WORD.findall(phrase if phrase is not None else word))
        if text:
            alternatives[-1].append((not (phrase_minus or minus), text))
    return [terms for terms in alternatives if terms]


def _websearch(query: str) -> Q:
    """The embedded default's reading of the same syntax: every wanted word or phrase
    appears, no excluded one does (matched as text, case-insensitively for ASCII); like
    PostgreSQL, `-word` alone finds every message without it."""
    condition = Q(pk__in=[])  # no term at all matches nothing, as on PostgreSQL
    for terms in _terms(query):
        alternative = Q()
        for wanted, text in terms:
            alternative &= Q(body__icontains=text) if wanted else ~Q(body__icontains=text)
        condition |= alternative
    return condition


def _words(query: str) -> list[str]:
    """The wanted words and phrases, to mark in a snippet."""
    return [text for terms in _terms(query) for wanted, text in terms if wanted]


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
    if not words:
        return " ".join(body.split()[:SNIPPET_WORDS])
    lowered = body.lower()
    first = min((i for w in words if (i := lowered.find(w)) >= 0), default=0)
    tokens = body[first:].split()
    before = body[:first].split()[-4:]
    text = " ".join(before + tokens[: SNIPPET_WORDS - len(before)])
    pattern = re.compile(
        "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)), re.I
    )
    return pattern.sub(lambda m: f"{START}{m.group(0)}{STOP}", text)
