"""GraphiQL in a real browser with no internet: it loads, runs a query and a subscription.

Drives Debian's chromium through Playwright (no browser download). Every request that
leaves 127.0.0.1 is aborted and recorded, so the page must work from this server alone.
"""

import json
import os
import shutil
import uuid
from urllib.parse import quote, urlsplit

import httpx
import pytest

pytestmark = [pytest.mark.system, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REGISTER = """
mutation($email: String!) {
  register(email: $email, password: "correct horse battery staple", displayName: "Browser Ada") {
    ... on AuthPayload { token }
  }
}
"""


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        message = "Debian's chromium is not installed (`make test` installs it)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.outside_requests = []

    def offline(route):
        if urlsplit(route.request.url).hostname in {"127.0.0.1", "localhost"}:
            route.continue_()
        else:
            page.outside_requests.append(route.request.url)
            route.abort()

    page.route("**/*", offline)
    yield page
    context.close()


def _run_in_graphiql(page, url: str, expected: str) -> str:
    page.goto(url)
    page.wait_for_selector(".graphiql-execute-button", timeout=20_000)
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "text => document.querySelector('.result-window')?.innerText.includes(text)",
        arg=expected,
        timeout=20_000,
    )
    return _result(page)


def _result(page) -> str:
    """The response editor's text (CodeMirror 5 keeps it on its element)."""
    return page.evaluate(
        "document.querySelector('.result-window .CodeMirror').CodeMirror.getValue()"
    )


def test_graphiql_runs_a_query_offline(daphne_server, page):
    url = f"{daphne_server.url}/graphql/?q={quote('{ __typename }')}"

    result = _run_in_graphiql(page, url, '"__typename": "Query"')

    assert json.loads(result) == {"data": {"__typename": "Query"}}
    assert page.outside_requests == []


def test_graphiql_runs_a_subscription_with_the_token_from_its_headers(daphne_server, page):
    email = f"browser-{uuid.uuid4().hex[:8]}@example.com"
    token = daphne_server.graphql(REGISTER, {"email": email})["data"]["register"]["token"]
    headers = json.dumps({"Authorization": f"Bearer {token}"})
    url = (
        f"{daphne_server.url}/graphql/?q={quote('subscription { me { displayName } }')}"
        f"&headers={quote(headers)}"
    )

    first = _run_in_graphiql(page, url, "Browser Ada")
    renamed = daphne_server.graphql(
        'mutation { updateProfile(displayName: "Renamed in a test") { __typename } }', token=token
    )
    page.wait_for_function(
        "() => document.querySelector('.result-window')?.innerText.includes('Renamed in a test')",
        timeout=20_000,
    )

    assert json.loads(first) == {"data": {"me": {"displayName": "Browser Ada"}}}
    assert renamed == {"data": {"updateProfile": {"__typename": "User"}}}
    assert page.outside_requests == []


def test_graphiql_is_off_unless_enabled(live_stack):
    server = live_stack.start(GRAPHIQL="false")

    response = httpx.get(f"{server.url}/graphql/", headers={"Accept": "text/html"}, timeout=5)

    assert response.status_code == 404
