"""Prometheus metrics without services: requests labelled by route template (never the raw
path), /metrics never shed, the decider's decision outcomes, the partner circuit's gauge and
the partner calls. The registry is the process's own, shared by every test: each test reads
how much its own calls moved a series."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, get, post
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY, Counter, Gauge, Histogram

from consumers.lodging.circuit import CircuitBreaker
from consumers.lodging.partner import PartnerClient, PartnerRefused, PartnerUnavailable
from consumers.registration.handler import decision_outcome
from gateway.metrics import count_requests, metrics
from gateway.middleware import shed_load_middleware
from infra.metrics import http_method, route_label, serve_metrics
from infra.settings import Settings
from schemas.registration import (
    AttendeeRegistered,
    ConventionOpened,
    RegistrationRejected,
    RejectionReason,
)

PROJECT = Path(__file__).resolve().parents[2]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@contextmanager
def moved(name: str, **labels: str) -> Iterator[list[float]]:
    """How much the series `name{labels}` moved inside the block (read after it)."""
    before = sample(name, **labels)
    change: list[float] = []
    yield change
    change.append(sample(name, **labels) - before)


def label_values(name: str, label: str) -> set[str]:
    return {
        s.labels[label]
        for metric in REGISTRY.collect()
        for s in metric.samples
        if s.name == name and label in s.labels
    }


@get("/things/{thing_id:uuid}", sync_to_thread=False)
def thing(thing_id: FromPath[uuid.UUID]) -> dict[str, str]:
    return {"id": str(thing_id)}


@post("/things", sync_to_thread=False)
def make_thing() -> dict[str, str]:
    return {}


@get("/health", sync_to_thread=False)
def health() -> dict[str, str]:
    return {"status": "ok"}


def app(shed_everything: bool = False) -> Litestar:
    """A small app counted as the gateway is; shedding everything that may be shed."""
    made = Litestar(
        route_handlers=[thing, make_thing, health, metrics],
        middleware=[shed_load_middleware(0, 0.2, 0)] if shed_everything else [],
    )
    count_requests(made)
    return made


THING = "/things/{thing_id}"


async def test_requests_are_counted_by_route_template_never_by_path() -> None:
    with (
        moved("butterfly_http_requests_total", method="GET", route=THING, status="200") as ok,
        moved(
            "butterfly_http_request_duration_seconds_count",
            method="GET",
            route=THING,
            status="200",
        ) as timed,
        moved("butterfly_http_requests_in_flight") as in_flight,
    ):
        async with AsyncTestClient(app()) as client:
            ids = [uuid.uuid4() for _ in range(3)]
            for thing_id in ids:
                assert (await client.get(f"/things/{thing_id}")).status_code == 200
    assert ok == [3]
    assert timed == [3]
    routes = label_values("butterfly_http_requests_total", "route")
    assert THING in routes
    assert not any(str(thing_id) in route for route in routes for thing_id in ids)
    assert in_flight == [0]  # each one in while it was answered, and out again


async def test_unmatched_paths_and_made_up_methods_fall_into_one_series_each() -> None:
    with (
        moved(
            "butterfly_http_requests_total", method="GET", route="unmatched", status="404"
        ) as missing,
        moved(
            "butterfly_http_requests_total", method="other", route="unmatched", status="405"
        ) as odd,
    ):
        async with AsyncTestClient(app()) as client:
            for n in range(4):
                assert (await client.get(f"/nowhere/{uuid.uuid4()}/{n}")).status_code == 404
            # a path parameter that does not parse matches no route either
            assert (await client.get("/things/not-a-uuid")).status_code == 404
            assert (await client.request("BREW", "/things")).status_code == 405
    assert missing == [5]
    assert odd == [1]
    assert {route_label(None), route_label(""), route_label(THING)} == {"unmatched", THING}
    assert http_method("get") == "GET"
    assert http_method("BREW") == "other"
    assert "BREW" not in label_values("butterfly_http_requests_total", "method")


async def test_metrics_answer_in_text_format_unshed_while_everything_else_is_shed() -> None:
    with (
        moved("butterfly_http_requests_shed_total", route="/things") as shed,
        moved("butterfly_http_requests_total", method="POST", route="/things", status="503") as r,
    ):
        async with AsyncTestClient(app(shed_everything=True)) as client:
            refused = await client.post("/things", json={})
            assert refused.status_code == 503
            assert (await client.get("/health")).status_code == 200
            scraped = await client.get("/metrics")
    assert shed == [1]
    assert r == [1]
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    assert "# TYPE butterfly_http_requests_total counter" in text
    assert 'butterfly_http_requests_shed_total{route="/things"}' in text
    assert "butterfly_http_request_duration_seconds_bucket" in text


async def test_metrics_speak_openmetrics_to_a_scraper_that_asks() -> None:
    async with AsyncTestClient(app()) as client:
        scraped = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert scraped.headers["content-type"].startswith("application/openmetrics-text")
    assert scraped.text.rstrip().endswith("# EOF")


def test_the_metrics_route_is_left_out_of_the_openapi_document() -> None:
    paths = app().openapi_schema.paths or {}
    assert "/metrics" not in paths
    assert THING in paths


def test_a_decision_is_accepted_rejected_with_its_reason_or_unchanged() -> None:
    convention_id, registration_id = uuid.uuid4(), uuid.uuid4()
    registered = AttendeeRegistered(
        convention_id=convention_id,
        registration_id=registration_id,
        email="ada@example.org",
        name="Ada",
        badge_type="STD",
        request_hash="h",
    )
    rejected = RegistrationRejected(
        convention_id=convention_id,
        registration_id=registration_id,
        email="ada@example.org",
        name="Ada",
        badge_type="STD",
        reason=RejectionReason.SOLD_OUT,
        request_hash="h",
    )
    assert decision_outcome([registered]) == ("accepted", "")
    assert decision_outcome([ConventionOpened(convention_id=convention_id)]) == ("accepted", "")
    assert decision_outcome([rejected]) == ("rejected", "sold_out")
    assert decision_outcome([]) == ("unchanged", "")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_the_circuit_gauge_follows_closed_open_half_open_closed() -> None:
    clock = FakeClock()
    circuit = CircuitBreaker(failure_threshold=2, open_seconds=5.0, clock=clock)
    gauge = "butterfly_lodging_partner_circuit_state"
    assert sample(gauge) == 0
    for _ in range(2):
        await circuit.ready()
        circuit.record_failure()
    assert sample(gauge) == 2
    clock.now += 5
    await circuit.ready()
    assert sample(gauge) == 1
    circuit.record_success()
    assert sample(gauge) == 0


def partner_answering(answer: httpx.Response | Exception) -> PartnerClient:
    """A partner client whose HTTP transport answers `answer` to every call."""

    def handler(_: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return answer

    partner = PartnerClient("http://partner.invalid", 1.0, CircuitBreaker(100, 1.0))
    partner._client = httpx.AsyncClient(
        base_url="http://partner.invalid", transport=httpx.MockTransport(handler)
    )
    return partner


RESERVATION: dict[str, Any] = {
    "ack": "HB-1",
    "status": "held",
    "hotel": "H1",
    "room_type": "KING",
    "check_in": date(2027, 5, 1).isoformat(),
    "check_out": date(2027, 5, 3).isoformat(),
    "guests": ["Ada"],
    "total_cents": 20000,
    "reference": "r",
}


@pytest.mark.parametrize(
    ("answer", "result"),
    [
        (httpx.Response(200, json=RESERVATION), "ok"),
        (httpx.Response(404, json={"code": "unknown", "message": "no"}), "refused"),
        (httpx.Response(503, json={"code": "busy", "message": "later"}), "unavailable"),
        (httpx.ConnectError("refused"), "unavailable"),
    ],
)
async def test_partner_calls_are_timed_and_failures_counted_by_operation(
    answer: httpx.Response | Exception, result: str
) -> None:
    partner = partner_answering(answer)
    failure = PartnerRefused if result == "refused" else PartnerUnavailable
    with (
        moved(
            "butterfly_lodging_partner_call_seconds_count", operation="confirm", result=result
        ) as timed,
        moved(
            "butterfly_lodging_partner_call_failures_total", operation="confirm", kind=result
        ) as failed,
    ):
        try:
            if result == "ok":
                await partner.confirm("HB-1")
            else:
                with pytest.raises(failure):
                    await partner.confirm("HB-1")
        finally:
            await partner.close()
    assert timed == [1]
    assert failed == [0 if result == "ok" else 1]


def test_the_metrics_port_is_a_setting_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).metrics_port == 0
    monkeypatch.setenv("BUTTERFLY_METRICS_PORT", "9464")
    assert Settings(_env_file=None).metrics_port == 9464
    serve_metrics(0, "127.0.0.1")  # port 0: no server, nothing bound


def catalogue() -> dict[str, str]:
    """Every metric infra.metrics defines: its family name and type."""
    import infra.metrics as defined

    return {
        family.name: family.type
        for value in vars(defined).values()
        if isinstance(value, Counter | Gauge | Histogram)
        for family in value.describe()
    }


SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def test_every_metric_is_named_for_butterfly() -> None:
    names = catalogue()
    assert len(names) >= 18
    assert all(name.startswith("butterfly_") for name in names)


def test_the_dashboard_asks_only_for_metrics_that_exist() -> None:
    dashboard = json.loads((PROJECT / "deploy" / "grafana" / "butterfly.json").read_text())
    series = {name + suffix for name, kind in catalogue().items() for suffix in SUFFIXES[kind]}
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", ())]
    asked = {name for expr in exprs for name in re.findall(r"butterfly_[a-z_]+", expr)}
    assert asked <= series, asked - series
    assert {
        "butterfly_http_requests_total",
        "butterfly_http_request_duration_seconds_bucket",
        "butterfly_http_requests_shed_total",
        "butterfly_registration_decisions_total",
        "butterfly_consumer_lag",
        "butterfly_consumer_dead_letters_total",
        "butterfly_lodging_partner_circuit_state",
        "butterfly_mails_delivered_total",
    } <= asked
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert all(
        panel["datasource"]["uid"] == "${datasource}"
        for panel in dashboard["panels"]
        if panel["type"] != "row"
    )
