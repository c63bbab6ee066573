"""Stored media: random names, clean-up that follows the database, and URLs that expire.

Files go through Django's default storage: the filesystem under MEDIA_ROOT, or an S3
bucket (django-storages) by configuration. A name is `<kind>/<yyyy>/<mm>/<32 hex>.<ext>`:
nothing the client sent reaches a path, and the extension is the one `chat.media` decided
from the bytes, which is also the type the file is served with.

URLs are capabilities that expire, so an `<img src>` works without an Authorization
header and a leaked link dies. On the filesystem, the app serves `/media/<name>` when the
URL's HMAC (the project's SECRET_KEY) and expiry check out; on S3 the URL is presigned
and the bucket serves it. Either way, only members are given URLs: the API hands them out
with the message, to whoever may read it.
"""

import logging
import re
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import urlencode

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import Storage, default_storage
from django.core.signing import Signer
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.http import content_disposition_header

from chat.media import CONTENT_TYPES, INLINE_EXTENSIONS, Rendition

logger = logging.getLogger(__name__)

ATTACHMENTS = "attachments"
AVATARS = "avatars"
# Every name this module creates; the media view serves nothing else.
NAME = re.compile(
    rf"^(?:{ATTACHMENTS}|{AVATARS})/\d{{4}}/\d{{2}}/[0-9a-f]{{32}}(?:-thumb)?\."
    rf"(?:{'|'.join(sorted(CONTENT_TYPES))})$"
)
_signer = Signer(salt="chat.media")


def storage() -> Storage:
    return default_storage


def is_s3() -> bool:
    return bool(settings.S3_BUCKET)


def new_name(kind: str, extension: str, *, thumbnail: bool = False) -> str:
    now = timezone.now()
    suffix = "-thumb" if thumbnail else ""
    return f"{kind}/{now:%Y/%m}/{uuid.uuid4().hex}{suffix}.{extension}"


class Saved:
    """The names saved within a `saving()` block: deleted again if the block fails."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def rendition(self, kind: str, rendition: Rendition, *, thumbnail: bool = False) -> str:
        name = new_name(kind, rendition.extension, thumbnail=thumbnail)
        return self._save(name, ContentFile(rendition.content))

    def upload(self, kind: str, upload: File, extension: str) -> str:
        """The uploaded bytes as they are (not an image): streamed in chunks."""
        upload.seek(0)
        return self._save(new_name(kind, extension), File(upload))

    def _save(self, name: str, content: File) -> str:
        saved = storage().save(name, content)
        if saved != name:  # a storage that renames would break the NAME contract
            storage().delete(saved)
            raise RuntimeError(f"Storage renamed {name!r} to {saved!r}")
        self.names.append(saved)
        return saved


@contextmanager
def saving() -> Iterator[Saved]:
    """Save files, then write the rows that point to them in the block: if anything in it
    raises (a refused send, a lost race), the files go too. Nothing is left for a write
    that did not happen."""
    saved = Saved()
    try:
        yield saved
    except BaseException:
        delete(saved.names)
        raise


def delete(names: Iterable[str]) -> None:
    for name in names:
        if not name:
            continue
        try:
            storage().delete(name)
        except Exception:  # the row is gone either way; an orphan file is only space
            logger.warning("Could not delete media %s", name, exc_info=True)


def delete_on_commit(*names: str) -> None:
    """Delete files once the transaction that stopped pointing to them commits."""
    kept = [name for name in names if name]
    if kept:
        transaction.on_commit(lambda: delete(kept), robust=True)


# --- URLs -----------------------------------------------------------------------------


def _step() -> int:
    return max(1, settings.MEDIA_URL_TTL // 4)


def url_epoch(now: float | None = None) -> int:
    """The window URLs are stable in: the same file gets the same URL for a quarter of
    MEDIA_URL_TTL, so browsers cache it, and shared renderings of an event keep it."""
    return int((time.time() if now is None else now) // _step())


def is_inline(name: str) -> bool:
    return name.rpartition(".")[2] in INLINE_EXTENSIONS


def content_type(name: str) -> str:
    return CONTENT_TYPES.get(name.rpartition(".")[2], CONTENT_TYPES["bin"])


def disposition(name: str, label: str | None) -> str:
    """Images are shown inline; everything else (SVG, HTML, PDF...) only downloads."""
    filename = label or name.rpartition("/")[2]
    return content_disposition_header(not is_inline(name), filename) or "attachment"


def _payload(name: str, expires: int, label: str) -> str:
    return f"{name}\n{expires}\n{label}"


def url(name: str, *, label: str | None = None, base: str = "") -> str:
    """A URL for a stored file that works for MEDIA_URL_TTL seconds (at least), without
    credentials. `label` names the download; `base` makes a filesystem URL absolute
    (`https://host`); presigned S3 URLs are absolute already."""
    if is_s3():
        return storage().url(
            name,
            parameters={
                "ResponseContentDisposition": disposition(name, label),
                "ResponseContentType": content_type(name),
            },
            expire=settings.MEDIA_URL_TTL + _step(),
        )
    expires = (url_epoch() + 1) * _step() + settings.MEDIA_URL_TTL
    query = {"e": expires, **({"n": label} if label else {})}
    query["s"] = _signer.signature(_payload(name, expires, label or ""))
    return f"{base}{reverse('media', args=[name])}?{urlencode(query)}"


def verify(name: str, *, expires: str, label: str, signature: str) -> str | None:
    """Why a media request is refused (None when it is not): a name this module did not
    make, a signature that does not match, or an expiry that has passed."""
    if not NAME.match(name):
        return "not_found"
    if not expires.isdigit() or not constant_time_compare(
        signature, _signer.signature(_payload(name, int(expires), label))
    ):
        return "bad_signature"
    if int(expires) < time.time():
        return "expired"
    return None
