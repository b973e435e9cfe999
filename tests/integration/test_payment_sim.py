"""The payment provider simulator as its own process (`python -m infra.cli payment-sim`), on
this run's MariaDB: payments and the attendee's card (every checkout outcome), refunds,
idempotency, signed notifications retried until taken, chaos, and a restart in the middle."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from consumers.payments.provider import (
    HttpPaymentProvider,
    PaymentRequest,
    ProviderRefused,
    ProviderUnavailable,
    RefundRequest,
)
from gateway.payments import check_signature
from infra.services import free_port
from infra.settings import Settings
from infra.simulators.payments import store
from infra.supervisor import die_with_parent
from tests.conftest import StackFactory
from tests.integration.test_processes import PROJECT, RoleProcess, role_env
from tests.support import eventually

pytestmark = pytest.mark.integration

SECRET = "whsec_test_payment_sim"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    def json(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value


@dataclass
class Receiver:
    """A merchant's notification endpoint: records what it is sent and answers with the
    statuses a test scripts for a path (200 once the script is used up)."""

    received: list[Received] = field(default_factory=list)
    script: dict[str, list[int]] = field(default_factory=dict)
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            _method, path, _version = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, colon, value = line.partition(":")
                if colon:
                    headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            statuses = self.script.get(path)
            status = statuses.pop(0) if statuses else 200
            self.received.append(Received(path, headers, body, status))
            head_line = f"HTTP/1.1 {status} Answer\r\n"
            writer.write(f"{head_line}content-length: 0\r\nconnection: close\r\n\r\n".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


@dataclass
class PaymentSim:
    """The simulator process of a test module, restartable on the same port and database."""

    settings: Settings
    port: int
    log_dir: Path
    process: RoleProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30)

    async def start(self) -> None:
        log_path = self.log_dir / f"payment-sim-{uuid.uuid4().hex[:6]}.log"
        env = {
            **os.environ,
            **role_env(self.settings),
            "BUTTERFLY_PAYMENT_WEBHOOK_SECRET": self.settings.payment_webhook_secret,
        }
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "infra.cli",
                "payment-sim",
                "--port",
                str(self.port),
                cwd=PROJECT,
                env=env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log_file,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.process = RoleProcess(process, log_path)
        await wait_until_up(self.base_url, self.process)

    async def stop(self) -> None:
        if self.process is not None:
            assert await self.process.terminate() == 0, self.process.tail()
            self.process = None


async def wait_until_up(base_url: str, process: RoleProcess | None = None) -> None:
    async def health() -> int:
        if process is not None and process.process.returncode is not None:
            raise AssertionError(f"the simulator exited:\n{process.tail()}")
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
                return (await client.get("/health")).status_code
        except httpx.TransportError:
            return 0

    await eventually(health, lambda status: status == 200, timeout=30, what="the sim up")


@pytest.fixture(scope="module")
async def sim(
    make_settings: StackFactory, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[PaymentSim]:
    settings = await make_settings(partitions=1, payment_webhook_secret=SECRET)
    running = PaymentSim(settings, free_port(), tmp_path_factory.mktemp("payments"))
    try:
        await running.start()
        yield running
    finally:
        try:
            await running.stop()
        finally:
            await store.drop_store(settings)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    running = Receiver()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def client(sim: PaymentSim) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the simulator; whatever chaos a test set is off again afterwards."""
    async with sim.client() as http:
        try:
            yield http
        finally:
            answer = await http.post(
                "/chaos", json={"freeze_notifications": False, "fail_requests": False}
            )
            assert answer.status_code == 200, answer.text


def hook() -> str:
    """A notification path of its own for one test's payments."""
    return f"/hooks/{uuid.uuid4().hex}"


def payment_body(receiver: Receiver, path: str, **overrides: Any) -> dict[str, Any]:
    return {
        "order_id": str(uuid.uuid4()),
        "registration_id": str(uuid.uuid4()),
        "convention_id": str(uuid.uuid4()),
        "amount_cents": 4500,
        "currency": "EUR",
        "description": "Test Con: order",
        "notify_url": receiver.url(path),
        **overrides,
    }


async def new_payment(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None
) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    answer = await client.post("/v1/payments", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    made: dict[str, Any] = answer.json()
    return made


async def checkout(
    client: httpx.AsyncClient, payment_id: str, outcome: str, **extra: Any
) -> httpx.Response:
    return await client.post(
        f"/v1/payments/{payment_id}/checkout", json={"outcome": outcome, **extra}
    )


async def received(
    receiver: Receiver, path: str, count: int, timeout: float = 15
) -> list[Received]:
    async def probe() -> list[Received]:
        return [r for r in receiver.at(path) if r.answered == 200]

    return await eventually(
        probe, lambda got: len(got) >= count, timeout=timeout, what=f"{count} at {path}"
    )


def assert_signed(notification: Received, secret: str = SECRET) -> None:
    header = notification.headers["butterfly-signature"]
    timestamp = header.split(",")[0].removeprefix("t=")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + notification.body, hashlib.sha256
    ).hexdigest()
    assert header == f"t={timestamp},v1={expected}"
    assert abs(time.time() - int(timestamp)) < 60
    check_signature(secret, header, notification.body, time.time(), 300)


# payments ------------------------------------------------------------------------------------


async def test_a_payment_waits_for_the_card_at_its_checkout_page(
    sim: PaymentSim, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    body = payment_body(receiver, hook(), description="Con <script>alert(1)</script>")
    made = await new_payment(client, body)
    assert made["status"] == "requires_action"
    assert made["payment_id"].startswith("pay_")
    assert made["checkout_url"] == f"{sim.base_url}/checkout/{made['payment_id']}"
    page = await client.get(made["checkout_url"])
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<html lang="en">' in page.text
    assert "<script>" not in page.text
    assert "&lt;script&gt;" in page.text
    for outcome in ("succeed", "decline", "timeout", "late", "duplicate"):
        assert f'name="outcome" value="{outcome}"' in page.text
    assert '<label for="delay">' in page.text
    shown = await client.get(f"/v1/payments/{made['payment_id']}")
    assert shown.json()["amount_cents"] == 4500
    assert shown.json()["status"] == "requires_action"


async def test_the_same_idempotency_key_is_the_same_payment(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    body = payment_body(receiver, hook())
    key = f"order-{uuid.uuid4()}"
    first, again = await asyncio.gather(
        new_payment(client, body, key), new_payment(client, body, key)
    )
    assert first["payment_id"] == again["payment_id"]
    other = await client.post(
        "/v1/payments", json={**body, "amount_cents": 4600}, headers={"Idempotency-Key": key}
    )
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    unkeyed = await asyncio.gather(new_payment(client, body), new_payment(client, body))
    assert len({p["payment_id"] for p in unkeyed} | {first["payment_id"]}) == 3


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b"[]", 422),
        (b'{"amount_cents": 4500}', 422),
    ],
)
async def test_a_request_that_is_not_a_payment_is_refused_with_what_is_wrong(
    client: httpx.AsyncClient, body: bytes, status: int
) -> None:
    answer = await client.post(
        "/v1/payments", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] in ("malformed_json", "invalid_request")


@pytest.mark.parametrize(
    "override",
    [
        {"amount_cents": 0},
        {"amount_cents": -5},
        {"currency": "eur"},
        {"notify_url": "ftp://example.test/x"},
        {"order_id": "x" * 65},
        {"description": "bell\x07"},
        {"extra": 1},
    ],
)
async def test_invalid_fields_are_named(
    client: httpx.AsyncClient, receiver: Receiver, override: dict[str, Any]
) -> None:
    answer = await client.post("/v1/payments", json=payment_body(receiver, hook(), **override))
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["fields"]


async def test_unknown_payments_are_not_found(client: httpx.AsyncClient) -> None:
    for path in ("/v1/payments/pay_000000000000000000000000", "/v1/payments/../etc"):
        answer = await client.get(path)
        assert answer.status_code == 404, answer.text
    answer = await checkout(client, "pay_000000000000000000000000", "succeed")
    assert answer.status_code == 404


# the card ------------------------------------------------------------------------------------


async def test_a_card_that_succeeds_notifies_the_payment_signed(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    body = payment_body(receiver, path)
    made = await new_payment(client, body)
    done = await checkout(client, made["payment_id"], "succeed")
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "succeeded"
    [notification] = await received(receiver, path, 1)
    assert_signed(notification)
    assert notification.headers["content-type"] == "application/json"
    sent = notification.json()
    assert sent["id"].startswith("evt_")
    assert {k: v for k, v in sent.items() if k != "id"} == {
        "type": "payment.succeeded",
        "payment_id": made["payment_id"],
        "order_id": body["order_id"],
        "registration_id": body["registration_id"],
        "convention_id": body["convention_id"],
        "amount_cents": 4500,
        "currency": "EUR",
    }
    again = await checkout(client, made["payment_id"], "decline")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "payment_not_pending"


async def test_a_declined_card_notifies_a_failed_payment(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    made = await new_payment(client, payment_body(receiver, path))
    assert (await checkout(client, made["payment_id"], "decline")).json()["status"] == "failed"
    [notification] = await received(receiver, path, 1)
    assert notification.json()["type"] == "payment.failed"
    assert notification.json()["payment_id"] == made["payment_id"]


async def test_a_card_that_never_answers_notifies_nothing(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    made = await new_payment(client, payment_body(receiver, path))
    answer = await checkout(client, made["payment_id"], "timeout")
    assert answer.json()["status"] == "processing"
    await asyncio.sleep(2)
    assert receiver.at(path) == []
    owed = await client.get(f"/v1/payments/{made['payment_id']}/notifications")
    assert owed.json() == {"notifications": []}


async def test_a_late_card_notifies_after_its_delay(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    made = await new_payment(client, payment_body(receiver, path))
    started = time.monotonic()
    answer = await checkout(client, made["payment_id"], "late", delay_seconds=2)
    assert answer.json()["status"] == "succeeded"
    await asyncio.sleep(1)
    assert receiver.at(path) == []
    [notification] = await received(receiver, path, 1)
    assert time.monotonic() - started >= 2
    assert notification.json()["type"] == "payment.succeeded"
    assert_signed(notification)


async def test_a_duplicate_notifies_twice_with_one_id_and_once_with_another(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    made = await new_payment(client, payment_body(receiver, path))
    await checkout(client, made["payment_id"], "duplicate")
    notifications = await received(receiver, path, 3)
    await asyncio.sleep(1)
    assert len(receiver.at(path)) == 3
    ids = sorted(n.json()["id"] for n in notifications)
    assert len(set(ids)) == 2
    assert sorted(ids.count(i) for i in set(ids)) == [1, 2]
    for notification in notifications:
        assert_signed(notification)
        assert notification.json()["type"] == "payment.succeeded"
        assert notification.json()["payment_id"] == made["payment_id"]


async def test_the_checkout_page_posts_a_form_and_comes_back(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    made = await new_payment(client, payment_body(receiver, path))
    target = f"/v1/payments/{made['payment_id']}/checkout"
    posted = await client.post(target, data={"outcome": "succeed", "delay_seconds": "10"})
    assert posted.status_code == 303
    assert posted.headers["location"] == f"/checkout/{made['payment_id']}"
    page = await client.get(posted.headers["location"])
    assert "Status: succeeded" in page.text
    assert "<form" not in page.text
    twice = await client.post(target, data={"outcome": "decline"})
    assert twice.status_code == 303
    await received(receiver, path, 1)


# notifications -------------------------------------------------------------------------------


async def test_a_notification_is_retried_until_it_is_taken(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    receiver.script[path] = [500, 503]
    made = await new_payment(client, payment_body(receiver, path))
    await checkout(client, made["payment_id"], "succeed")
    [taken] = await received(receiver, path, 1)
    attempts = receiver.at(path)
    assert [a.answered for a in attempts] == [500, 503, 200]
    assert len({a.json()["id"] for a in attempts}) == 1
    assert len({a.headers["butterfly-signature"] for a in attempts}) >= 1
    assert_signed(taken)
    owed = (await client.get(f"/v1/payments/{made['payment_id']}/notifications")).json()
    [delivery] = owed["notifications"]
    assert delivery["attempts"] == 3
    assert delivery["delivered_at"] is not None


async def test_frozen_notifications_wait_and_failing_requests_do_nothing(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    made = await new_payment(client, payment_body(receiver, path))
    frozen = await client.post("/chaos", json={"freeze_notifications": True})
    assert frozen.json() == {"freeze_notifications": True, "fail_requests": False}
    await checkout(client, made["payment_id"], "succeed")
    await asyncio.sleep(1.5)
    assert receiver.at(path) == []
    await client.post("/chaos", json={"freeze_notifications": False})
    await received(receiver, path, 1)

    await client.post("/chaos", json={"fail_requests": True})
    body = payment_body(receiver, hook())
    failing = await client.post("/v1/payments", json=body, headers={"Idempotency-Key": "f-1"})
    assert failing.status_code == 503
    assert failing.headers["retry-after"] == "1"
    assert failing.json()["error"]["code"] == "unavailable"
    assert (await client.get("/health")).status_code == 200
    await client.post("/chaos", json={"fail_requests": False})
    made_now = await new_payment(client, body, "f-1")
    assert made_now["status"] == "requires_action"


# refunds -------------------------------------------------------------------------------------


async def test_a_refund_is_paid_once_per_key_and_notified_once(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    path = hook()
    body = payment_body(receiver, path)
    made = await new_payment(client, body)
    await checkout(client, made["payment_id"], "succeed")
    await received(receiver, path, 1)
    refund_id = str(uuid.uuid4())
    ask = {"payment_id": made["payment_id"], "amount_cents": 1500, "reference": refund_id}
    first, again = await asyncio.gather(
        client.post("/v1/refunds", json=ask, headers={"Idempotency-Key": refund_id}),
        client.post("/v1/refunds", json=ask, headers={"Idempotency-Key": refund_id}),
    )
    assert first.status_code == again.status_code == 201, (first.text, again.text)
    assert first.json() == again.json()
    assert first.json()["status"] == "succeeded"
    assert first.json()["reference"] == refund_id
    notifications = await received(receiver, path, 2)
    await asyncio.sleep(1)
    refunds = [n.json() for n in receiver.at(path) if n.json()["type"] == "refund.succeeded"]
    assert len(refunds) == 1
    assert refunds[0]["reference"] == refund_id
    assert refunds[0]["amount_cents"] == 1500
    assert refunds[0]["order_id"] == body["order_id"]
    assert_signed(notifications[-1])
    payment = (await client.get(f"/v1/payments/{made['payment_id']}")).json()
    assert payment["refunded_cents"] == 1500

    reused = await client.post(
        "/v1/refunds", json={**ask, "amount_cents": 1}, headers={"Idempotency-Key": refund_id}
    )
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    too_much = await client.post(
        "/v1/refunds", json={**ask, "amount_cents": 3001}, headers={"Idempotency-Key": "r-2"}
    )
    assert too_much.status_code == 422
    assert too_much.json()["error"]["code"] == "amount_too_large"
    unkeyed = await client.post("/v1/refunds", json=ask)
    assert unkeyed.status_code == 400
    shown = await client.get(f"/v1/refunds/{first.json()['refund_id']}")
    assert shown.json() == first.json()


async def test_only_a_succeeded_payment_can_be_refunded(
    client: httpx.AsyncClient, receiver: Receiver
) -> None:
    made = await new_payment(client, payment_body(receiver, hook()))
    ask = {"payment_id": made["payment_id"], "amount_cents": 100, "reference": "r"}
    answer = await client.post("/v1/refunds", json=ask, headers={"Idempotency-Key": "r-x"})
    assert answer.status_code == 409
    assert answer.json()["error"]["code"] == "payment_not_succeeded"
    unknown = {**ask, "payment_id": "pay_000000000000000000000000"}
    answer = await client.post("/v1/refunds", json=unknown, headers={"Idempotency-Key": "r-y"})
    assert answer.status_code == 404


# restarts ------------------------------------------------------------------------------------


async def test_payments_and_owed_notifications_survive_a_restart(
    sim: PaymentSim, receiver: Receiver
) -> None:
    path = hook()
    body = payment_body(receiver, path)
    async with sim.client() as client:
        made = await new_payment(client, body, key="restart-1")
        await checkout(client, made["payment_id"], "late", delay_seconds=4)
    await sim.stop()
    assert receiver.at(path) == []
    await sim.start()
    async with sim.client() as client:
        again = await new_payment(client, body, key="restart-1")
        assert again["payment_id"] == made["payment_id"]
        assert again["status"] == "succeeded"
    [notification] = await received(receiver, path, 1)
    assert notification.json()["payment_id"] == made["payment_id"]
    assert_signed(notification)


# the port's HTTP client against the simulator ------------------------------------------------


async def test_the_provider_client_pays_refunds_and_says_how_a_call_failed(
    sim: PaymentSim, client: httpx.AsyncClient, receiver: Receiver
) -> None:
    provider = HttpPaymentProvider(sim.base_url, timeout_seconds=10)
    await provider.start()
    try:
        order = PaymentRequest(
            order_id=uuid.uuid4(),
            registration_id=uuid.uuid4(),
            convention_id=uuid.uuid4(),
            amount_cents=3000,
            currency="EUR",
            description="Test Con: order",
            notify_url=receiver.url(hook()),
        )
        key = str(uuid.uuid4())
        made = await provider.create_payment(order, idempotency_key=key)
        assert made.status == "requires_action"
        assert made.checkout_url == f"{sim.base_url}/checkout/{made.payment_id}"
        assert (await provider.create_payment(order, idempotency_key=key)) == made

        refund = RefundRequest(made.payment_id, 1000, str(uuid.uuid4()))
        with pytest.raises(ProviderRefused) as refused:
            await provider.refund(refund, idempotency_key=refund.reference)
        assert (refused.value.status, refused.value.code) == (409, "payment_not_succeeded")

        await checkout(client, made.payment_id, "succeed")
        paid = await provider.refund(refund, idempotency_key=refund.reference)
        assert (paid.status, paid.amount_cents, paid.reference) == (
            "succeeded",
            1000,
            refund.reference,
        )
        assert await provider.refund(refund, idempotency_key=refund.reference) == paid

        await client.post("/chaos", json={"fail_requests": True})
        with pytest.raises(ProviderUnavailable) as down:
            await provider.refund(refund, idempotency_key=refund.reference)
        assert down.value.retry_after == 1
    finally:
        await provider.close()

    nowhere = HttpPaymentProvider(f"http://127.0.0.1:{free_port()}", timeout_seconds=2)
    await nowhere.start()
    try:
        with pytest.raises(ProviderUnavailable):
            await nowhere.create_payment(order, idempotency_key=key)
    finally:
        await nowhere.close()
