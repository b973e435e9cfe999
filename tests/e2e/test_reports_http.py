"""A report end to end: registrations made over HTTP reach the star schema through the
reporting projector (its own process) and come back from the report route as JSON and as
CSV; callers without the power are refused."""

from __future__ import annotations

import csv
import io
import re

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_registration_http import create_open_convention
from tests.support import eventually

pytestmark = pytest.mark.e2e


async def test_the_registrations_report_as_json_and_csv(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, quota=5)
    url = f"/api/v1/admin/conventions/{convention_id}/reports/registrations"
    async with stack.client() as client:
        for i in range(2):
            made = await client.post(
                f"/api/v1/conventions/{convention_id}/registrations",
                json={"email": f"report{i}@example.org", "name": "R", "badge_type": "STD"},
            )
            assert made.status_code in (201, 202), made.text

        async def report() -> dict[str, object]:
            answer = await client.get(url, headers=stack.admin, params={"by": "hour"})
            assert answer.status_code == 200, answer.text
            return dict(answer.json())

        body = await eventually(
            report,
            lambda b: sum(int(r["registrations"]) for r in b["rows"]) == 2,  # type: ignore[attr-defined]
            what="both registrations in the report",
        )
        assert body["report"] == "registrations"
        (row,) = body["rows"]  # type: ignore[misc]
        assert (row["badge_type"], row["confirmed"]) == ("STD", 2)

        for kwargs in ({"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}):
            headers = {**stack.admin, **kwargs.get("headers", {})}
            answer = await client.get(url, headers=headers, params=kwargs.get("params"))
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("text/csv")
            table = list(csv.DictReader(io.StringIO(answer.text)))
            assert [(r["badge_type"], r["registrations"]) for r in table] == [("STD", "2")]

        assert (await client.get(url)).status_code == 401


async def test_the_registrations_report_by_minute_and_by_day_by_default(stack: Stack) -> None:
    convention_id = await create_open_convention(stack, quota=5)
    url = f"/api/v1/admin/conventions/{convention_id}/reports/registrations"
    async with stack.client() as client:
        for i in range(3):
            made = await client.post(
                f"/api/v1/conventions/{convention_id}/registrations",
                json={"email": f"minute{i}@example.org", "name": "M", "badge_type": "STD"},
            )
            assert made.status_code in (201, 202), made.text

        async def rows(**params: str) -> list[dict[str, object]]:
            answer = await client.get(url, headers=stack.admin, params=params)
            assert answer.status_code == 200, answer.text
            return list(answer.json()["rows"])

        by_minute = await eventually(
            lambda: rows(by="minute"),
            lambda found: sum(int(str(r["registrations"])) for r in found) == 3,
            what="the three registrations by minute",
        )
        minute = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
        assert all(minute.fullmatch(str(r["period"])) for r in by_minute), by_minute
        by_day = await rows()
        assert sum(int(str(r["registrations"])) for r in by_day) == 3
        assert {str(r["period"]) for r in by_day} == {str(r["period"])[:10] for r in by_minute}
        refused = await client.get(url, headers=stack.admin, params={"by": "second"})
        assert refused.status_code == 400, refused.text
