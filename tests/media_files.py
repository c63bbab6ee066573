"""Files the media tests upload: real images with a phone's metadata, a PDF, lies and bombs."""

import io
import struct
import zlib

from PIL import Image

# Where the photo was "taken": EXIF GPS, as a phone writes it.
GPS_IFD = 0x8825
GPS = {1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 40.0)}
ORIENTATION = 0x0112


def photo(image_format: str = "JPEG", size: tuple[int, int] = (800, 600)) -> bytes:
    """A photo with EXIF GPS and an orientation of 6 (turn 90° clockwise to view), plus
    XMP and a comment for JPEG: everything a stored copy must lose."""
    image = Image.new("RGB", size, (200, 30, 30))
    image.paste((30, 30, 200), (0, 0, size[0] // 2, size[1] // 4))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[GPS_IFD] = GPS
    buffer = io.BytesIO()
    options = {"exif": exif}
    if image_format == "JPEG":
        options.update(xmp=b"<x:xmpmeta>Home sweet home</x:xmpmeta>", comment=b"secret")
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def gps_of(data: bytes) -> dict:
    with Image.open(io.BytesIO(data)) as image:
        return dict(image.getexif().get_ifd(GPS_IFD))


def metadata_of(data: bytes) -> dict:
    """What a stored image carries beyond its pixels (EXIF, XMP, comments, text)."""
    with Image.open(io.BytesIO(data)) as image:
        info = {k: v for k, v in image.info.items() if k in {"exif", "xmp", "comment"}}
        return {**info, **({"exif_tags": dict(image.getexif())} if image.getexif() else {})}


def pdf() -> bytes:
    return (
        b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"
    )


def png_bomb(side: int = 20_000) -> bytes:
    """A valid PNG of side x side 1-bit pixels: about 50 KB that decode to 400 million
    pixels (1.2 GB as RGB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + side // 8)
    compressed = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", compressed)
        + chunk(b"IEND", b"")
    )
