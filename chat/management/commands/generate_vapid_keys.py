"""Print a new VAPID key pair for Web Push, as the settings read them."""

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.core.management.base import BaseCommand


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Command(BaseCommand):
    help = (
        "Print a new VAPID key pair (P-256, base64url) to set as VAPID_PUBLIC_KEY and "
        "VAPID_PRIVATE_KEY. Keep the private key secret; changing the pair invalidates "
        "every browser subscription made with the old public key."
    )

    def handle(self, *args: object, **options: object) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        private = key.private_numbers().private_value.to_bytes(32, "big")
        public = key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.stdout.write(f"VAPID_PUBLIC_KEY={_b64url(public)}\n")
        self.stdout.write(f"VAPID_PRIVATE_KEY={_b64url(private)}\n")
