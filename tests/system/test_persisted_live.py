"""Automatic persisted queries across processes: a document one process learnt, another
runs by its hash (they share Redis)."""

import hashlib
import os

import httpx
import pytest

pytestmark = pytest.mark.system

ME = "query LiveMe { me { displayName } }"


@pytest.fixture(scope="module", autouse=True)
def _needs_redis():
    if not os.environ.get("REDIS_URL"):
        pytest.skip("several processes need REDIS_URL: this runs in the PostgreSQL + Redis pass")


def post(server, body: dict, token: str) -> httpx.Response:
    return httpx.post(
        f"{server.url}/graphql/",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_a_hash_learnt_by_one_process_runs_on_another(live_stack, daphne_server):
    other = live_stack.start()
    token = daphne_server.register("Persisted")
    extensions = {
        "persistedQuery": {"version": 1, "sha256Hash": hashlib.sha256(ME.encode()).hexdigest()}
    }

    unknown = post(other, {"extensions": extensions}, token)
    learnt = post(daphne_server, {"query": ME, "extensions": extensions}, token)
    elsewhere = post(other, {"extensions": extensions}, token)
    wrong = post(other, {"query": "{ me { id } }", "extensions": extensions}, token)

    assert unknown.json()["errors"][0]["message"] == "PersistedQueryNotFound"
    assert learnt.json() == elsewhere.json() == {"data": {"me": {"displayName": "Persisted"}}}
    assert wrong.status_code == 400
    assert wrong.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
