"""Web Push (RFC 8030) with encrypted payloads (RFC 8291) and VAPID (RFC 8292), through
pywebpush: checking a browser's subscription, and sending to it."""

import base64
import binascii
import ipaddress
import time
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from py_vapid import Vapid02
from pywebpush import WebPusher

ENDPOINT_MAX_LENGTH = 2048
LOOPBACK_NAMES = frozenset({"localhost"})
# A signed VAPID token is reused for this long (it is valid for 12 hours).
VAPID_TOKEN_REUSE = 3600
VAPID_TOKEN_LIFETIME = 12 * 3600


class InvalidSubscription(ValueError):
    """The subscription is not one a browser gives, or points somewhere not allowed."""


@dataclass(frozen=True)
class Subscription:
    endpoint: str
    p256dh: str
    auth: str


def b64url_decode(value: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError) as error:
        raise InvalidSubscription("Not base64url.") from error


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _allowed_host(host: str) -> bool:
    return any(
        host == allowed or host.endswith("." + allowed)
        for allowed in (h.lower() for h in settings.WEBPUSH_ENDPOINT_HOSTS)
    )


def check_endpoint(endpoint: str) -> str:
    """The endpoint, if it is an https URL of a listed push service (or http on a listed
    loopback host). Anything else is refused: the worker would otherwise POST wherever a
    client pointed it, including the private network."""
    if len(endpoint) > ENDPOINT_MAX_LENGTH or any(c.isspace() for c in endpoint):
        raise InvalidSubscription("The endpoint is not a push service URL.")
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 (raises on a malformed port)
    except ValueError as error:
        raise InvalidSubscription("The endpoint is not a push service URL.") from error
    host = (parts.hostname or "").lower()
    if parts.username or parts.password or not host or not _allowed_host(host):
        raise InvalidSubscription("The endpoint is not a push service this server uses.")
    if parts.scheme != "https" and not (parts.scheme == "http" and _is_loopback(host)):
        raise InvalidSubscription("The endpoint must be an https URL.")
    return endpoint


def check_keys(p256dh: str, auth: str) -> None:
    """`p256dh` must be a point on P-256 (65 bytes, uncompressed) and `auth` 16 bytes, as
    `PushSubscription.toJSON()` gives them."""
    if len(p256dh) > 100 or len(b64url_decode(p256dh)) != 65:
        raise InvalidSubscription("keys.p256dh is not a P-256 public key.")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(p256dh))
    except ValueError as error:
        raise InvalidSubscription("keys.p256dh is not a P-256 public key.") from error
    if len(auth) > 50 or len(b64url_decode(auth)) != 16:
        raise InvalidSubscription("keys.auth must be 16 bytes.")


def public_key() -> str | None:
    """The VAPID public key browsers pass as `applicationServerKey` (derived from the
    private key), or None without Web Push."""
    if not settings.VAPID_PRIVATE_KEY:
        return None
    return _public_key(settings.VAPID_PRIVATE_KEY)


@cache
def _public_key(private_key: str) -> str:
    point = _vapid(private_key).public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return base64.urlsafe_b64encode(point).rstrip(b"=").decode()


def check_settings() -> list[str]:
    """Problems with the VAPID settings, for Django's system checks."""
    if not settings.VAPID_PRIVATE_KEY:
        return ["VAPID_PUBLIC_KEY is set without VAPID_PRIVATE_KEY."] * bool(
            settings.VAPID_PUBLIC_KEY
        )
    try:
        derived = _public_key(settings.VAPID_PRIVATE_KEY)
    except Exception:
        return ["VAPID_PRIVATE_KEY is not a P-256 private key (see generate_vapid_keys)."]
    if settings.VAPID_PUBLIC_KEY and settings.VAPID_PUBLIC_KEY.rstrip("=") != derived:
        return ["VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY."]
    return []


@cache
def _vapid(private_key: str) -> Vapid02:
    return Vapid02.from_string(private_key)


_tokens: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}


def _vapid_headers(endpoint: str) -> dict[str, str]:
    """The VAPID `Authorization` header for the endpoint's push service, signed once an
    hour per service rather than once per notification."""
    parts = urlsplit(endpoint)
    audience = f"{parts.scheme}://{parts.netloc}"
    now, key = time.time(), (settings.VAPID_PRIVATE_KEY, audience)
    signed = _tokens.get(key)
    if signed is None or signed[0] < now:
        headers = _vapid(settings.VAPID_PRIVATE_KEY).sign(
            {
                "aud": audience,
                "exp": int(now) + VAPID_TOKEN_LIFETIME,
                "sub": settings.VAPID_SUBJECT,
            }
        )
        signed = (now + VAPID_TOKEN_REUSE, headers)
        _tokens[key] = signed
    return dict(signed[1])


def send(
    session: requests.Session, subscription: Subscription, payload: bytes, *, topic: str
) -> requests.Response:
    """Encrypt `payload` for the subscription and POST it. `topic` (at most 32 URL-safe
    characters) lets the push service replace an undelivered notification with a newer
    one of the same topic, so a burst reaches an offline phone once."""
    headers = _vapid_headers(subscription.endpoint)
    headers.update({"Topic": topic, "Urgency": "high"})
    pusher = WebPusher(
        {
            "endpoint": subscription.endpoint,
            "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth},
        },
        requests_session=session,
    )
    return pusher.send(payload, headers, ttl=settings.PUSH_TTL, timeout=settings.PUSH_TIMEOUT)
