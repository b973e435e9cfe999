"""What every page shares: who is looking, rendering a template, reading a posted form,
redirecting after a post, and error pages in place of problem details."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog
from aiokafka.errors import KafkaError
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.exceptions import HTTPException, NotFoundException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template import TemplateConfig
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from gateway.auth import CSRF_COOKIE, SESSION_COOKIE
from gateway.web.api import Answer, Api

HERE = Path(__file__).parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"
HTMX = "/static/htmx-2.0.11.min.js"
UNAVAILABLE = (KafkaError, DBAPIError, TimeoutError, RedisError, httpx.TransportError)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Viewer:
    """The visitor as the API describes them (`GET /api/v1/me`); anonymous when not
    logged in."""

    account: dict[str, Any] | None = None
    roles: tuple[tuple[str, str | None], ...] = ()

    @property
    def signed_in(self) -> bool:
        return self.account is not None

    @property
    def is_admin(self) -> bool:
        return ("admin", None) in self.roles

    @property
    def is_analyst(self) -> bool:
        return self.is_admin or ("analyst", None) in self.roles

    def staff_of(self, convention_id: uuid.UUID | str) -> bool:
        return self.is_admin or ("staff", str(convention_id)) in self.roles

    @property
    def staff_conventions(self) -> tuple[str, ...]:
        return tuple(scope for role, scope in self.roles if role == "staff" and scope)

    @property
    def may_administer(self) -> bool:
        """Whether the admin app has anything for this visitor."""
        return self.is_analyst or bool(self.staff_conventions)


ANONYMOUS = Viewer()


@dataclass
class PageState:
    viewer: Viewer = ANONYMOUS
    set_cookies: list[str] = field(default_factory=list)


def state_of(request: Request[Any, Any, Any]) -> PageState:
    state = request.scope.setdefault("state", {})
    page = state.get("page")
    if page is None:
        page = state["page"] = PageState()
    return page


def api(request: Request[Any, Any, Any], csrf_token: str | None = None) -> Api:
    return Api(request, csrf_token)


async def viewer(request: Request[Any, Any, Any]) -> Viewer:
    """Who is looking, asked of the API once per request; a cookie that opens no session
    is cleared."""
    state = state_of(request)
    if state.viewer is not ANONYMOUS or SESSION_COOKIE not in request.cookies:
        return state.viewer
    answer = await api(request).get("/api/v1/me")
    keep_cookies(request, answer)
    if answer.ok and isinstance(answer.body, dict):
        roles = tuple(
            (str(item["role"]), item.get("convention_id")) for item in answer.item("roles", [])
        )
        state.viewer = Viewer(answer.body, roles)
    return state.viewer


def keep_cookies(request: Request[Any, Any, Any], answer: Answer) -> None:
    """The API's Set-Cookie headers (a new session, a cleared one) reach the browser with
    the page."""
    state_of(request).set_cookies.extend(answer.set_cookies)


def csrf_of(request: Request[Any, Any, Any]) -> str:
    return str(request.cookies.get(CSRF_COOKIE, ""))


def money(cents: Any, currency: str = "EUR") -> str:
    if cents is None:
        return ""
    value = int(cents)
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100:,}.{abs(value) % 100:02d} {currency}"


def when(value: Any) -> str:
    """A timestamp from the API, as people read it (UTC)."""
    if not value:
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return str(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _engine() -> JinjaTemplateEngine:
    engine = JinjaTemplateEngine(directory=TEMPLATES)
    engine.engine.filters["money"] = money
    engine.engine.filters["when"] = when
    engine.engine.globals["HTMX"] = HTMX
    return engine


template_config = TemplateConfig(instance=_engine())
static_files = create_static_files_router(
    path="/static", directories=[STATIC], name="static", include_in_schema=False
)


async def render(
    request: Request[Any, Any, Any],
    template: str,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    """A page: the template with the visitor, the CSRF token its forms must carry, and any
    cookie the API set on the way."""
    who = await viewer(request)
    response = Template(
        template_name=template,
        context={
            "viewer": who,
            "csrf_token": csrf_of(request),
            "path": request.url.path,
            "htmx_request": request.headers.get("hx-request") == "true",
            **context,
        },
        status_code=status,
        headers=headers,
    )
    _attach_cookies(request, response)
    return response


def redirect(request: Request[Any, Any, Any], to: str) -> Redirect:
    """After a post: see the result at its own address (303, so a reload does not post
    again)."""
    response = Redirect(path=to, status_code=303)
    _attach_cookies(request, response)
    return response


def _attach_cookies(request: Request[Any, Any, Any], response: Response[Any]) -> None:
    for raw in state_of(request).set_cookies:
        response.cookies.extend(cookies_of(raw))


def cookies_of(set_cookie: str) -> list[Cookie]:
    """A `Set-Cookie` header the API sent, as the cookies Litestar sets on a page."""
    parsed: SimpleCookie = SimpleCookie()
    parsed.load(set_cookie)
    cookies = []
    for name, morsel in parsed.items():
        max_age = morsel["max-age"]
        samesite = (morsel["samesite"] or "lax").lower()
        cookies.append(
            Cookie(
                key=name,
                value=morsel.value,
                max_age=int(max_age) if str(max_age).lstrip("-").isdigit() else None,
                expires=0 if morsel["expires"] and not max_age else None,
                path=morsel["path"] or "/",
                secure=bool(morsel["secure"]),
                httponly=bool(morsel["httponly"]),
                samesite=samesite if samesite in ("lax", "strict", "none") else "lax",  # type: ignore[arg-type]
            )
        )
    return cookies


async def form_of(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The posted form, with repeated fields (check boxes) as lists, after checking the
    post came from one of our own pages."""
    same_origin(request)
    form = await request.form()
    data: dict[str, Any] = {}
    for name in form:
        values = form.getall(name)
        data[name] = values if len(values) > 1 or name.endswith("[]") else values[0]
    return data


def same_origin(request: Request[Any, Any, Any]) -> None:
    """A form post started by another site is refused: browsers name the page's origin in
    `Origin` (and `Sec-Fetch-Site`) on every post."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site == "cross-site" or (
        origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host")
    ):
        raise HTTPException(status_code=403, detail="This form was sent from another site.")


def text(form: dict[str, Any], name: str) -> str:
    value = form.get(name, "")
    if isinstance(value, list):
        value = value[0] if value else ""
    return str(value).strip()


def many(form: dict[str, Any], name: str) -> list[str]:
    value = form.get(name, [])
    values = value if isinstance(value, list) else [value]
    return [str(v).strip() for v in values if str(v).strip()]


def number(form: dict[str, Any], name: str) -> int | str | None:
    """A whole number typed into a form; what is not one is passed on as typed, so the
    API names the field in its refusal."""
    raw = text(form, name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        return raw


def cents(form: dict[str, Any], name: str) -> int | str | None:
    """An amount typed as `12.50` (or `12,50`), in minor units."""
    raw = text(form, name).replace(",", ".").replace(" ", "")
    if not raw:
        return None
    whole, _, frac = raw.partition(".")
    if not whole.lstrip("-").isdigit() or (frac and (not frac.isdigit() or len(frac) > 2)):
        return raw
    sign = -1 if whole.startswith("-") else 1
    return sign * (abs(int(whole)) * 100 + int((frac + "00")[:2]))


# --- error pages ---------------------------------------------------------------------------

MESSAGES = {
    400: ("Bad request", "The request could not be read."),
    401: ("Please log in", "This page needs you to log in."),
    403: ("Not allowed", "You may not do this."),
    404: ("Not found", "There is nothing at this address."),
    405: ("Not allowed", "This address does not take that kind of request."),
    413: ("Too large", "What you sent is too large."),
    429: ("Too many attempts", "Wait a moment, then try again."),
    503: ("Busy", "Registration is very busy right now: nothing was lost. Try again shortly."),
}


def error_page(request: Request[Any, Any, Any], status: int, detail: str | None = None) -> Template:
    """An error as a page. Exception handlers cannot wait, so the page shows the visitor
    only if this request already asked who they are."""
    title, default = MESSAGES.get(status, ("Something went wrong", "Please try again."))
    response = Template(
        template_name="error.html",
        context={
            "viewer": state_of(request).viewer,
            "csrf_token": csrf_of(request),
            "path": request.url.path,
            "title": title,
            "detail": detail or default,
            "status_code": status,
        },
        status_code=status,
        headers={"Retry-After": "2"} if status in (429, 503) else None,
    )
    _attach_cookies(request, response)
    return response


def _on_http(request: Request[Any, Any, Any], exc: HTTPException) -> Template:
    status = exc.status_code
    detail = str(exc.detail) if status < 500 and exc.detail and status != 404 else None
    return error_page(request, status, detail)


def _on_not_found(request: Request[Any, Any, Any], exc: NotFoundException) -> Template:
    return error_page(request, 404)


def _on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Template:
    if isinstance(exc, UNAVAILABLE):
        log.warning("page_dependency_unavailable", path=request.url.path, error=str(exc)[:300])
        return error_page(request, 503)
    log.exception("page_error", path=request.url.path)
    return error_page(request, 500, "Something went wrong on our side; try again.")


API_PREFIXES = ("/api/", "/schema", "/health")


def pages_or_problems(
    problems: dict[type[Exception] | int, Any],
) -> dict[type[Exception] | int, Any]:
    """The application's exception handlers: an address outside the API (a mistyped page,
    a wrong method on one) is answered with a page; the API keeps its problem details."""

    def choose(kind: type[Exception] | int, handler: Any) -> Any:
        page_handler = PAGE_EXCEPTION_HANDLERS.get(kind, _on_http)

        def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
            if request.url.path.startswith(API_PREFIXES):
                return handler(request, exc)  # type: ignore[no-any-return]
            return page_handler(request, exc)  # type: ignore[no-any-return]

        return handle

    return {
        kind: choose(kind, handler) if kind in (NotFoundException, HTTPException) else handler
        for kind, handler in problems.items()
    }


PAGE_EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    NotFoundException: _on_not_found,
    HTTPException: _on_http,
    Exception: _on_unexpected,
}
