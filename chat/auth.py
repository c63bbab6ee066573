"""Bearer tokens: issue, authenticate, revoke.

A token is 32 random bytes, shown to the client once. Only its SHA-256 is stored, which
is enough for a secret of that entropy (no salt or slow hash needed: nobody can guess it).
"""

import functools
import hashlib
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from chat import events, rows
from chat.models import AuthToken, Device, User

TOKEN_PREFIX = "ct_"  # noqa: S105 - a marker, not a secret
# Writing `last_used_at` on every request would turn every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def parse_authorization(header: str) -> str | None:
    """The token in an `Authorization: Bearer <token>` value, or None when malformed."""
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


def issue_token(*, user: User, user_agent: str = "") -> tuple[str, AuthToken]:
    """A new token for `user`: the raw value (return it to the client once) and its row."""
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = timezone.now()
    token = AuthToken.objects.create(
        user=user,
        key_hash=hash_token(raw),
        prefix=raw[:12],
        user_agent=user_agent[:200],
        created_at=now,
        expires_at=now + settings.AUTH_TOKEN_TTL,
    )
    return raw, token


@functools.cache
def _lookup() -> tuple[str, rows.Columns, rows.Columns]:
    """The live token (not revoked, not expired, of an active user) with one key hash,
    with its user, as SQL (chat.rows: compiled by the ORM it cost ten times as much)."""
    token, user = rows.Columns(AuthToken, "t"), rows.Columns(User, "u")
    statement = rows.sql(
        "SELECT {token}, {user} FROM {AuthToken} t "
        "INNER JOIN {User} u ON u.{User.id} = t.{AuthToken.user} "
        "WHERE t.{AuthToken.key_hash} = %s AND t.{AuthToken.revoked_at} IS NULL "
        "AND t.{AuthToken.expires_at} > %s AND u.{User.is_active} = %s",
        token=token,
        user=user,
        AuthToken=AuthToken,
        User=User,
    )
    return statement, token, user


@functools.cache
def _touch_sql() -> str:
    return rows.sql(
        "UPDATE {AuthToken} SET {AuthToken.last_used_at} = %s WHERE {AuthToken.id} = %s",
        AuthToken=AuthToken,
    )


def authenticate_token(raw: str) -> AuthToken | None:
    """The live token for `raw` with its user loaded, or None (unknown, expired, revoked)."""
    found = lookup_token(hash_token(raw))
    return None if found is None else found[0]


def lookup_token(key_hash: str) -> tuple[AuthToken, tuple] | None:
    """The live token with this key hash, and the row it was built from (which
    `build_token` turns into it again), or None."""
    statement, _token_columns, _user_columns = _lookup()
    now = timezone.now()
    row = rows.fetch_one(statement, [key_hash, rows.param(AuthToken, "expires_at", now), True])
    if row is None:
        return None
    token = build_token(row)
    if stale(token, now):
        touch_token(token, now)
        # What was written, so that a cache filled from this row does not write it again.
        return token, touched_row(tuple(row), now)
    return token, tuple(row)


def touched_row(row: tuple, now: datetime) -> tuple:
    """A row `lookup_token` returned, with `last_used_at` as `touch_token` wrote it."""
    index = row_position(AuthToken, "last_used_at")
    return (*row[:index], rows.param(AuthToken, "last_used_at", now), *row[index + 1 :])


@functools.cache
def row_position(model: type[AuthToken] | type[User], name: str) -> int:
    """Where a column of the token (`AuthToken`) or of its user (`User`) is in a row that
    `lookup_token` returns."""
    _statement, token_columns, user_columns = _lookup()
    if model is AuthToken:
        return token_columns.names.index(name)
    return len(token_columns.fields) + user_columns.names.index(name)


def build_token(row: tuple) -> AuthToken:
    """A token and its user, new instances, from a row `lookup_token` returned."""
    _statement, token_columns, user_columns = _lookup()
    token = token_columns.build(row)
    token.user = user_columns.build(row, len(token_columns))
    return token


def touch_token(token: AuthToken, now: datetime) -> None:
    """Note that the token was used: at most once per `LAST_USED_RESOLUTION`."""
    rows.execute(
        _touch_sql(),
        [rows.param(AuthToken, "last_used_at", now), rows.param(AuthToken, "id", token.pk)],
    )
    token.last_used_at = now


def stale(token: AuthToken, now: datetime) -> bool:
    """Whether `last_used_at` is due to be written again."""
    return token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION


def revoke_token(token: AuthToken) -> None:
    """Revoke one token, close the sockets signed in with it and unregister the devices it
    registered: a signed-out session must not keep receiving message previews."""
    AuthToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=timezone.now()
    )
    Device.objects.filter(auth_token=token).delete()
    events.tokens_revoked(token.user, token_ids=[token.pk])


def revoke_user_tokens(user: User, *, keep: AuthToken | None = None) -> int:
    """Revoke every live token of `user` except `keep`, and unregister the devices the
    revoked sessions (and cookie sessions) registered; returns how many were revoked."""
    tokens = AuthToken.objects.filter(user=user, revoked_at__isnull=True)
    if keep is not None:
        tokens = tokens.filter(~Q(pk=keep.pk))
    revoked = list(tokens.values_list("pk", flat=True))
    count = AuthToken.objects.filter(pk__in=revoked).update(revoked_at=timezone.now())
    Device.objects.filter(
        Q(auth_token__in=revoked) | Q(auth_token__isnull=True), user=user
    ).delete()
    # Sockets signed in by cookie session are closed too: a password change ends them.
    events.tokens_revoked(user, token_ids=None, keep=keep.pk if keep else None)
    return count


def user_saved(sender: type[User], instance: User, created: bool, **kwargs: object) -> None:
    """A saved user may look different to a token check (deactivated, renamed, a new
    password): every process checks their tokens against the database again. A
    deactivated user's open sockets are closed too, as a revocation closes them."""
    if created or kwargs.get("raw"):
        return
    if instance.is_active:
        events.sessions_changed(instance.pk)
    else:
        events.tokens_revoked(instance, token_ids=None)
