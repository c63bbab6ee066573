"""A GraphQL client that speaks HTTP to the project's real ASGI application.

Requests run through `async_to_sync` from the test's thread, so Django runs the view's
database work on that same thread and connection: the test's transaction, rolled back
after each test, sees everything the request wrote.
"""

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
from asgiref.sync import async_to_sync


def post_scope(headers: list[tuple[bytes, bytes]], path: str = "/graphql/") -> dict[str, Any]:
    """The ASGI scope of a POST from a client at 203.0.113.7, for tests that drive the app's
    `receive` and `send` themselves (streams, bodies sent in pieces)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("203.0.113.7", 40000),
        "server": ("127.0.0.1", 80),
    }


@dataclass
class Response:
    status: int
    json: dict[str, Any]
    headers: httpx.Headers

    @property
    def data(self) -> dict[str, Any]:
        assert "errors" not in self.json, self.json
        return self.json["data"]

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.json["errors"]

    @property
    def error_codes(self) -> list[str]:
        return [error["extensions"]["code"] for error in self.errors]


@dataclass
class GraphQLClient:
    app: Any
    token: str | None = None
    cookies: dict[str, str] = field(default_factory=dict)
    client_address: str = "203.0.113.7"

    def execute(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        headers = self._headers(token, headers)
        return async_to_sync(self._post)({"query": query, "variables": variables or {}}, headers)

    async def _post(self, body: dict[str, Any], headers: dict[str, str]) -> Response:
        async with self._client() as client:
            response = await client.post("/graphql/", json=body, headers=headers)
        return Response(response.status_code, response.json(), response.headers)

    def upload(
        self,
        query: str,
        variables: dict[str, Any],
        files: dict[str, tuple[str, bytes, str]],
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """A multipart request exactly as the GraphQL multipart request spec shows it:
        `operations` (with null where each file goes), `map`, then one part per file.
        `files` maps a variable path (`variables.input.file`) to (name, bytes, type)."""
        return async_to_sync(self.aupload)(query, variables, files, token=token, headers=headers)

    async def aupload(
        self,
        query: str,
        variables: dict[str, Any],
        files: dict[str, tuple[str, bytes, str]],
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        headers = self._headers(token, headers)
        operations = {"query": query, "variables": variables}
        file_map = {str(i): [path] for i, path in enumerate(files)}
        parts = {str(i): part for i, part in enumerate(files.values())}
        form = {"operations": json.dumps(operations), "map": json.dumps(file_map)}
        return await self._post_multipart(form, parts, headers)

    async def _post_multipart(
        self, form: dict[str, str], parts: dict[str, Any], headers: dict[str, str]
    ) -> Response:
        async with self._client() as client:
            response = await client.post("/graphql/", data=form, files=parts, headers=headers)
        return Response(response.status_code, response.json(), response.headers)

    def get(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        """A plain GET (a media URL, as an `<img src>` fetches it: no credentials)."""
        return async_to_sync(self.aget)(url, headers or {})

    async def aget(self, url: str, headers: dict[str, str] | None = None) -> httpx.Response:
        async with self._client(cookies=False) as client:
            response = await client.get(url, headers=headers or {})
            await response.aread()
        return response

    def _headers(self, token: str | None, headers: dict[str, str] | None) -> dict[str, str]:
        headers = dict(headers or {})
        token = token or self.token
        if token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _client(self, *, cookies: bool = True) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(self.client_address, 40000))
        return httpx.AsyncClient(
            transport=transport,
            base_url="http://127.0.0.1",
            cookies=self.cookies if cookies else None,
        )
