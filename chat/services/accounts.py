"""Accounts: registration, sign-in with bearer tokens, passwords, profile."""

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.encoding import force_bytes, force_str
from django.utils.http import urlencode, urlsafe_base64_decode, urlsafe_base64_encode

from chat import auth, events, media, ratelimit, storage
from chat.error_codes import AccountErrorCode
from chat.exceptions import RateLimited, field_error
from chat.models import AuthToken, User, normalize_email
from chat.ratelimit import FixedWindow, GrowingDelay, Remembered

DISPLAY_NAME_MAX = 64


# Limits are built per call so that settings overridden in tests take effect.
def _register_limit() -> FixedWindow:
    return FixedWindow(
        "register-address", settings.REGISTER_RATE_LIMIT_PER_ADDRESS, settings.REGISTER_RATE_WINDOW
    )


def _login_limits() -> tuple[FixedWindow, FixedWindow, GrowingDelay]:
    window = settings.LOGIN_RATE_WINDOW
    return (
        FixedWindow("login-pair", settings.LOGIN_RATE_LIMIT, window),
        FixedWindow("login-address", settings.LOGIN_RATE_LIMIT_PER_ADDRESS, window),
        GrowingDelay(
            "login-email",
            settings.LOGIN_EMAIL_DELAY_AFTER,
            settings.LOGIN_EMAIL_MAX_DELAY,
            window,
        ),
    )


# Addresses each account signed in from lately: they skip the per-email delay.
_KNOWN_ADDRESSES = Remembered("login-known", 30 * 86400)


def _reset_limits() -> tuple[FixedWindow, FixedWindow]:
    window = settings.PASSWORD_RESET_RATE_WINDOW
    return (
        FixedWindow("reset-email", settings.PASSWORD_RESET_RATE_LIMIT, window),
        FixedWindow("reset-address", settings.PASSWORD_RESET_RATE_LIMIT_PER_ADDRESS, window),
    )


def _clean_email(email: str) -> str:
    email = normalize_email(email)
    try:
        validate_email(email)
    except ValidationError:
        raise field_error(
            "email", "Enter a valid email address.", AccountErrorCode.INVALID_EMAIL
        ) from None
    return email


def _clean_display_name(display_name: str) -> str:
    display_name = " ".join(display_name.split())
    if not display_name or len(display_name) > DISPLAY_NAME_MAX:
        raise field_error(
            "display_name",
            f"Display name must be 1 to {DISPLAY_NAME_MAX} characters.",
            AccountErrorCode.INVALID_DISPLAY_NAME,
        )
    return display_name


def _validate_password(field: str, password: str, user: User) -> None:
    try:
        validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({field: error.error_list}) from None


def register(
    *, email: str, password: str, display_name: str, address: str, user_agent: str = ""
) -> tuple[str, User]:
    """Create an active account and its first token. Raises `ValidationError` (email,
    displayName, password) and `RateLimited` per client address."""
    _register_limit().check(address)
    email = _clean_email(email)
    display_name = _clean_display_name(display_name)
    user = User(email=email, display_name=display_name)
    _validate_password("password", password, user)
    taken = field_error(
        "email", "An account with this email already exists.", AccountErrorCode.EMAIL_TAKEN
    )
    if User.objects.filter(email=email).exists():
        raise taken
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
            raw, _ = auth.issue_token(user=user, user_agent=user_agent)
    except IntegrityError:  # a concurrent registration won the race for this email
        raise taken from None
    _register_limit().hit(address)
    return raw, user


def login(*, email: str, password: str, address: str, user_agent: str = "") -> tuple[str, User]:
    """A new token for valid credentials; a wrong email and a wrong password fail alike.

    Guessing is throttled the way OWASP recommends, without letting strangers lock the
    owner out: failures are counted per (email, address) and per address, each with a
    hard limit, and per email with a growing delay that addresses the account signed in
    from lately do not wait for (`RateLimited` with `retryAfter`).
    """
    email = normalize_email(email)
    per_pair, per_address, per_email = _login_limits()
    pair = f"{email}|{address}"
    per_pair.check(pair)
    per_address.check(address)
    known = pair in _KNOWN_ADDRESSES
    if not known:
        per_email.check(email)
    user = User.objects.filter(email=email).first()
    if user is None or not user.is_active or not user.check_password(password):
        if user is None:
            # Spend the same time as a real check, so timing does not reveal accounts.
            User().set_password(password)
        per_pair.hit(pair)
        per_address.hit(address)
        per_email.fail(email)
        raise ValidationError(
            "The email or password is incorrect.", code=AccountErrorCode.INVALID_CREDENTIALS
        )
    per_pair.reset(pair)
    _KNOWN_ADDRESSES.add(pair)
    raw, _ = auth.issue_token(user=user, user_agent=user_agent)
    user.last_login = timezone.now()
    user.save(update_fields=["last_login"])
    return raw, user


def logout(*, token: AuthToken) -> None:
    auth.revoke_token(token)


async def update_profile(
    *, user: User, display_name: str | None = None, avatar: object | None = None
) -> User:
    """Change the user's public profile (name, avatar) and tell their other sessions. An
    avatar is checked and re-encoded (`chat.media`, in a worker thread) before anything is
    written; the replaced one's files are deleted once the change commits."""
    if display_name is None and avatar is None:
        raise ValidationError(
            "Give at least one field to change.", code=AccountErrorCode.NOTHING_TO_UPDATE
        )
    if display_name is not None:
        display_name = _clean_display_name(display_name)
    await sync_to_async(ratelimit.hit)("profile", user)
    renditions = None
    if avatar is not None:
        await sync_to_async(ratelimit.hit)("upload", user)
        renditions = await media.in_worker(media.avatar_renditions, avatar)
    return await sync_to_async(_save_profile)(user, display_name, renditions)


def _save_profile(
    user: User, display_name: str | None, renditions: tuple[media.Rendition, ...] | None
) -> User:
    with storage.saving() as saved, transaction.atomic():
        current = User.objects.select_for_update().get(pk=user.pk)
        fields = []
        if display_name is not None:
            user.display_name = display_name
            fields.append("display_name")
        if renditions is not None:
            storage.delete_on_commit(current.avatar.name, current.avatar_thumbnail.name)
            user.avatar = saved.rendition(storage.AVATARS, renditions[0])
            user.avatar_thumbnail = saved.rendition(storage.AVATARS, renditions[1], thumbnail=True)
            fields += ["avatar", "avatar_thumbnail"]
        user.save(update_fields=fields)
        events.profile_updated(user)
    return user


@transaction.atomic
def remove_avatar(*, user: User) -> User:
    """Remove the user's avatar (its files go once this commits). Harmless without one."""
    ratelimit.hit("profile", user)
    current = User.objects.select_for_update().get(pk=user.pk)
    if current.avatar or current.avatar_thumbnail:
        storage.delete_on_commit(current.avatar.name, current.avatar_thumbnail.name)
        user.avatar = user.avatar_thumbnail = ""
        user.save(update_fields=["avatar", "avatar_thumbnail"])
        events.profile_updated(user)
    return user


@transaction.atomic
def change_password(
    *, user: User, current_password: str, new_password: str, keep: AuthToken | None
) -> User:
    """Set a new password and revoke every token of the user but `keep` (the caller's).
    Limited like profile changes: a stolen session must not guess the password."""
    ratelimit.hit("profile", user)
    if not user.check_password(current_password):
        raise field_error(
            "current_password",
            "The current password is incorrect.",
            AccountErrorCode.WRONG_PASSWORD,
        )
    _validate_password("new_password", new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    auth.revoke_user_tokens(user, keep=keep)
    return user


def request_password_reset(*, email: str, address: str) -> None:
    """Email a reset link if an active account has `email`.

    Answers the same whether or not it does, so it cannot be used to find accounts; the
    per-email limit is silent for the same reason.
    """
    per_email, per_address = _reset_limits()
    per_address.hit(address)
    email = normalize_email(email)
    user = User.objects.filter(email=email, is_active=True).first()
    if user is None:
        return
    try:
        per_email.hit(email)
    except RateLimited:  # silent on purpose, see above
        return
    query = urlencode(
        {
            "uid": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        }
    )
    link = f"{settings.PASSWORD_RESET_URL}?{query}"
    minutes = settings.PASSWORD_RESET_TIMEOUT // 60
    send_mail(
        subject="Reset your password",
        message=(
            f"Hello {user.display_name},\n\n"
            f"Someone asked to reset the password of your account. If it was you, open "
            f"this link within {minutes} minutes:\n\n{link}\n\n"
            f"If it was not, ignore this email; your password stays as it is.\n"
        ),
        from_email=None,
        recipient_list=[user.email],
    )


@transaction.atomic
def reset_password(*, uid: str, token: str, new_password: str) -> User:
    """Set the password from an emailed link, once, and revoke all the user's tokens.

    The link stops working as soon as the password changes (Django's token covers the
    password hash) or after `PASSWORD_RESET_TIMEOUT`.
    """
    invalid = field_error(
        "token",
        "This reset link is invalid or has expired.",
        AccountErrorCode.INVALID_RESET_LINK,
    )
    try:
        user_id = force_str(urlsafe_base64_decode(uid))
        user = User.objects.select_for_update().get(pk=user_id, is_active=True)
    except (ValueError, ValidationError, User.DoesNotExist):
        raise invalid from None
    if not default_token_generator.check_token(user, token):
        raise invalid
    _validate_password("new_password", new_password, user)
    user.set_password(new_password)
    user.save(update_fields=["password"])
    auth.revoke_user_tokens(user)
    return user
