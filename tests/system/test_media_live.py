"""Uploads against live daphne processes (`python -m server.serve`): the body cap inside
daphne, and the whole photo flow on both storage backends, the S3 one against moto's
standalone server (a real S3-compatible HTTP endpoint, not a mock object)."""

import asyncio
import io
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import boto3
import httpx
import pytest
from PIL import Image
from websockets.asyncio.client import connect

from tests.media_files import gps_of, pdf, photo
from tests.system.live import free_port
from tests.system.test_hostile_live import post_chunked, post_declared

pytestmark = pytest.mark.system

MB = 1024 * 1024
BUCKET = "chat-media"
OPEN_DIRECT = "mutation($u: ID!) { openDirectChat(userId: $u) { ... on Chat { id } } }"
ME = "{ me { id } }"
REVISION = "query($c: ID!) { chat(id: $c) { revision } }"
SEND_ATTACHMENT = """
mutation($input: SendAttachmentInput!) {
  sendAttachment(input: $input) {
    __typename
    ... on Message { id kind attachment { name contentType size width height url thumbnailUrl } }
    ... on OperationInfo { messages { field code } }
  }
}
"""
DELETE = "mutation($id: ID!) { deleteMessage(messageId: $id) { __typename } }"
AVATAR = """
mutation($a: Upload) { updateProfile(avatar: $a) { ... on User { avatarUrl avatarThumbnailUrl } } }
"""
EVENTS = """
subscription($c: ID!, $after: Int) {
  chatEvents(chatId: $c, after: $after) {
    ... on MessageAdded { message { kind body attachment { width height url thumbnailUrl } } }
  }
}
"""


def upload(server, token: str, query: str, variables: dict, path: str, file: tuple) -> dict:
    """A multipart request as the GraphQL multipart request spec shows it."""
    response = httpx.post(
        f"{server.url}/graphql/",
        data={
            "operations": json.dumps({"query": query, "variables": variables}),
            "map": json.dumps({"0": [path]}),
        },
        files={"0": file},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return response.json()


def pair(server) -> tuple[str, str, str]:
    """Two new accounts and their direct chat: (ada's token, grace's token, chat id)."""
    ada, grace = server.register("Ada"), server.register("Grace")
    grace_id = server.graphql(ME, token=grace)["data"]["me"]["id"]
    chat = server.graphql(OPEN_DIRECT, {"u": grace_id}, token=ada)["data"]["openDirectChat"]
    return ada, grace, chat["id"]


def send_photo(server, token: str, chat_id: str, data: bytes, name: str = "IMG_1.jpg"):
    variables = {"input": {"chatId": chat_id, "file": None, "caption": "Look"}}
    file = (name, data, "image/jpeg")
    result = upload(server, token, SEND_ATTACHMENT, variables, "variables.input.file", file)
    return result["data"]["sendAttachment"]


async def photo_arrives_live(server, ada: str, grace: str, chat_id: str) -> tuple[dict, dict]:
    """Grace subscribes over graphql-transport-ws, Ada sends a photo over HTTP: what Ada
    got back, and what Grace heard. Grace resumes from the chat's revision: a photo sent
    before her subscription is live comes in its replay."""
    revision = server.graphql(REVISION, {"c": chat_id}, token=grace)["data"]["chat"]["revision"]
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        init = {"type": "connection_init", "payload": {"authorization": f"Bearer {grace}"}}
        await ws.send(json.dumps(init))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        subscribe = {"query": EVENTS, "variables": {"c": chat_id, "after": revision}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": subscribe}))
        sent = await asyncio.to_thread(send_photo, server, ada, chat_id, photo("JPEG"))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if frame["type"] == "next" and frame["payload"]["data"]["chatEvents"]:
                heard = frame["payload"]["data"]["chatEvents"]["message"]
                if heard["kind"] == "IMAGE":
                    return sent, heard


def assert_clean_upright_photo(data: bytes) -> None:
    assert gps_of(data) == {}
    with Image.open(io.BytesIO(data)) as image:
        assert image.size == (600, 800)  # 800 x 600 with orientation 6, turned upright
        assert dict(image.getexif()) == {}


# --- The body cap inside daphne -------------------------------------------------------


UPLOAD_TYPE = "multipart/form-data; boundary=x"


def test_an_oversized_upload_is_refused_from_its_length_before_it_is_read(daphne_server):
    before = daphne_server.rss()

    answer = post_declared(daphne_server.port, UPLOAD_TYPE, 200 * MB, 64 * MB)

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]  # any reason phrase
    assert b'"code": "PAYLOAD_TOO_LARGE"' in answer
    assert daphne_server.rss() - before < 30 * MB


def test_a_streamed_upload_is_cut_off_at_the_cap(daphne_server):
    before = daphne_server.rss()

    answer = post_chunked(daphne_server.port, UPLOAD_TYPE, 64 * MB)

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]  # any reason phrase
    assert daphne_server.rss() - before < 30 * MB


def test_an_upload_larger_than_a_json_body_may_be_goes_through(daphne_server):
    ada, _, chat_id = pair(daphne_server)
    noise = Image.effect_noise((1400, 1400), 100).convert("RGB")
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    assert buffer.tell() > 1.2 * MB  # more than HTTP_MAX_BODY_SIZE

    message = send_photo(daphne_server, ada, chat_id, buffer.getvalue(), "noise.png")

    assert message["kind"] == "IMAGE"
    assert (message["attachment"]["width"], message["attachment"]["height"]) == (1400, 1400)


def test_a_photo_reaches_a_subscriber_live_and_downloads_from_daphne(daphne_server):
    ada, grace, chat_id = pair(daphne_server)

    sent, heard = asyncio.run(photo_arrives_live(daphne_server, ada, grace, chat_id))

    assert heard["body"] == "Look"
    assert (heard["attachment"]["width"], heard["attachment"]["height"]) == (600, 800)
    assert heard["attachment"]["url"].startswith(f"{daphne_server.url}/media/attachments/")
    download = httpx.get(heard["attachment"]["url"], timeout=10)
    assert download.status_code == 200
    assert download.headers["x-content-type-options"] == "nosniff"
    assert len(download.content) == sent["attachment"]["size"]
    assert_clean_upright_photo(download.content)


# --- S3 -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[str]:
    """moto's standalone S3-compatible server on a free port, with an empty bucket."""
    port = free_port()
    executable = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    process = subprocess.Popen(
        [executable or "moto_server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(endpoint, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        bucket_client(endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


def bucket_client(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def objects(endpoint: str) -> list[str]:
    listing = bucket_client(endpoint).list_objects_v2(Bucket=BUCKET)
    return sorted(item["Key"] for item in listing.get("Contents", []))


@pytest.fixture(scope="module")
def s3_server(live_stack, moto):
    """A daphne process whose media storage is the bucket: configuration alone."""
    return live_stack.start(
        S3_BUCKET=BUCKET,
        S3_ENDPOINT_URL=moto,
        S3_REGION="us-east-1",
        S3_ACCESS_KEY_ID="testing",
        S3_SECRET_ACCESS_KEY="testing",
        S3_ADDRESSING_STYLE="path",
        UPLOAD_RATE_BURST="1000",
    )


def test_on_s3_a_photo_reaches_a_subscriber_with_a_presigned_url(s3_server, moto):
    ada, grace, chat_id = pair(s3_server)
    before = objects(moto)

    sent, heard = asyncio.run(photo_arrives_live(s3_server, ada, grace, chat_id))

    stored = sorted(set(objects(moto)) - set(before))
    assert len(stored) == 2  # the image and its thumbnail, in the bucket
    url = heard["attachment"]["url"]
    assert url.startswith(f"{moto}/{BUCKET}/attachments/")
    assert "X-Amz-Signature=" in url
    assert "X-Amz-Expires=" in url
    download = httpx.get(url, timeout=10)
    assert download.status_code == 200
    assert download.headers["content-type"] == "image/jpeg"
    assert download.headers["content-disposition"].startswith("inline")
    assert len(download.content) == sent["attachment"]["size"]
    assert_clean_upright_photo(download.content)
    thumbnail = httpx.get(heard["attachment"]["thumbnailUrl"], timeout=10)
    with Image.open(io.BytesIO(thumbnail.content)) as image:
        assert image.size == (240, 320)


def test_on_s3_a_file_downloads_as_an_attachment_and_goes_with_its_message(s3_server, moto):
    ada, _, chat_id = pair(s3_server)
    before = objects(moto)
    variables = {"input": {"chatId": chat_id, "file": None}}
    message = upload(
        s3_server,
        ada,
        SEND_ATTACHMENT,
        variables,
        "variables.input.file",
        ("Q3 report.pdf", pdf(), "image/png"),
    )["data"]["sendAttachment"]

    assert message["kind"] == "FILE"
    assert message["attachment"]["contentType"] == "application/pdf"
    download = httpx.get(message["attachment"]["url"], timeout=10)
    assert download.content == pdf()
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == 'attachment; filename="Q3 report.pdf"'
    (key,) = sorted(set(objects(moto)) - set(before))
    assert key.endswith(".pdf")

    s3_server.graphql(DELETE, {"id": message["id"]}, token=ada)

    assert key not in objects(moto)


def test_on_s3_an_avatar_is_stored_and_replaced_in_the_bucket(s3_server, moto):
    ada = s3_server.register("Ada")
    before = set(objects(moto))

    def set_avatar(data: bytes) -> dict:
        result = upload(s3_server, ada, AVATAR, {"a": None}, "variables.a", ("me.jpg", data, "x"))
        return result["data"]["updateProfile"]

    first = set_avatar(photo("JPEG"))
    first_keys = set(objects(moto)) - before
    second = set_avatar(photo("PNG"))
    second_keys = set(objects(moto)) - before

    assert len(first_keys) == len(second_keys) == 2
    assert first_keys.isdisjoint(second_keys)  # the replaced avatar left the bucket
    for url, side in [(second["avatarUrl"], 512), (second["avatarThumbnailUrl"], 96)]:
        with Image.open(io.BytesIO(httpx.get(url, timeout=10).content)) as image:
            assert image.size == (side, side)
    assert first["avatarUrl"] != second["avatarUrl"]
