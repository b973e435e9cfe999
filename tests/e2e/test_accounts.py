"""Accounts end to end: sign up, mailed codes, sessions shared by gateways, passwords,
ownership of registrations and roles, through the gateway, the account decider, the accounts
projector and the mailer, each running as its own process.

Every test signs up accounts with e-mail addresses of its own, so login counters and mails
never mix between tests.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers.accounts.mailer import latest_mail_to
from infra.services import free_port
from infra.supervisor import die_with_parent
from tests.conftest import TEST_TOKEN
from tests.e2e.conftest import Stack
from tests.e2e.test_registration_http import create_open_convention
from tests.support import eventually

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple rhymes with maple"
VERIFY_SUBJECT = "Confirm your e-mail address"
RESET_SUBJECT = "Reset your Butterfly password"
ANSWERED_FIELDS = ("type", "title", "status", "detail")
"""What two problem answers must share to say the same; `instance` and correlation ids may
differ."""


def fresh_email(tag: str) -> str:
    return f"{tag}.{uuid.uuid4().hex[:12]}@example.org"


def full_width(text: str) -> str:
    """ASCII letters, digits and punctuation as their full-width forms (NFKC folds them
    back)."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem_type(response: httpx.Response) -> str:
    return str(response.json()["type"]).rsplit("/", 1)[-1]


async def sign_up(
    stack: Stack, email: str, password: str = PASSWORD, name: str = "Ada Lovelace"
) -> httpx.Response:
    async with stack.client() as client:
        return await client.post(
            "/api/v1/accounts", json={"email": email, "password": password, "name": name}
        )


async def mail_to(stack: Stack, email: str, subject: str) -> EmailMessage:
    """The newest mail to `email`, once one with `subject` in its subject is the newest."""

    async def newest() -> EmailMessage | None:
        return latest_mail_to(stack.settings.mail_folder, email)

    found = await eventually(
        newest,
        lambda mail: mail is not None and subject in str(mail["Subject"]),
        timeout=30,
        interval=0.1,
        what=f"a mail '{subject}' to {email} in {stack.settings.mail_folder}",
    )
    assert found is not None
    return found


def code_in(mail: EmailMessage) -> str:
    """The code of a mail: alone on its own indented line."""
    part = mail.get_body(preferencelist=("plain",))
    assert part is not None
    body: str = part.get_content()
    codes = [line.strip() for line in body.splitlines() if line.startswith("    ") and line.strip()]
    assert len(codes) == 1, body
    return codes[0]


async def verified_account(stack: Stack, email: str, password: str = PASSWORD) -> str:
    """Sign up and verify; the account id."""
    made = await sign_up(stack, email, password)
    assert made.status_code == 201, made.text
    code = code_in(await mail_to(stack, email, VERIFY_SUBJECT))
    async with stack.client() as client:
        verified = await client.post("/api/v1/accounts/verify", json={"token": code})
    assert verified.status_code == 200, verified.text
    return str(made.json()["account_id"])


async def log_in(
    stack: Stack, email: str, password: str = PASSWORD, base_url: str | None = None
) -> httpx.Response:
    """A login from a client of its own, so its cookies reach no other request."""
    async with httpx.AsyncClient(base_url=base_url or stack.base_url, timeout=30) as client:
        return await client.post("/api/v1/sessions", json={"email": email, "password": password})


async def session_token(stack: Stack, email: str, password: str = PASSWORD) -> str:
    answer = await log_in(stack, email, password)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["token"])


async def me(base_url: str, token: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.get("/api/v1/me", headers=bearer(token))


def cookie_line(response: httpx.Response, name: str) -> str:
    lines = [v for v in response.headers.get_list("set-cookie") if v.startswith(f"{name}=")]
    assert len(lines) == 1, response.headers.get_list("set-cookie")
    return lines[0]


def same_problem(a: httpx.Response, b: httpx.Response) -> bool:
    first, second = a.json(), b.json()
    return all(first.get(f) == second.get(f) for f in ANSWERED_FIELDS)


# --- 1. sign up and verify ------------------------------------------------------------------


async def test_sign_up_mails_a_code_that_verifies_the_address(stack: Stack) -> None:
    local = f"ada.{uuid.uuid4().hex[:10]}"
    email = f"{local}@example.org"
    made = await sign_up(stack, email)
    assert made.status_code == 201, made.text
    assert made.json()["verified"] is False
    assert made.json()["email"] == email
    account_id = made.json()["account_id"]

    code = code_in(await mail_to(stack, email, VERIFY_SUBJECT))
    assert code.startswith(f"{account_id}.")
    async with stack.client() as client:
        guessed = await client.post(
            "/api/v1/accounts/verify",
            json={"token": f"{account_id}.{secrets.token_urlsafe(32)}"},
        )
        assert guessed.status_code == 422, guessed.text
        assert problem_type(guessed) == "invalid-token"
        made_up = await client.post(
            "/api/v1/accounts/verify",
            json={"token": f"{uuid.uuid4()}.{secrets.token_urlsafe(32)}"},
        )
        assert made_up.status_code == 422, made_up.text
        assert problem_type(made_up) == "invalid-token"

        verified = await client.post("/api/v1/accounts/verify", json={"token": code})
        assert verified.status_code == 200, verified.text
        assert verified.json() == {"account_id": account_id, "verified": True}
        again = await client.post("/api/v1/accounts/verify", json={"token": code})
        assert again.status_code == 200, again.text
        assert again.json()["verified"] is True

    token = await session_token(stack, email)
    assert (await me(stack.base_url, token)).json()["verified"] is True

    for other_form in (
        email.upper(),
        f"{local}@EXAMPLE.org",
        f"{full_width(local)}@example.org",
        f"  {local.title()}@Example.Org ",
    ):
        taken = await sign_up(stack, other_form)
        assert taken.status_code == 409, (other_form, taken.text)
        assert problem_type(taken) == "email-taken"
        assert taken.headers["content-type"].startswith("application/problem+json")


# --- 2. sessions: bearer, cookie, CSRF, wrong credentials, rate limit -----------------------


async def test_log_in_by_bearer_and_by_cookie_with_csrf(stack: Stack) -> None:
    email = fresh_email("login")
    account_id = await verified_account(stack, email)
    answer = await log_in(stack, email)
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["account_id"] == account_id
    token, csrf = body["token"], body["csrf_token"]
    assert token
    assert csrf
    assert token != csrf

    session = cookie_line(answer, "butterfly_session")
    attributes = {part.strip().lower() for part in session.split(";")}
    assert session.startswith(f"butterfly_session={token};")
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    csrf_cookie = cookie_line(answer, "butterfly_csrf")
    assert csrf_cookie.startswith(f"butterfly_csrf={csrf};")
    assert "httponly" not in {part.strip().lower() for part in csrf_cookie.split(";")}

    by_bearer = await me(stack.base_url, token)
    assert by_bearer.status_code == 200, by_bearer.text
    assert by_bearer.json()["account_id"] == account_id

    cookies = {"butterfly_session": token, "butterfly_csrf": csrf}
    async with stack.client(cookies=cookies) as browser:
        by_cookie = await browser.get("/api/v1/me")
        assert by_cookie.status_code == 200, by_cookie.text
        assert by_cookie.json()["account_id"] == account_id

        forged = await browser.delete("/api/v1/sessions/current")
        assert forged.status_code == 403, forged.text
        assert problem_type(forged) == "csrf-failed"
        wrong = await browser.delete("/api/v1/sessions/current", headers={"X-CSRF-Token": token})
        assert wrong.status_code == 403, wrong.text
        assert problem_type(wrong) == "csrf-failed"
        assert (await browser.get("/api/v1/me")).status_code == 200

        logged_out = await browser.delete(
            "/api/v1/sessions/current", headers={"X-CSRF-Token": csrf}
        )
        assert logged_out.status_code == 200, logged_out.text
    assert (await me(stack.base_url, token)).status_code == 401


async def test_wrong_password_and_unknown_email_look_alike(stack: Stack) -> None:
    email = fresh_email("alike")
    await verified_account(stack, email)
    wrong = await log_in(stack, email, "not the password at all")
    unknown = await log_in(stack, fresh_email("nobody"), "not the password at all")
    assert (wrong.status_code, unknown.status_code) == (401, 401)
    assert same_problem(wrong, unknown), (wrong.json(), unknown.json())
    assert problem_type(wrong) == "invalid-credentials"
    assert wrong.headers.get("www-authenticate") == unknown.headers.get("www-authenticate")
    assert "set-cookie" not in wrong.headers


async def test_too_many_failed_logins_make_the_account_wait(stack: Stack) -> None:
    email = fresh_email("limited")
    await verified_account(stack, email)
    limit = stack.settings.login_attempts_per_account
    for attempt in range(limit):
        failed = await log_in(stack, email, f"wrong password {attempt}")
        assert failed.status_code == 401, (attempt, failed.text)
    for password in ("yet another wrong one", PASSWORD):
        blocked = await log_in(stack, email, password)
        assert blocked.status_code == 429, blocked.text
        assert problem_type(blocked) == "too-many-attempts"
        retry_after = int(blocked.headers["retry-after"])
        assert 1 <= retry_after <= stack.settings.login_window_seconds
    other = fresh_email("unlimited")
    await verified_account(stack, other)
    assert (await log_in(stack, other)).status_code == 201


# --- 3. two gateways share sessions ---------------------------------------------------------


def stack_environment(stack: Stack, port: int) -> dict[str, str]:
    """The environment the stack's roles run with (as `tests/e2e/conftest.py` builds it),
    for a gateway of its own on `port`."""
    settings = stack.settings
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "BUTTERFLY_REDIS_NAMESPACE": settings.redis_namespace,
        "BUTTERFLY_ADMIN_TOKEN": TEST_TOKEN,
        "BUTTERFLY_TOPIC_PREFIX": settings.topic_prefix,
        "BUTTERFLY_DB_PREFIX": settings.db_prefix,
        "BUTTERFLY_HTTP_PORT": str(port),
        "BUTTERFLY_PARTNER_PORT": str(settings.partner_port),
        "BUTTERFLY_LODGING_CIRCUIT_OPEN_SECONDS": "1",
        "BUTTERFLY_DECISION_WAIT_SECONDS": "10",
        "BUTTERFLY_ENV_FILE": "",
    }


@asynccontextmanager
async def another_gateway(stack: Stack, log_file: Path) -> AsyncIterator[str]:
    """A second gateway process on the stack's broker, databases and Redis; its base URL."""
    port = free_port()
    with log_file.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "infra.cli",
            "gateway",
            "--port",
            str(port),
            env=stack_environment(stack, port),
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
        base_url = f"http://127.0.0.1:{port}"

        async def health() -> int:
            if process.returncode is not None:
                return -1
            try:
                async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
                    return (await client.get("/health")).status_code
            except httpx.TransportError:
                return 0

        try:
            status = await eventually(
                health,
                lambda code: code in (200, -1),
                timeout=60,
                interval=0.2,
                what="the second gateway answering /health",
            )
            assert status == 200, log_file.read_text(errors="replace")
            yield base_url
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 20)
                except TimeoutError:
                    process.kill()
                    await process.wait()


async def test_two_gateways_share_sessions(stack: Stack, tmp_path: Path) -> None:
    email = fresh_email("shared")
    account_id = await verified_account(stack, email)
    a = stack.base_url
    async with another_gateway(stack, tmp_path / "gateway-b.log") as b:
        first = await log_in(stack, email, base_url=a)
        assert first.status_code == 201, first.text
        token = first.json()["token"]
        on_b = await me(b, token)
        assert on_b.status_code == 200, on_b.text
        assert on_b.json()["account_id"] == account_id

        async with httpx.AsyncClient(base_url=b, timeout=30) as client:
            ended = await client.delete("/api/v1/sessions/current", headers=bearer(token))
        assert ended.status_code == 200, ended.text
        assert (await me(a, token)).status_code == 401
        assert (await me(b, token)).status_code == 401

        tokens = []
        for base_url in (a, b, a):
            answer = await log_in(stack, email, base_url=base_url)
            assert answer.status_code == 201, answer.text
            tokens.append(answer.json()["token"])
        for made in tokens:
            assert (await me(a, made)).status_code == 200
            assert (await me(b, made)).status_code == 200
        async with httpx.AsyncClient(base_url=b, timeout=30) as client:
            everywhere = await client.delete("/api/v1/sessions", headers=bearer(tokens[0]))
        assert everywhere.status_code == 200, everywhere.text
        assert everywhere.json()["sessions_ended"] == len(tokens)
        for made in tokens:
            assert (await me(a, made)).status_code == 401
            assert (await me(b, made)).status_code == 401


# --- 4. passwords: change and reset ---------------------------------------------------------


async def test_changing_the_password_ends_every_other_session(stack: Stack) -> None:
    email = fresh_email("change")
    await verified_account(stack, email)
    used, other = await session_token(stack, email), await session_token(stack, email)
    async with stack.client() as client:
        wrong = await client.post(
            "/api/v1/me/password",
            headers=bearer(used),
            json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        )
        assert wrong.status_code == 403, wrong.text
        changed = await client.post(
            "/api/v1/me/password",
            headers=bearer(used),
            json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
    assert changed.status_code == 200, changed.text
    fresh = changed.json()["token"]
    assert fresh not in (used, other)
    assert (await me(stack.base_url, used)).status_code == 401
    assert (await me(stack.base_url, other)).status_code == 401
    assert (await me(stack.base_url, fresh)).status_code == 200
    assert (await log_in(stack, email, PASSWORD)).status_code == 401
    assert (await log_in(stack, email, NEW_PASSWORD)).status_code == 201


async def test_a_mailed_reset_code_sets_a_new_password(stack: Stack) -> None:
    email = fresh_email("reset")
    await verified_account(stack, email)
    before = await session_token(stack, email)
    async with stack.client() as client:
        unknown = await client.post(
            "/api/v1/accounts/password-reset", json={"email": fresh_email("nobody")}
        )
        assert unknown.status_code == 202, unknown.text
        asked = await client.post("/api/v1/accounts/password-reset", json={"email": email})
        assert asked.status_code == 202, asked.text
        assert asked.json() == unknown.json()

        code = code_in(await mail_to(stack, email, RESET_SUBJECT))
        too_short = await client.post(
            "/api/v1/accounts/password-reset/confirm", json={"token": code, "password": "short"}
        )
        assert too_short.status_code == 422, too_short.text
        reset = await client.post(
            "/api/v1/accounts/password-reset/confirm",
            json={"token": code, "password": NEW_PASSWORD},
        )
        assert reset.status_code == 200, reset.text
        reused = await client.post(
            "/api/v1/accounts/password-reset/confirm",
            json={"token": code, "password": "a third password"},
        )
        assert reused.status_code == 422, reused.text
        assert problem_type(reused) == "invalid-token"

    assert (await me(stack.base_url, before)).status_code == 401
    assert (await log_in(stack, email, PASSWORD)).status_code == 401
    assert (await log_in(stack, email, NEW_PASSWORD)).status_code == 201


# --- 5. who owns a registration -------------------------------------------------------------


async def test_a_registration_made_logged_in_belongs_to_its_account(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, 50)
    email_a, email_b = fresh_email("owner"), fresh_email("stranger")
    account_a = await verified_account(stack, email_a)
    await verified_account(stack, email_b)
    token_a, token_b = await session_token(stack, email_a), await session_token(stack, email_b)

    async with stack.client() as client:
        made = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            headers=bearer(token_a),
            json={"email": email_a, "name": "Ada", "badge_type": "STD"},
        )
        assert made.status_code == 201, made.text
        assert made.json()["account_id"] == account_a
        registration_id = made.json()["registration_id"]
        url = f"/api/v1/registrations/{registration_id}"

        mine = await client.get("/api/v1/me/registrations", headers=bearer(token_a))
        assert mine.status_code == 200, mine.text
        assert [r["registration_id"] for r in mine.json()["items"]] == [registration_id]
        theirs = await client.get("/api/v1/me/registrations", headers=bearer(token_b))
        assert theirs.json()["items"] == []

        for response in (
            await client.get(url, headers=bearer(token_b)),
            await client.delete(url, headers=bearer(token_b)),
            await client.get(url),
            await client.delete(url),
        ):
            assert response.status_code == 404, response.text
            assert problem_type(response) == "registration-not-found"
        assert (await client.get(url, headers=bearer(token_a))).json()["status"] == "confirmed"
        assert (await client.get(url, headers=stack.admin)).status_code == 200


async def test_guest_registrations_join_the_account_once_its_email_is_verified(
    stack: Stack,
) -> None:
    convention_id = await create_open_convention(stack, 50)
    email = fresh_email("guest")
    async with stack.client() as client:
        guest = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": email.upper(), "name": "Grace", "badge_type": "STD"},
        )
        assert guest.status_code == 201, guest.text
        assert guest.json()["account_id"] is None
        registration_id = guest.json()["registration_id"]

        made = await sign_up(stack, email)
        assert made.status_code == 201, made.text
        token = await session_token(stack, email)
        unverified = await client.get("/api/v1/me/registrations", headers=bearer(token))
        assert unverified.status_code == 200, unverified.text
        assert unverified.json()["items"] == []

        code = code_in(await mail_to(stack, email, VERIFY_SUBJECT))
        verified = await client.post("/api/v1/accounts/verify", json={"token": code})
        assert verified.status_code == 200, verified.text
        claimed = await client.get("/api/v1/me/registrations", headers=bearer(token))
        assert [r["registration_id"] for r in claimed.json()["items"]] == [registration_id]
        reachable = await client.get(
            f"/api/v1/registrations/{registration_id}", headers=bearer(token)
        )
        assert reachable.status_code == 200, reachable.text


# --- 6. roles -------------------------------------------------------------------------------


NEW_CONVENTION: dict[str, Any] = {
    "name": "Staffed Con",
    "starts_on": "2027-09-01",
    "ends_on": "2027-09-02",
    "badge_types": [{"code": "STD", "name": "Standard", "price_cents": 0, "quota": 5}],
}


async def create_convention(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post("/api/v1/admin/conventions", headers=headers, json=NEW_CONVENTION)


async def test_roles_are_granted_audited_and_revoked(stack: Stack) -> None:
    email_admin, email_plain = fresh_email("admin"), fresh_email("plain")
    admin_id = await verified_account(stack, email_admin)
    plain_id = await verified_account(stack, email_plain)
    roles_url = f"/api/v1/admin/accounts/{admin_id}/roles"
    async with stack.client() as client:
        plain = await session_token(stack, email_plain)
        assert (await create_convention(client, bearer(plain))).status_code == 403
        assert (await create_convention(client, {})).status_code == 401
        assert (
            await client.post(roles_url, headers=bearer(plain), json={"role": "admin"})
        ).status_code == 403

        granted = await client.post(roles_url, headers=stack.admin, json={"role": "admin"})
        assert granted.status_code == 200, granted.text
        assert {"role": "admin", "convention_id": None} in granted.json()["roles"]

        admin = await session_token(stack, email_admin)
        assert {"role": "admin", "convention_id": None} in (await me(stack.base_url, admin)).json()[
            "roles"
        ]
        created = await create_convention(client, bearer(admin))
        assert created.status_code == 201, created.text
        convention_id = created.json()["convention_id"]

        unscoped = await client.post(
            f"/api/v1/admin/accounts/{plain_id}/roles",
            headers=bearer(admin),
            json={"role": "staff"},
        )
        assert unscoped.status_code == 422, unscoped.text
        assert problem_type(unscoped) == "scope-required"
        staff = await client.post(
            f"/api/v1/admin/accounts/{plain_id}/roles",
            headers=bearer(admin),
            json={"role": "staff", "convention_id": convention_id},
        )
        assert staff.status_code == 200, staff.text
        assert staff.json()["roles"] == [{"role": "staff", "convention_id": convention_id}]

        history = await client.get(f"/api/v1/admin/accounts/{admin_id}", headers=stack.admin)
        assert history.status_code == 200, history.text
        assert [(h["role"], h["granted"], h["by"]) for h in history.json()["role_history"]] == [
            ("admin", True, "admin-token")
        ]
        plain_history = await client.get(
            f"/api/v1/admin/accounts/{plain_id}", headers=bearer(admin)
        )
        assert [
            (h["role"], h["convention_id"], h["by"]) for h in plain_history.json()["role_history"]
        ] == [("staff", convention_id, f"account:{admin_id}")]

        revoked = await client.post(
            f"{roles_url}/revoke", headers=stack.admin, json={"role": "admin"}
        )
        assert revoked.status_code == 200, revoked.text
        assert revoked.json()["roles"] == []
        assert (await create_convention(client, bearer(admin))).status_code == 403
        after = await client.get(f"/api/v1/admin/accounts/{admin_id}", headers=stack.admin)
        assert [(h["role"], h["granted"]) for h in after.json()["role_history"]] == [
            ("admin", True),
            ("admin", False),
        ]


# --- 7. hostile input -----------------------------------------------------------------------


async def test_hostile_account_input_is_refused_never_a_server_error(stack: Stack) -> None:
    async def refused(path: str, body: dict[str, Any]) -> httpx.Response:
        async with stack.client() as client:
            answer = await client.post(path, json=body)
        assert answer.status_code < 500, (body, answer.text)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        return answer

    email = fresh_email("hostile")
    short = await refused(
        "/api/v1/accounts", {"email": email, "password": "too short", "name": "Ada"}
    )
    assert "password" in {e["field"] for e in short.json()["errors"]}
    for bad_email in (
        f"ada\x07{email}",
        f"ada\x00{email}",
        email.replace("@", "\r\n@"),
        f"ada\u202e{email}",
    ):
        answer = await refused(
            "/api/v1/accounts", {"email": bad_email, "password": PASSWORD, "name": "Ada"}
        )
        assert "email" in {e["field"] for e in answer.json()["errors"]}
    long_name = await refused(
        "/api/v1/accounts", {"email": email, "password": PASSWORD, "name": "N" * 300}
    )
    assert "name" in {e["field"] for e in long_name.json()["errors"]}
    await refused("/api/v1/accounts", {"email": email, "password": PASSWORD, "name": "A\x1bB"})

    await verified_account(stack, email)
    huge = await refused("/api/v1/sessions", {"email": email, "password": "x" * 10_000})
    assert "password" in {e["field"] for e in huge.json()["errors"]}
    await refused("/api/v1/sessions", {"email": "x" * 10_000, "password": PASSWORD})
    await refused(
        "/api/v1/accounts/password-reset/confirm",
        {"token": "../../etc/passwd\x00", "password": NEW_PASSWORD},
    )
    await refused("/api/v1/accounts/verify", {"token": "x" * 10_000})

    async with stack.client() as client:
        control = await client.post(
            "/api/v1/sessions", json={"email": f"ada\x07{email}", "password": PASSWORD}
        )
        assert control.status_code == 401, control.text
        still = await client.post("/api/v1/sessions", json={"email": email, "password": PASSWORD})
        assert still.status_code == 201, still.text
