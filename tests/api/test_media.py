"""Photos, files, locations and avatars, through multipart requests built exactly as the
GraphQL multipart request spec shows them, and their signed URLs fetched as a browser's
`<img src>` would: no credentials."""

import io
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from asgiref.sync import sync_to_async
from PIL import Image

from chat import services, storage
from chat.models import Attachment, Message
from tests.api.realtime import events as realtime_events
from tests.api.realtime import subscribed
from tests.factories import token_for
from tests.graphql_client import GraphQLClient, post_scope
from tests.media_files import gps_of, metadata_of, pdf, photo, png_bomb
from tests.ws import LEGACY_WS, TRANSPORT_WS

ATTACHMENT_FIELDS = "name contentType size width height url thumbnailUrl"
SEND_ATTACHMENT = f"""
mutation($input: SendAttachmentInput!) {{
  sendAttachment(input: $input) {{
    __typename
    ... on Message {{ id seq kind body clientId attachment {{ {ATTACHMENT_FIELDS} }} }}
    ... on OperationInfo {{ messages {{ kind field code }} }}
  }}
}}
"""
SEND_LOCATION = """
mutation($input: SendLocationInput!) {
  sendLocation(input: $input) {
    __typename
    ... on Message { seq kind body location { latitude longitude label } attachment { url } }
    ... on OperationInfo { messages { kind field code } }
  }
}
"""
HISTORY = f"""
query($chatId: ID!) {{
  messages(chatId: $chatId, last: 50) {{
    edges {{ node {{ seq kind body author {{ avatarUrl }}
      attachment {{ {ATTACHMENT_FIELDS} }} location {{ latitude longitude label }} }} }}
  }}
}}
"""
CHATS = f"""
query {{ chats(first: 10) {{ edges {{ node {{
  lastMessage {{ kind attachment {{ {ATTACHMENT_FIELDS} }} location {{ label }} }}
}} }} }} }}
"""
AVATAR = """
mutation($avatar: Upload) {
  updateProfile(avatar: $avatar) {
    __typename
    ... on User { avatarUrl avatarThumbnailUrl }
    ... on OperationInfo { messages { kind field code } }
  }
}
"""
REMOVE_AVATAR = """
mutation { removeAvatar { __typename ... on User { avatarUrl avatarThumbnailUrl } } }
"""
DELETE = "mutation($id: ID!) { deleteMessage(messageId: $id) { __typename } }"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SEND_RATE_BURST = settings.UPLOAD_RATE_BURST = 1000
    return settings.MEDIA_ROOT


@pytest.fixture
def direct(user, grace):
    return services.open_direct_chat(user=user, other_user_id=grace.id)


def stored(media_root) -> list[str]:
    """Every file in the storage, as names relative to MEDIA_ROOT."""
    if not media_root.exists():
        return []
    return sorted(str(p.relative_to(media_root)) for p in media_root.rglob("*") if p.is_file())


def send_file(gql, token, chat, name, data, content_type, **fields):
    variables = {"input": {"chatId": str(chat.id), "file": None, **fields}}
    files = {"variables.input.file": (name, data, content_type)}
    return gql.upload(SEND_ATTACHMENT, variables, files, token=token)


def sent(gql, token, chat, name, data, content_type="application/octet-stream", **fields):
    return send_file(gql, token, chat, name, data, content_type, **fields).data["sendAttachment"]


def refused(response) -> list[dict]:
    result = response.data["sendAttachment"]
    assert result["__typename"] == "OperationInfo", result
    return result["messages"]


@pytest.mark.parametrize(("image_format", "content_type"), [("PNG", "png"), ("JPEG", "jpeg")])
def test_a_photo_is_stored_upright_without_its_metadata_with_a_thumbnail(
    gql, token, direct, media_root, image_format, content_type
):
    original = photo(image_format, size=(800, 600))
    assert gps_of(original)  # the phone's position is in what the client sends

    message = sent(
        gql, token, direct, f"IMG_0001.{image_format.lower()}", original, "image/heic",
        caption=" At home ", clientId="p-1",
    )  # fmt: skip

    attachment = message.pop("attachment")
    assert message == {
        "__typename": "Message",
        "id": message["id"],
        "seq": 1,
        "kind": "IMAGE",
        "body": "At home",
        "clientId": "p-1",
    }
    image_name = urlsplit(attachment["url"]).path.removeprefix("/media/")
    thumbnail_name = urlsplit(attachment["thumbnailUrl"]).path.removeprefix("/media/")
    extension = "png" if image_format == "PNG" else "jpg"
    assert storage.NAME.match(image_name)
    assert image_name.endswith(f".{extension}")
    assert stored(media_root) == sorted([image_name, thumbnail_name])
    stored_image = (media_root / image_name).read_bytes()
    assert attachment == {
        "name": f"IMG_0001.{image_format.lower()}",
        "contentType": f"image/{content_type}",
        "size": len(stored_image),
        # Orientation 6: the 800 x 600 sensor image is shown 600 wide, 800 high.
        "width": 600,
        "height": 800,
        "url": attachment["url"],
        "thumbnailUrl": attachment["thumbnailUrl"],
    }
    assert metadata_of(stored_image) == {}
    assert gps_of(stored_image) == {}
    with Image.open(io.BytesIO(stored_image)) as image:
        assert image.size == (600, 800)
    with Image.open(media_root / thumbnail_name) as thumbnail:
        assert thumbnail.size == (240, 320)
        assert dict(thumbnail.getexif()) == {}

    download = gql.get(attachment["url"])
    assert download.status_code == 200
    assert download.content == stored_image
    assert download.headers["content-type"] == f"image/{content_type}"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-disposition"].startswith("inline;")
    assert gql.get(attachment["thumbnailUrl"]).status_code == 200


def test_history_and_the_chat_list_carry_attachments_and_locations(
    gql, token, direct, django_assert_max_num_queries
):
    for n in range(5):
        sent(gql, token, direct, f"{n}.png", photo("PNG", (40, 30)))
        sent(gql, token, direct, f"{n}.pdf", pdf())
        services.send_location(
            author=direct.memberships.first().user, chat_id=direct.id, latitude=1, longitude=n
        )
    # One query for the viewer's membership, one for the page (attachments joined in).
    with django_assert_max_num_queries(4):
        edges = gql.execute(HISTORY, {"chatId": str(direct.id)}, token=token).data["messages"][
            "edges"
        ]
    kinds = [edge["node"]["kind"] for edge in edges]
    assert kinds == ["IMAGE", "FILE", "LOCATION"] * 5
    assert edges[0]["node"]["attachment"]["width"] == 30  # 40 x 30, turned upright
    assert edges[1]["node"]["attachment"]["contentType"] == "application/pdf"
    assert edges[2]["node"]["location"] == {"latitude": 1.0, "longitude": 0.0, "label": ""}
    assert edges[2]["node"]["attachment"] is None

    chats = gql.execute(CHATS, token=token).data["chats"]["edges"]
    assert chats == [
        {
            "node": {
                "lastMessage": {"kind": "LOCATION", "attachment": None, "location": {"label": ""}}
            }
        }
    ]


def test_a_pdf_is_a_file_served_only_as_a_download(gql, token, direct, media_root):
    message = sent(gql, token, direct, "Q3 report.pdf", pdf(), "image/png")

    attachment = message["attachment"]
    assert message["kind"] == "FILE"
    assert {k: v for k, v in attachment.items() if k != "url"} == {
        "name": "Q3 report.pdf",
        "contentType": "application/pdf",
        "size": len(pdf()),
        "width": None,
        "height": None,
        "thumbnailUrl": None,
    }
    download = gql.get(attachment["url"])
    assert download.content == pdf()
    assert download.headers["content-type"] == "application/pdf"
    assert download.headers["content-disposition"] == 'attachment; filename="Q3 report.pdf"'
    assert download.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("name", "data", "claimed"),
    [
        ("notes.png", b"just some text, not a picture\n", "image/png"),
        ("cat.png", b"<html><script>alert(document.cookie)</script></html>", "image/png"),
        ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="x()"/>', "image/svg+xml"),
        ("../../../etc/passwd", b"root:x:0:0:root:/root:/bin/bash\n", "text/plain"),
        ("..\\..\\boot.ini\x00.png", b"[boot loader]\n", "image/png"),
    ],
)  # fmt: skip
def test_anything_that_is_not_a_decodable_image_is_a_file_that_only_downloads(
    gql, token, direct, media_root, name, data, claimed
):
    message = sent(gql, token, direct, name, data, claimed)

    attachment = message["attachment"]
    assert message["kind"] == "FILE"
    assert attachment["contentType"] == "application/octet-stream"
    assert "/" not in attachment["name"]
    assert "\\" not in attachment["name"]
    assert "\x00" not in attachment["name"]
    (stored_name,) = stored(media_root)
    assert storage.NAME.match(stored_name)
    assert stored_name.endswith(".bin")
    download = gql.get(attachment["url"])
    assert download.content == data
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert download.headers["content-security-policy"] == "default-src 'none'; sandbox"


def test_path_segments_of_a_file_name_never_reach_the_storage(gql, token, direct, media_root):
    message = sent(gql, token, direct, "../../../etc/passwd", b"x")

    assert message["attachment"]["name"] == "passwd"
    assert not (media_root.parent / "etc").exists()
    assert [name.split("/")[0] for name in stored(media_root)] == ["attachments"]


def assert_nothing_written(media_root, direct):
    assert stored(media_root) == []
    assert Attachment.objects.count() == 0
    assert Message.objects.filter(chat=direct).count() == 0


def test_an_image_bomb_is_refused_before_it_is_decoded(gql, token, direct, media_root):
    response = send_file(gql, token, direct, "bomb.png", png_bomb(20_000), "image/png")

    assert refused(response) == [
        {"kind": "VALIDATION", "field": "file", "code": "image_too_large"}
    ]
    assert_nothing_written(media_root, direct)


def test_a_damaged_image_is_refused(gql, token, direct, media_root):
    damaged = photo("PNG")[:200]
    response = send_file(gql, token, direct, "broken.png", damaged, "image/png")

    assert refused(response) == [
        {"kind": "VALIDATION", "field": "file", "code": "image_unreadable"}
    ]
    assert_nothing_written(media_root, direct)


def test_an_empty_file_is_refused(gql, token, direct, media_root):
    response = send_file(gql, token, direct, "empty.txt", b"", "text/plain")

    assert refused(response) == [{"kind": "VALIDATION", "field": "file", "code": "file_empty"}]
    assert_nothing_written(media_root, direct)


def test_a_file_over_the_cap_is_refused(gql, token, direct, media_root, settings):
    settings.UPLOAD_MAX_BYTES = 1000
    response = send_file(gql, token, direct, "big.bin", b"x" * 1001, "application/zip")

    assert refused(response) == [{"kind": "VALIDATION", "field": "file", "code": "file_too_large"}]
    assert_nothing_written(media_root, direct)


def test_a_non_member_cannot_send_or_see_and_nothing_is_stored(gql, direct, media_root, make_user):
    stranger = token_for(make_user(email="eve@example.com"))
    response = send_file(gql, stranger, direct, "a.png", photo("PNG"), "image/png")

    assert refused(response) == [{"kind": "VALIDATION", "field": "chatId", "code": "not_found"}]
    assert_nothing_written(media_root, direct)


def test_a_retried_upload_is_the_same_message_and_stores_nothing_more(
    gql, token, direct, media_root
):
    first = sent(gql, token, direct, "a.png", photo("PNG"), clientId="same")
    again = sent(gql, token, direct, "a.png", photo("PNG"), clientId="same")

    assert again["id"] == first["id"]
    assert len(stored(media_root)) == 2  # the image and its thumbnail, once


def test_a_deleted_attachment_is_gone_from_the_api_and_the_storage(
    gql, token, direct, media_root, django_capture_on_commit_callbacks
):
    message = sent(gql, token, direct, "a.png", photo("PNG"))
    url = message["attachment"]["url"]

    with django_capture_on_commit_callbacks(execute=True):
        gql.execute(DELETE, {"id": message["id"]}, token=token)

    assert stored(media_root) == []
    assert Attachment.objects.count() == 0
    assert gql.get(url).status_code == 404
    history = gql.execute(HISTORY, {"chatId": str(direct.id)}, token=token).data
    assert history["messages"]["edges"][0]["node"]["attachment"] is None


def test_a_location_is_sent_and_checked(gql, token, direct):
    def send(**fields):
        variables = {"input": {"chatId": str(direct.id), **fields}}
        return gql.execute(SEND_LOCATION, variables, token=token).data["sendLocation"]

    assert send(latitude=51.5, longitude=-0.12, label=" Big Ben ") == {
        "__typename": "Message",
        "seq": 1,
        "kind": "LOCATION",
        "body": "",
        "location": {"latitude": 51.5, "longitude": -0.12, "label": "Big Ben"},
        "attachment": None,
    }
    assert send(latitude=-90, longitude=180)["location"]["latitude"] == -90
    for fields, field, code in [
        ({"latitude": 91, "longitude": 0}, "latitude", "invalid_latitude"),
        ({"latitude": -90.5, "longitude": 0}, "latitude", "invalid_latitude"),
        ({"latitude": 0, "longitude": 180.01}, "longitude", "invalid_longitude"),
        ({"latitude": 0, "longitude": 0, "label": "x" * 201}, "label", "label_too_long"),
        (
            {"latitude": 0, "longitude": 0, "clientId": "no spaces"},
            "clientId",
            "invalid_client_id",
        ),
    ]:
        assert send(**fields) == {
            "__typename": "OperationInfo",
            "messages": [{"kind": "VALIDATION", "field": field, "code": code}],
        }
    assert Message.objects.filter(chat=direct).count() == 2


def test_an_upload_variable_must_be_a_file_part(gql, token, direct):
    variables = {"input": {"chatId": str(direct.id), "file": "SGVsbG8="}}
    response = gql.execute(SEND_ATTACHMENT, variables, token=token)

    assert response.error_codes == ["BAD_USER_INPUT"]
    assert "multipart" in response.errors[0]["message"]


FILE_VAR = '{"variables": {"file": null}}'
LIST_VAR = '{"variables": {"f": [null]}}'


@pytest.mark.parametrize(
    ("form", "reason"),
    [
        ({"map": "{}"}, "no `operations`"),
        ({"operations": "{}"}, "no `map`"),
        ({"operations": "[]", "map": "{}"}, "JSON object"),
        ({"operations": "{", "map": "{}"}, "JSON"),
        ({"operations": FILE_VAR, "map": '{"1": ["variables.file"], "0": []}'}, "lacks"),
        ({"operations": FILE_VAR, "map": "[]"}, "JSON object"),
        ({"operations": FILE_VAR, "map": '{"0": "variables.file"}'}, "list"),
        ({"operations": FILE_VAR, "map": '{"0": ["query"]}'}, "variables."),
        ({"operations": FILE_VAR, "map": '{"0": ["variables.a.b"]}'}, "nowhere"),
        ({"operations": LIST_VAR, "map": '{"0": ["variables.f.9"]}'}, "nowhere"),
        ({"operations": LIST_VAR, "map": '{"0": ["variables.f.x"]}'}, "nowhere"),
        ({"operations": '{"variables": {"file": 1}}', "map": '{"0": ["variables.file"]}'}, "null"),
        ({"operations": FILE_VAR, "map": "{}"}, "missing from `map`"),
    ],
)
def test_a_malformed_multipart_request_is_a_400_with_a_reason(gql, token, form, reason):
    import httpx
    from asgiref.sync import async_to_sync

    async def post() -> httpx.Response:
        async with gql._client() as client:
            return await client.post(
                "/graphql/",
                data=form,
                files={"0": ("a.txt", b"hello", "text/plain")},
                headers={"Authorization": f"Bearer {token}"},
            )

    response = async_to_sync(post)()
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert reason in error["message"]


def test_a_broken_multipart_body_is_a_400(gql, token):
    import httpx
    from asgiref.sync import async_to_sync

    async def post() -> httpx.Response:
        async with gql._client() as client:
            return await client.post(
                "/graphql/",
                content=b"--nope\r\nthis is not multipart",
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "multipart/form-data",
                },
            )

    response = async_to_sync(post)()
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


# --- URLs -----------------------------------------------------------------------------


def tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()} | changes
    return f"{parts.scheme}://{parts.netloc}{parts.path}?{urlencode(query)}"


def test_a_media_url_without_a_valid_signature_or_past_its_expiry_gets_no_bytes(
    gql, token, direct, monkeypatch, settings
):
    url = sent(gql, token, direct, "a.pdf", pdf())["attachment"]["url"]
    parts = urlsplit(url)
    expires = int(parse_qs(parts.query)["e"][0])
    assert gql.get(url).status_code == 200

    later = expires + 1
    cases = {
        "unsigned": f"{parts.scheme}://{parts.netloc}{parts.path}",
        "tampered signature": tampered(url, s="A" * 27),
        "longer expiry": tampered(url, e=str(expires + 86400)),
        "another name": tampered(url, n="evil.html"),
        "another file": url.replace(parts.path[-36:-4], "0" * 32),
    }
    for case, bad in cases.items():
        response = gql.get(bad)
        assert (response.status_code, response.content[:1]) == (403, b"{"), case
        assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN", case

    monkeypatch.setattr(storage.time, "time", lambda: later)
    expired = gql.get(url)
    assert expired.status_code == 403
    assert expired.json()["errors"][0]["extensions"]["code"] == "LINK_EXPIRED"


def test_a_url_outside_the_storage_names_is_not_found(gql):
    for path in ["/media/../server/settings.py", "/media/attachments/x.png", "/media/db.sqlite3"]:
        response = gql.get(f"http://127.0.0.1{path}?e=9999999999&s=x")
        assert response.status_code == 404, path


def test_urls_are_stable_within_a_window_and_last_at_least_the_ttl(settings, monkeypatch):
    settings.MEDIA_URL_TTL = 3600
    name = "attachments/2026/11/" + "a" * 32 + ".png"
    monkeypatch.setattr(storage.time, "time", lambda: 1_000_000.0)
    first = storage.url(name)
    monkeypatch.setattr(storage.time, "time", lambda: 1_000_000.0 + 100)
    assert storage.url(name) == first
    expires = int(parse_qs(urlsplit(first).query)["e"][0])
    assert 3600 <= expires - 1_000_100 <= 3600 + 900


def test_a_member_who_left_gets_no_new_urls(gql, user, make_user, settings):
    room = services.create_room(owner=user, name="Photos", is_public=True)
    carol = make_user(email="carol@example.com")
    services.join_room(user=carol, chat_id=room.id)
    sent(gql, token_for(user), room, "a.png", photo("PNG"))
    carol_token = token_for(carol)
    history = gql.execute(HISTORY, {"chatId": str(room.id)}, token=carol_token).data
    assert history["messages"]["edges"][-1]["node"]["attachment"]["url"]

    services.leave_room(user=carol, chat_id=room.id)

    response = gql.execute(HISTORY, {"chatId": str(room.id)}, token=carol_token)
    assert response.error_codes == ["NOT_FOUND"]
    assert "http" not in json.dumps(response.json)


# --- CSRF -----------------------------------------------------------------------------


@pytest.fixture
def session(gql, user):
    """A browser signed in by a session cookie (GraphiQL, the admin), with its CSRF cookie."""
    from django.conf import settings as django_settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    secret = "s" * 32
    gql.cookies = {
        django_settings.SESSION_COOKIE_NAME: store.session_key,
        django_settings.CSRF_COOKIE_NAME: secret,
    }
    return secret


def test_a_cross_site_cookie_upload_without_a_preflight_header_is_refused(
    gql, direct, session, media_root
):
    headers = {"Origin": "https://evil.example"}
    variables = {"input": {"chatId": str(direct.id), "file": None}}
    files = {"variables.input.file": ("a.png", photo("PNG"), "image/png")}
    for extra in [{}, {"Apollo-Require-Preflight": "true"}]:
        response = gql.upload(SEND_ATTACHMENT, variables, files, headers=headers | extra)
        assert response.status == 403
        assert response.error_codes == ["CSRF_FAILED"]
    # A same-site form post carries a cookie too: still no header, still refused.
    response = gql.upload(SEND_ATTACHMENT, variables, files, headers={})
    assert response.status == 403
    assert "Apollo-Require-Preflight" in response.errors[0]["message"]
    assert_nothing_written(media_root, direct)


def test_a_cookie_upload_with_a_preflight_or_csrf_header_is_accepted(
    gql, direct, session, settings
):
    settings.ALLOWED_ORIGINS = ["https://app.example"]
    variables = {"input": {"chatId": str(direct.id), "file": None}}
    files = {"variables.input.file": ("a.png", photo("PNG"), "image/png")}
    for headers in [
        {"Apollo-Require-Preflight": "true", "Origin": "https://app.example"},
        {"Apollo-Require-Preflight": "true", "Origin": "http://127.0.0.1"},
        {"Apollo-Require-Preflight": "true"},
        {"X-CSRFToken": session},
    ]:
        response = gql.upload(SEND_ATTACHMENT, variables, files, headers=headers)
        assert response.data["sendAttachment"]["kind"] == "IMAGE", headers


# --- Avatars --------------------------------------------------------------------------


def test_an_avatar_is_a_square_without_metadata_and_can_be_replaced_and_removed(
    gql, token, media_root, django_capture_on_commit_callbacks
):
    def upload(data: bytes, name: str = "me.jpg") -> dict:
        files = {"variables.avatar": (name, data, "image/jpeg")}
        with django_capture_on_commit_callbacks(execute=True):
            response = gql.upload(AVATAR, {"avatar": None}, files, token=token)
        return response.data["updateProfile"]

    first = upload(photo("JPEG", (1600, 900)))
    names = stored(media_root)
    assert [n.split("/")[0] for n in names] == ["avatars", "avatars"]
    for url, side in [(first["avatarUrl"], 512), (first["avatarThumbnailUrl"], 96)]:
        download = gql.get(url)
        assert download.status_code == 200
        with Image.open(io.BytesIO(download.content)) as image:
            assert image.size == (side, side)
        assert gps_of(download.content) == {}

    second = upload(photo("PNG", (64, 64)), "small.png")
    assert second["avatarUrl"] != first["avatarUrl"]
    assert set(stored(media_root)).isdisjoint(names)  # the replaced files are gone
    assert len(stored(media_root)) == 2

    assert upload(b"<svg/>", "me.svg") == {
        "__typename": "OperationInfo",
        "messages": [{"kind": "VALIDATION", "field": "avatar", "code": "not_an_image"}],
    }
    assert upload(png_bomb(), "bomb.png")["messages"][0]["code"] == "image_too_large"
    assert len(stored(media_root)) == 2

    with django_capture_on_commit_callbacks(execute=True):
        removed = gql.execute(REMOVE_AVATAR, token=token).data["removeAvatar"]
    assert removed == {"__typename": "User", "avatarUrl": None, "avatarThumbnailUrl": None}
    assert stored(media_root) == []


# --- Size, before the body is read ----------------------------------------------------


class Body:
    """An ASGI request body sent in chunks, counting how much of it the app pulled."""

    def __init__(self, total: int, chunk: int = 64 * 1024) -> None:
        self.left, self.chunk, self.pulled = total, chunk, 0

    async def receive(self) -> dict:
        size = min(self.chunk, self.left)
        self.left -= size
        self.pulled += size
        return {"type": "http.request", "body": b"x" * size, "more_body": self.left > 0}


async def call(app, headers: list[tuple[bytes, bytes]], body: Body) -> tuple[int, dict]:
    scope = post_scope(headers)
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, body.receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(payload)


UPLOAD_TYPE = (b"content-type", b"multipart/form-data; boundary=x")


@pytest.mark.django_db(transaction=True)
async def test_a_declared_oversized_upload_is_refused_without_reading_it(asgi_app, settings):
    settings.UPLOAD_MAX_BYTES = 10 * 1024 * 1024
    limit = settings.HTTP_MAX_BODY_SIZE + settings.UPLOAD_MAX_BYTES
    body = Body(limit + 1)

    status, payload = await call(
        asgi_app, [UPLOAD_TYPE, (b"content-length", str(limit + 1).encode())], body
    )

    assert status == 413
    assert payload["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert body.pulled == 0


@pytest.mark.django_db(transaction=True)
async def test_a_streamed_oversized_upload_is_read_no_further_than_the_cap(asgi_app, settings):
    settings.UPLOAD_MAX_BYTES = 2 * 1024 * 1024
    limit = settings.HTTP_MAX_BODY_SIZE + settings.UPLOAD_MAX_BYTES
    body = Body(50 * 1024 * 1024)  # no Content-Length: chunked

    status, payload = await call(asgi_app, [UPLOAD_TYPE], body)

    assert status == 413
    assert payload["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert limit < body.pulled <= limit + body.chunk


@pytest.mark.django_db(transaction=True)
async def test_a_json_body_gets_no_upload_allowance(asgi_app, settings):
    body = Body(settings.HTTP_MAX_BODY_SIZE + 1)

    status, _ = await call(asgi_app, [(b"content-type", b"application/json")], body)

    assert status == 413
    assert body.pulled <= settings.HTTP_MAX_BODY_SIZE + body.chunk


# --- Live -----------------------------------------------------------------------------

LIVE = f"""
subscription($chatId: ID!) {{
  chatEvents(chatId: $chatId) {{
    __typename
    ... on MessageAdded {{
      message {{ seq kind body author {{ displayName avatarUrl }}
        attachment {{ {ATTACHMENT_FIELDS} }} location {{ latitude longitude label }} }}
    }}
  }}
}}
"""


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("close_worker_connections")
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_subscriber_receives_a_photo_live_with_a_url_that_downloads_it(
    asgi_app, people, settings, protocol
):
    settings.UPLOAD_RATE_BURST = 100
    chat = people["chat"]
    socket = await subscribed(
        asgi_app, people["grace_token"], LIVE, {"chatId": str(chat.id)}, protocol
    )
    client = GraphQLClient(asgi_app)
    variables = {"input": {"chatId": str(chat.id), "file": None, "caption": "Look"}}
    files = {"variables.input.file": ("IMG_1.jpg", photo("JPEG", (640, 480)), "image/jpeg")}

    response = await client.aupload(SEND_ATTACHMENT, variables, files, token=people["ada_token"])
    assert response.data["sendAttachment"]["kind"] == "IMAGE"
    await sync_to_async(services.send_location)(
        author=people["ada"], chat_id=chat.id, latitude=48.86, longitude=2.35, label="Paris"
    )

    photo_event, location_event = await realtime_events(socket, 2)
    message = photo_event["chatEvents"]["message"]
    attachment = message.pop("attachment")
    assert message == {
        "seq": 1,
        "kind": "IMAGE",
        "body": "Look",
        "author": {"displayName": "Ada", "avatarUrl": None},
        "location": None,
    }
    assert attachment == response.data["sendAttachment"]["attachment"] | {
        "url": attachment["url"],
        "thumbnailUrl": attachment["thumbnailUrl"],
    }
    assert (attachment["width"], attachment["height"]) == (480, 640)
    download = await client.aget(attachment["url"])
    assert download.status_code == 200
    assert gps_of(download.content) == {}
    assert len(download.content) == attachment["size"]
    assert location_event["chatEvents"]["message"]["location"] == {
        "latitude": 48.86,
        "longitude": 2.35,
        "label": "Paris",
    }
    await socket.close()


# --- Hostile inputs beyond the list --------------------------------------------


def test_a_gif_with_html_appended_is_re_encoded_without_it(gql, token, direct, media_root):
    """A GIF/HTML polyglot: a valid image whose trailing bytes a sniffing browser would run."""
    gif = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(gif, "GIF")
    polyglot = gif.getvalue() + b"<html><script>alert(document.domain)</script></html>"

    message = sent(gql, token, direct, "cat.gif", polyglot, "image/gif")

    assert message["kind"] == "IMAGE"
    assert message["attachment"]["contentType"] == "image/gif"
    download = gql.get(message["attachment"]["url"])
    assert b"<script>" not in download.content
    assert download.headers["content-type"] == "image/gif"


def test_a_name_that_disguises_its_extension_loses_its_control_characters(gql, token, direct):
    # U+202E turns "photo\u202egnp.exe" into "photoexe.png" on screen.
    message = sent(gql, token, direct, "photo\u202egnp.exe", b"MZ\x90\x00", "image/png")

    assert message["attachment"]["name"] == "photognp.exe"
    assert message["attachment"]["contentType"] == "application/octet-stream"


def test_more_file_parts_than_allowed_is_a_400(gql, token, direct, media_root, settings):
    import httpx
    from asgiref.sync import async_to_sync

    count = settings.DATA_UPLOAD_MAX_NUMBER_FILES + 1
    operations = {"query": SEND_ATTACHMENT, "variables": {"input": {"chatId": str(direct.id)}}}

    async def post() -> httpx.Response:
        async with gql._client() as client:
            return await client.post(
                "/graphql/",
                data={"operations": json.dumps(operations), "map": "{}"},
                files={str(n): (f"{n}.txt", b"x", "text/plain") for n in range(count)},
                headers={"Authorization": f"Bearer {token}"},
            )

    response = async_to_sync(post)()
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert_nothing_written(media_root, direct)


def test_a_file_mapped_into_a_text_variable_is_bad_input(gql, token, direct, media_root):
    query = """
    mutation($input: SendMessageInput!) { sendMessage(input: $input) { __typename } }
    """
    variables = {"input": {"chatId": str(direct.id), "body": None}}
    files = {"variables.input.body": ("a.txt", b"hello", "text/plain")}

    response = gql.upload(query, variables, files, token=token)

    assert response.error_codes == ["BAD_USER_INPUT"]
    assert_nothing_written(media_root, direct)


def test_a_head_request_for_media_gets_the_headers_and_no_body(gql, token, direct):
    url = sent(gql, token, direct, "a.pdf", pdf())["attachment"]["url"]

    from asgiref.sync import async_to_sync

    async def head():
        async with gql._client(cookies=False) as client:
            return await client.head(url)

    response = async_to_sync(head)()
    assert response.status_code == 200
    assert response.headers["content-length"] == str(len(pdf()))
    assert response.headers["content-type"] == "application/pdf"
    assert response.content == b""
