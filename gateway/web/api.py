"""The pages' way to the domain: the gateway's JSON API, called in process.

A page forwards its visitor's cookies (so the API sees the same session), the CSRF token the
form carried (so the API's own CSRF check guards every write a form makes), the visitor's
address (so login throttling counts the right client) and the request's correlation id. What
comes back is an `Answer`: the status, the JSON body, and, for a refusal, its problem details
read as a message and per-field errors a form can show next to each field.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
from litestar import Request

from gateway.auth import CSRF_HEADER
from gateway.correlation import CORRELATION_HEADER

INTERNAL_BASE = "http://butterfly.internal"
TIMEOUT_SECONDS = 30.0
BUSY = {429, 503}


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: httpx.Headers
    set_cookies: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def problem(self) -> dict[str, Any]:
        return self.body if not self.ok and isinstance(self.body, dict) else {}

    @property
    def kind(self) -> str:
        """The problem's `type` without its base: `sold-out`, `invalid-credentials`…"""
        return str(self.problem.get("type", "")).rsplit("/", 1)[-1]

    @property
    def message(self) -> str:
        """One sentence for the visitor: the problem's detail, else its title."""
        problem = self.problem
        return str(problem.get("detail") or problem.get("title") or f"Refused ({self.status}).")

    @property
    def field_errors(self) -> dict[str, str]:
        """Each invalid field's message, by the form field's name (`options.0.code` and
        `$.options[0].code` are both `options`)."""
        errors: dict[str, str] = {}
        for item in self.problem.get("errors", ()) or ():
            if isinstance(item, dict):
                errors.setdefault(form_field(str(item.get("field", ""))), str(item["message"]))
        return errors

    @property
    def busy(self) -> bool:
        return self.status in BUSY

    def item(self, key: str, default: Any = None) -> Any:
        return self.body.get(key, default) if isinstance(self.body, dict) else default


def form_field(api_field: str) -> str:
    """The form field an API validation error names: its first path element."""
    name = api_field.removeprefix("$.").removeprefix("body.")
    for mark in (".", "["):
        name = name.split(mark, 1)[0]
    return name or "form"


@dataclass
class Api:
    """Calls to the API on behalf of one page request."""

    request: Request[Any, Any, Any]
    csrf_token: str | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)

    def _headers(
        self, idempotency_key: str | None, respond_async: bool, wait_seconds: float | None
    ) -> dict[str, str]:
        headers = {"accept": "application/json", **self.extra_headers}
        cookie = self.request.headers.get("cookie")
        if cookie:
            headers["cookie"] = cookie
        if self.csrf_token:
            headers[CSRF_HEADER] = self.csrf_token
        correlation = self.request.scope.get("state", {}).get("correlation_id")
        if correlation is not None:
            headers[CORRELATION_HEADER] = str(correlation)
        if idempotency_key:
            headers["idempotency-key"] = idempotency_key
        if respond_async:
            headers["prefer"] = "respond-async"
        elif wait_seconds is not None:
            headers["prefer"] = f"wait={wait_seconds:g}"
        return headers

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        respond_async: bool = False,
        wait_seconds: float | None = None,
    ) -> Answer:
        client = self.request.client
        transport = httpx.ASGITransport(
            app=self.request.app,  # type: ignore[arg-type]
            client=(client.host, client.port) if client is not None else ("127.0.0.1", 0),
        )
        query = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        # The page's own address as the base: the API sees the Host the visitor used, so the
        # addresses it builds (a Location, the payment provider's notification URL) are ours.
        base = str(self.request.base_url).rstrip("/") or INTERNAL_BASE
        async with httpx.AsyncClient(
            transport=transport, base_url=base, timeout=TIMEOUT_SECONDS
        ) as http:
            response = await http.request(
                method,
                path,
                json=json,
                params=query,
                headers=self._headers(idempotency_key, respond_async, wait_seconds),
            )
        body: Any = None
        if response.content and "json" in response.headers.get("content-type", ""):
            body = response.json()
        elif response.content:
            body = response.text
        return Answer(
            response.status_code,
            body,
            response.headers,
            tuple(response.headers.get_list("set-cookie")),
        )

    async def get(self, path: str, **params: Any) -> Answer:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, json: Any = None, **kwargs: Any) -> Answer:
        return await self.call("POST", path, json=json, **kwargs)

    async def put(self, path: str, json: Any = None, **kwargs: Any) -> Answer:
        return await self.call("PUT", path, json=json, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Answer:
        return await self.call("DELETE", path, **kwargs)


def new_form_key() -> str:
    """An idempotency key for a form: rendered into it, sent with its post, so a form sent
    twice (a double click, a reload after a timeout) is one request."""
    return str(uuid.uuid4())
