"""What an uploaded file is, decided from its bytes, and the copies of it that are stored.

Nothing here trusts the client: not its file name (kept only as a label), not its content
type. An image is an image because Pillow decodes it as one of four formats, under a pixel
cap checked from the header before any pixel is decoded. A stored image is re-encoded
from its pixels with the orientation applied, which drops EXIF (a phone photo's GPS
position), XMP and comments; only the colour profile and transparency are kept. Anything
else, SVG and HTML included, is an opaque file: stored as uploaded, labelled with a type
from a short list of magic numbers, and served only as a download.
"""

import asyncio
import contextlib
import io
import math
import re
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from PIL import Image, ImageOps, UnidentifiedImageError

from chat.error_codes import MediaErrorCode

# Pillow format -> (content type, file extension). The only types ever served inline.
IMAGE_FORMATS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "GIF": ("image/gif", "gif"),
    "WEBP": ("image/webp", "webp"),
}
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
)
# Other files: a content type for the download from the first bytes, else octet-stream.
_FILE_MAGIC = (
    (b"%PDF-", "application/pdf", "pdf"),
    (b"PK\x03\x04", "application/zip", "zip"),
    (b"\x1f\x8b", "application/gzip", "gz"),
)
OCTET_STREAM = ("application/octet-stream", "bin")
# Every extension a stored file can have, and the type it is served with.
CONTENT_TYPES = {
    **{ext: content_type for content_type, ext in IMAGE_FORMATS.values()},
    **{ext: content_type for _, content_type, ext in _FILE_MAGIC},
    OCTET_STREAM[1]: OCTET_STREAM[0],
}
INLINE_EXTENSIONS = frozenset(ext for _, ext in IMAGE_FORMATS.values())

T = TypeVar("T")
_slots: threading.BoundedSemaphore | None = None


async def in_worker(function: Callable[..., T], *args: Any) -> T:
    """Run `function` (a decode) in a worker thread, at most UPLOAD_DECODE_CONCURRENCY at
    once per process. Pillow releases the GIL while it decodes and encodes, so the event
    loop and the thread Django's synchronous code shares keep serving; the cap bounds
    memory (a 12-megapixel photo needs about 100 MB at its peak)."""
    global _slots
    if _slots is None:
        _slots = threading.BoundedSemaphore(settings.UPLOAD_DECODE_CONCURRENCY)
    slots = _slots

    def run() -> T:
        with slots:
            return function(*args)

    return await asyncio.to_thread(run)


MESSAGE_THUMBNAIL_SIDE = 320
AVATAR_SIDE = 512
AVATAR_THUMBNAIL_SIDE = 96
NAME_MAX = 200


@dataclass(frozen=True)
class Rendition:
    """Bytes to store, and what they are."""

    content: bytes
    extension: str
    width: int
    height: int

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.extension]


@dataclass(frozen=True)
class Inspected:
    """An upload, understood. For an image, `image` replaces the upload's bytes."""

    name: str
    content_type: str
    extension: str
    size: int
    image: Rendition | None = None
    thumbnail: Rendition | None = None

    @property
    def is_image(self) -> bool:
        return self.image is not None


def refusal(message: str, code: str, field: str = "file") -> ValidationError:
    return ValidationError({field: ValidationError(message, code=code)})


def display_name(name: str | None) -> str:
    """A label for a download: the last path segment, no control or format characters,
    at most NAME_MAX characters. Never used as a storage path."""
    name = re.split(r"[/\\]", name or "")[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip(" .")
    if len(name) > NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        keep_ext = dot and 0 < len(ext) < 10
        name = stem[: NAME_MAX - len(ext) - 1] + "." + ext if keep_ext else name[:NAME_MAX]
    return name or "file"


def _head(upload: IO[bytes], size: int = 16) -> bytes:
    upload.seek(0)
    head = upload.read(size)
    upload.seek(0)
    return head


def _image_format(head: bytes) -> str | None:
    for magic, name in _IMAGE_MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _file_type(head: bytes) -> tuple[str, str]:
    for magic, content_type, ext in _FILE_MAGIC:
        if head.startswith(magic):
            return content_type, ext
    return OCTET_STREAM


def check_size(upload: Any) -> int:
    size = getattr(upload, "size", None)
    if size is None:
        raise refusal("No file was uploaded.", MediaErrorCode.UPLOAD_MISSING)
    if size == 0:
        raise refusal("The file is empty.", MediaErrorCode.FILE_EMPTY)
    limit = settings.UPLOAD_MAX_BYTES
    if size > limit:
        raise refusal(f"A file can be at most {limit} bytes.", MediaErrorCode.FILE_TOO_LARGE)
    return size


def inspect_upload(upload: Any) -> Inspected:
    """An attachment: an image (re-encoded, with a MESSAGE_THUMBNAIL_SIDE thumbnail) when
    its bytes decode as one, else a file. Raises `ValidationError` with a `MediaErrorCode`."""
    size = check_size(upload)
    name = display_name(getattr(upload, "name", None))
    head = _head(upload)
    image_format = _image_format(head)
    if image_format is None:
        content_type, extension = _file_type(head)
        return Inspected(name=name, content_type=content_type, extension=extension, size=size)
    with _opened(upload, image_format) as image:
        frames = _fit(image, settings.UPLOAD_IMAGE_MAX_SIDE)
        stored = _encode(frames, image_format, image)
        thumbnail = _encode_thumbnail(frames[0], MESSAGE_THUMBNAIL_SIDE)
    return Inspected(
        name=name,
        content_type=stored.content_type,
        extension=stored.extension,
        size=len(stored.content),
        image=stored,
        thumbnail=thumbnail,
    )


def avatar_renditions(upload: Any) -> tuple[Rendition, Rendition]:
    """A square avatar (AVATAR_SIDE) and its thumbnail, cropped to the centre; an animated
    image keeps its first frame. Raises `ValidationError` (`not_an_image`, ...)."""
    check_size(upload)
    image_format = _image_format(_head(upload))
    if image_format is None:
        raise refusal(
            "An avatar must be a PNG, JPEG, GIF or WebP image.",
            MediaErrorCode.NOT_AN_IMAGE,
            field="avatar",
        )
    with _opened(upload, image_format, field="avatar") as image:
        frame = _first_frame(image)
        side = min(AVATAR_SIDE, *frame.size)
        square = ImageOps.fit(frame, (side, side), Image.Resampling.LANCZOS)
        return _encode_thumbnail(square, AVATAR_SIDE), _encode_thumbnail(
            square, AVATAR_THUMBNAIL_SIDE
        )


@contextlib.contextmanager
def _opened(upload: IO[bytes], image_format: str, field: str = "file") -> Iterator[Image.Image]:
    """`Image.open` limited to one format, refusing an image with too many pixels from its
    header, before any is decoded; any failure to decode it, here or while the caller
    works on it, is `image_unreadable`."""
    upload.seek(0)
    try:
        with Image.open(upload, formats=[image_format]) as image:
            width, height = image.size
            frames = getattr(image, "n_frames", 1)
            if width * height * frames > settings.UPLOAD_MAX_PIXELS:
                raise _too_large(field)
            _draft(image, settings.UPLOAD_IMAGE_MAX_SIDE)
            image.load()
            yield image
    except Image.DecompressionBombError:
        raise _too_large(field) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise refusal(
            "The image could not be read: it is damaged or not what it claims to be.",
            MediaErrorCode.IMAGE_UNREADABLE,
            field,
        ) from None


def _too_large(field: str) -> ValidationError:
    return refusal(
        f"An image can have at most {settings.UPLOAD_MAX_PIXELS} pixels.",
        MediaErrorCode.IMAGE_TOO_LARGE,
        field,
    )


def _draft(image: Image.Image, side: int) -> None:
    """Let a JPEG decode at 1/2, 1/4 or 1/8 scale when it will be shrunk anyway: a fraction
    of the memory and time. A no-op for other formats."""
    scale = side / max(image.size)
    if image.format == "JPEG" and scale < 1:
        image.draft(image.mode, (math.ceil(image.width * scale), math.ceil(image.height * scale)))


def _first_frame(image: Image.Image) -> Image.Image:
    image.seek(0)
    frame = ImageOps.exif_transpose(image)
    return frame if frame is not None else image


def _fit(image: Image.Image, side: int) -> list[Image.Image]:
    """The frames to store, upright and no larger than `side` on the long side."""
    count = getattr(image, "n_frames", 1)
    if count == 1:
        # In place: a 12-megapixel photo is 36 MB decoded; a copy would double it.
        ImageOps.exif_transpose(image, in_place=True)
        return [_resized(image, side)]
    frames = []
    for index in range(count):
        image.seek(index)
        frames.append(_resized(ImageOps.exif_transpose(image) or image.copy(), side))
    return frames


def _resized(image: Image.Image, side: int) -> Image.Image:
    """`image` itself when it fits in `side` x `side`, else a smaller copy: no full-size copy
    is made first (`reducing_gap` shrinks by whole factors before resampling)."""
    if max(image.size) <= side:
        return image
    scale = side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _kept_info(image: Image.Image) -> dict[str, Any]:
    """What an encoder may carry over: colour and transparency, never EXIF, XMP or text."""
    keep = ("icc_profile", "transparency", "duration", "loop", "background")
    return {key: image.info[key] for key in keep if key in image.info}


def _encode(frames: list[Image.Image], image_format: str, source: Image.Image) -> Rendition:
    first = frames[0]
    info = _kept_info(source)
    for frame in frames:
        frame.info = {k: v for k, v in frame.info.items() if k in info}
    options: dict[str, Any] = {}
    if "icc_profile" in info:
        options["icc_profile"] = info["icc_profile"]
    if image_format == "JPEG":
        first = frames[0] = _without_alpha(first)
        options.update(quality=88)
    elif image_format == "WEBP":
        options.update(quality=90)
    if len(frames) > 1:
        options.update(save_all=True, append_images=frames[1:], loop=info.get("loop", 0))
        if "duration" in info:
            options["duration"] = info["duration"]
    elif "transparency" in info and image_format in {"PNG", "GIF"}:
        options["transparency"] = info["transparency"]
    buffer = io.BytesIO()
    first.save(buffer, format=image_format, **options)
    return Rendition(buffer.getvalue(), IMAGE_FORMATS[image_format][1], *first.size)


def _without_alpha(image: Image.Image) -> Image.Image:
    if image.mode in {"RGB", "L"}:
        return image
    if image.mode in {"RGBA", "LA", "PA", "P"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")  # CMYK, I;16, ...


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in {"RGBA", "LA", "PA"} or (
        image.mode == "P" and "transparency" in image.info
    )


def _encode_thumbnail(image: Image.Image, side: int) -> Rendition:
    """A small copy: PNG when it has transparency, else JPEG."""
    small = _resized(image, side)
    small = small.copy() if small is image else small
    small.info = {k: v for k, v in image.info.items() if k == "transparency"}
    buffer = io.BytesIO()
    if _has_alpha(small):
        small.convert("RGBA").save(buffer, format="PNG", optimize=True)
        extension = "png"
    else:
        _without_alpha(small).save(buffer, format="JPEG", quality=82)
        extension = "jpg"
    return Rendition(buffer.getvalue(), extension, *small.size)
