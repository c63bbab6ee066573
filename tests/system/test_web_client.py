"""The reference web client (examples/web) in headless chromium, served from its own origin:
two people sign in, chat, see each other's messages, typing and presence live, and one goes
offline and comes back without missing anything. Proves CORS with a real browser."""

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.system.live import free_port
from tests.system.test_graphiql_browser import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.system, pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
REGISTER = """
mutation($e: String!, $n: String!) {
  register(email: $e, displayName: $n, password: "correct horse battery staple") {
    ... on AuthPayload { token user { id } }
  }
}
"""
OPEN = "mutation($u: ID!) { openDirectChat(userId: $u) { ... on Chat { id } } }"
# As the Makefile's `web` target builds it.
BUNDLE_ARGS = [
    "examples/web/src/app.js",
    "--bundle",
    "--format=esm",
    "--minify",
    "--legal-comments=linked",
]


@pytest.fixture(scope="module")
def web_origin():
    """examples/web on a port of its own: another origin than the API."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=ROOT / "examples" / "web",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def api(live_stack, web_origin):
    return live_stack.start(ALLOWED_ORIGINS=web_origin)


def person(api, name: str) -> dict:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.com"
    result = api.graphql(REGISTER, {"e": email, "n": name})["data"]["register"]
    return {"email": email, "token": result["token"], "id": result["user"]["id"]}


def signed_in(browser, web_origin, api, who: dict):  # noqa: F811
    context = browser.new_context()
    page = context.new_page()
    page.outside_requests = []

    def local_only(route):
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            page.outside_requests.append(route.request.url)
            route.abort()

    page.route("**/*", local_only)
    page.goto(f"{web_origin}/index.html?api={api.url}")
    page.fill("#email", who["email"])
    page.fill("#password", "correct horse battery staple")
    page.click("#signin button")
    page.wait_for_selector("#chats li")
    return context, page


def messages(page) -> list[str]:
    return page.eval_on_selector_all("#messages li", "items => items.map(i => i.textContent)")


def test_two_people_chat_live_and_one_misses_nothing_while_offline(
    browser,  # noqa: F811
    web_origin,
    api,
):
    ada, grace = person(api, "Ada"), person(api, "Grace")
    chat = api.graphql(OPEN, {"u": grace["id"]}, token=ada["token"])["data"]["openDirectChat"]
    api.graphql(
        'mutation($c: ID!) { sendMessage(input: {chatId: $c, body: "before you came"}) '
        "{ __typename } }",
        {"c": chat["id"]},
        token=ada["token"],
    )
    ada_context, ada_page = signed_in(browser, web_origin, api, ada)
    grace_context, grace_page = signed_in(browser, web_origin, api, grace)
    try:
        # Grace sees the chat with one unread message, opens it, and sees the history.
        unread = grace_page.text_content(f'#chats li[data-chat-id="{chat["id"]}"] .unread')
        assert unread == "1"
        grace_page.click(f'#chats li[data-chat-id="{chat["id"]}"]')
        ada_page.click(f'#chats li[data-chat-id="{chat["id"]}"]')
        grace_page.wait_for_function("document.querySelectorAll('#messages li').length === 1")
        assert messages(grace_page) == ["Ada: before you came"]
        ada_page.wait_for_function(
            "document.querySelector('#online').textContent.includes('Grace')"
        )

        # Live both ways, with typing.
        ada_page.fill("#body", "Hello Grace")
        grace_page.wait_for_function(
            "document.querySelector('#typing').textContent.includes('Ada')"
        )
        ada_page.press("#body", "Enter")
        grace_page.wait_for_function("document.querySelectorAll('#messages li').length === 2")
        grace_page.fill("#body", "Hi Ada")
        grace_page.press("#body", "Enter")
        ada_page.wait_for_function("document.querySelectorAll('#messages li').length === 3")

        # Grace goes offline; Ada writes twice; Grace comes back and misses nothing.
        grace_context.set_offline(True)
        grace_page.wait_for_function(
            "document.querySelector('#connection').textContent.startsWith('Offline')",
            timeout=15_000,
        )
        for body in ("While you were away", "And once more"):
            ada_page.fill("#body", body)
            ada_page.press("#body", "Enter")
        ada_page.wait_for_function("document.querySelectorAll('#messages li').length === 5")
        grace_context.set_offline(False)
        grace_page.wait_for_function(
            "document.querySelectorAll('#messages li').length === 5", timeout=30_000
        )

        expected = [
            "Ada: before you came",
            "Ada: Hello Grace",
            "Grace: Hi Ada",
            "Ada: While you were away",
            "Ada: And once more",
        ]
        assert messages(grace_page) == expected
        assert messages(ada_page) == expected
        assert ada_page.outside_requests == grace_page.outside_requests == []
    finally:
        ada_context.close()
        grace_context.close()


def test_the_committed_bundle_is_built_from_the_source(tmp_path):
    esbuild = ROOT / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        message = "esbuild is not installed (`make test` runs `npm ci`)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    built = tmp_path / "app.js"

    subprocess.run([str(esbuild), *BUNDLE_ARGS, f"--outfile={built}"], cwd=ROOT, check=True)

    committed = ROOT / "examples" / "web" / "dist" / "app.js"
    assert built.read_bytes() == committed.read_bytes(), "run `make web` and commit the bundle"
