"""The JavaScript clients frontends use (graphql-ws, Apollo Client, urql), and the
GraphQL-over-HTTP audit (graphql-http), run by Node against a live daphne. Their packages are
pinned in package.json (`npm ci`)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def node():
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "Node.js is not installed"
    elif not (ROOT / "node_modules" / "graphql-ws").is_dir():
        missing = "the JavaScript clients are not installed (`make test` runs `npm ci`)"
    if missing:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    return node


def run_node_tests(node: str, server, path: str, **env: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [node, "--test", "--test-reporter=spec", path],
        cwd=ROOT,
        env={
            **os.environ,
            "CHAT_HTTP_URL": f"{server.url}/graphql/",
            "CHAT_WS_URL": server.ws_url,
            **{name: str(value) for name, value in env.items()},
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_graphql_ws_apollo_and_urql_clients_work_against_a_live_server(node, daphne_server):
    result = run_node_tests(node, daphne_server, "tests/js/clients.test.mjs")

    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        "graphql-ws createClient: sign in, subscribe, receive",
        "graphql-ws: a bad token is refused with 4403",
        "Apollo Client with GraphQLWsLink: sign in, subscribe, receive",
        "urql with subscriptionExchange: sign in, subscribe, receive",
        "urql fetchSubscriptions over HTTP (event stream): live, abort, resume with after",
        "Apollo Client HttpLink over multipart HTTP: subscribe and receive",
        "graphql-ws configured as the README says: 4403 stops retrying and signs out",
    ):
        assert f"✔ {name}" in result.stdout, result.stdout
    assert "fail 0" in result.stdout, result.stdout


def test_the_graphql_over_http_audit_is_fully_green(node, daphne_server):
    result = run_node_tests(node, daphne_server, "tests/js/audit.test.mjs")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "✔ GraphQL over HTTP: every MUST and SHOULD of the audit is ok" in result.stdout
    assert "fail 0" in result.stdout, result.stdout


def test_apollo_and_urql_send_a_photo_that_a_subscriber_receives(node, daphne_server, tmp_path):
    from tests.media_files import photo

    path = tmp_path / "IMG_0001.jpg"
    path.write_bytes(photo("JPEG"))

    result = run_node_tests(node, daphne_server, "tests/js/uploads.test.mjs", CHAT_PHOTO_PATH=path)

    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        "Apollo Client with apollo-upload-client: send a photo, the other member sees it live",
        "urql multipart upload: send a photo, the other member sees it live",
    ):
        assert f"✔ {name}" in result.stdout, result.stdout
    assert "fail 0" in result.stdout, result.stdout
