"""Unmasking the small frames clients send, without a native masker per frame.

Every frame a client sends is masked (RFC 6455, 5.3), and autobahn builds a masker for
each: with its NVX extension, a CFFI object with two allocations and a finalizer, then two
more allocations per `process`: with the debug line `BoundedWebSocketProtocol.dataReceived`
skips, 12 µs of the 19 a client's ping cost (bench/RESULTS.md). XOR over Python integers
does a frame under 128 bytes in a few operations; longer frames keep autobahn's SIMD
masker.
"""

from typing import Any

from autobahn.websocket import protocol
from autobahn.websocket.xormasker import create_xor_masker as autobahn_masker

SMALL = 128  # autobahn's own threshold between its scalar and SIMD maskers


class SmallFrameMasker:
    """autobahn's masker interface (`process`, `pointer`, `reset`) for one frame of under
    `SMALL` bytes, which may arrive in several reads."""

    __slots__ = ("_key", "_ptr")

    def __init__(self, mask: bytes) -> None:
        if len(mask) != 4:
            raise ValueError("A WebSocket mask is 4 bytes.")
        self._key = bytes(mask) * (SMALL // 4 + 1)  # room for any offset into the mask
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        size = len(data)
        offset = self._ptr & 3
        self._ptr += size
        key = self._key[offset : offset + size]
        value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
        return value.to_bytes(size, "little")


def create_xor_masker(mask: bytes, length: int | None = None) -> Any:
    """autobahn's factory, with small frames unmasked in Python."""
    if length is not None and length < SMALL:
        return SmallFrameMasker(mask)
    return autobahn_masker(mask, length)


def install() -> None:
    """Make autobahn's frame parser (its only user in the server) use this factory."""
    protocol.create_xor_masker = create_xor_masker
