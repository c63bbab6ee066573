"""Stand-ins for the outside world of push notifications, on 127.0.0.1.

`PushService` is one small HTTP server playing a browser vendor's Web Push service, FCM's
send endpoint and Google's OAuth token endpoint, each answering from a script. `Browser`
is what a browser keeps for a subscription (a P-256 key pair and an auth secret): it
decrypts what the service received. `verify_vapid` and `verify_oauth_assertion` check
signatures with `cryptography` alone, not with the libraries that made them.
"""

import base64
import json
import os
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import http_ece
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

FCM_PROJECT = "chat-tests"
# A VAPID pair for the tests (any P-256 pair will do; `generate_vapid_keys` made this).
VAPID_PUBLIC_KEY = (
    "BIVpgwWCWkw3RAKGknbuq8BL9hPR_0klQV0otMv27CRiNajxoGeoaIimdbgEF1kETKAWfqMdn55R3e0wpDyWUAU"
)
VAPID_PRIVATE_KEY = "Rcq222MuUbGi3rOkISs52CMxXSZunyyYNXza92c-fU4"
# A live stack's settings for Web Push to a `PushService` (system tests, bench/push.py).
LIVE_SETTINGS = {
    "VAPID_PRIVATE_KEY": VAPID_PRIVATE_KEY,
    "VAPID_SUBJECT": "mailto:live-push@example.com",
    "WEBPUSH_ENDPOINT_HOSTS": "127.0.0.1",
    "SEND_RATE_BURST": "100000",
    "REGISTER_RATE_LIMIT_PER_ADDRESS": "100000",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def headers_of(request: BaseHTTPRequestHandler) -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names lowercased
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


class PushService:
    """Records every request; answers each path from its script (a queue of (status,
    headers) to answer with, in order), else with `default`."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, deque[tuple[int, dict[str, str]]]] = {}
        self._lock = threading.Condition()
        self.tokens_issued = 0
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, reply = service._answer(self.path, body)
                with service._lock:
                    service.received.append(
                        Received(self.path, headers_of(self), body, time.monotonic())
                    )
                    service._lock.notify_all()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if path == "/token":
            self.tokens_issued += 1
            reply = {
                "access_token": f"oauth-{self.tokens_issued}",
                "expires_in": 3600,
                "token_type": "Bearer",
            }
            return 200, {"Content-Type": "application/json"}, json.dumps(reply).encode()
        script = self.scripts.get(path)
        status, headers = script.popleft() if script else (201, {})
        headers = dict(headers)
        if delay := headers.pop("X-Test-Delay", None):  # a service too slow to answer
            time.sleep(float(delay))
        if path.startswith("/v1/") and status == 200:
            name = f"projects/{FCM_PROJECT}/messages/{uuid.uuid4().hex}"
            return (
                status,
                {"Content-Type": "application/json"},
                json.dumps({"name": name}).encode(),
            )
        return status, headers, b""

    def script(self, path: str, *answers: tuple[int, dict[str, str]]) -> None:
        self.scripts[path] = deque(answers)

    def to(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20) -> list[Received]:
        """The requests to `path`, once there are `count` of them."""
        self._wait(lambda: len(self.to_unlocked(path)), count, timeout, path)
        return self.to(path)

    def wait_for_total(self, count: int, timeout: float = 20) -> None:
        """Until `count` requests arrived, to any path."""
        self._wait(lambda: len(self.received), count, timeout, "all paths")

    def to_unlocked(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def _wait(self, arrived, count: int, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._lock:
            while arrived() < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{what}: {arrived()} of {count} requests arrived")
                self._lock.wait(left)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Browser:
    """One browser's push subscription: its own P-256 key pair and auth secret."""

    def __init__(self, service: PushService) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.auth = os.urandom(16)
        self.service = service
        self.path = f"/push/{uuid.uuid4().hex}"
        self.endpoint = service.url + self.path

    def requests(self) -> list[Received]:
        """What its push service received for it, oldest first."""
        return self.service.to(self.path)

    def subscription(self) -> dict[str, Any]:
        """What `PushSubscription.toJSON()` gives."""
        public = self.key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return {
            "endpoint": self.endpoint,
            "expirationTime": None,
            "keys": {"p256dh": b64url(public), "auth": b64url(self.auth)},
        }

    def decrypt(self, received: Received) -> dict[str, Any]:
        assert received.headers["content-encoding"] == "aes128gcm"
        plain = http_ece.decrypt(
            received.body, private_key=self.key, auth_secret=self.auth, version="aes128gcm"
        )
        return json.loads(plain)


def _jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    header, claims, signature = token.split(".")
    return (
        json.loads(unb64url(header)),
        json.loads(unb64url(claims)),
        f"{header}.{claims}".encode(),
        unb64url(signature),
    )


def verify_vapid(received: Received, public_key: str, audience: str) -> dict[str, Any]:
    """The claims of the request's VAPID token (RFC 8292), once its ES256 signature checks
    out against `public_key` and it names this service as its audience."""
    scheme, _, params = received.headers["authorization"].partition(" ")
    assert scheme == "vapid"
    fields = dict(part.strip().split("=", 1) for part in params.split(","))
    assert fields["k"] == public_key
    header, claims, signed, signature = _jwt_parts(fields["t"])
    assert header["alg"] == "ES256"
    assert len(signature) == 64
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64url(public_key))
    try:
        key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as error:
        raise AssertionError("the VAPID signature does not verify") from error
    assert claims["aud"] == audience
    assert time.time() < claims["exp"] <= time.time() + 24 * 3600
    assert claims["sub"].startswith(("mailto:", "https:"))
    return claims


def service_account(token_uri: str) -> tuple[dict[str, Any], rsa.RSAPublicKey]:
    """A service-account key as the Firebase console downloads it, and its public key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    info = {
        "type": "service_account",
        "project_id": FCM_PROJECT,
        "private_key_id": "test-key-1",
        "private_key": pem,
        "client_email": f"push@{FCM_PROJECT}.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": token_uri,
    }
    return info, key.public_key()


def verify_oauth_assertion(received: Received, public_key: rsa.RSAPublicKey) -> dict[str, Any]:
    """The claims of the JWT a service account exchanges for an access token, once its
    RS256 signature checks out."""
    form = parse_qs(received.body.decode())
    assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    header, claims, signed, signature = _jwt_parts(form["assertion"][0])
    assert header["alg"] == "RS256"
    try:
        public_key.verify(signature, signed, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as error:
        raise AssertionError("the OAuth assertion's signature does not verify") from error
    return claims


def run_tasks() -> int:
    """Run every task that is due, as `db_worker` would, in this process; returns how many
    ran (tasks queued while running, if due, run too)."""
    from django_tasks_db.management.commands.db_worker import Worker
    from django_tasks_db.models import DBTaskResult

    worker = Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="tests",
        excluded_queue_names=[],
    )
    ran = 0
    while (task := DBTaskResult.objects.ready().order_by("enqueued_at").first()) is not None:
        task.claim(worker.worker_id)
        worker.run_task(task)
        ran += 1
    return ran
