"""Reports over HTTP, read from the reporting database's star schema (the tables analysts
query directly): registrations over time, revenue, cancellations and refunds, waitlist
conversion and lodging pickup, as JSON or CSV.

Figures trail the events by the reporting projector's lag (seconds). Money is in minor units
of the convention's currency.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from litestar import Controller, Request, Response, get
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.params import QueryParameter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.conventions import convention_guard
from gateway.deps import Gateway
from gateway.export import CSV_MEDIA_TYPE, neutralise
from gateway.problems import Problem

Format = Annotated[
    Literal["json", "csv"] | None,
    QueryParameter(description="`csv` for a CSV file; also chosen by `Accept: text/csv`."),
]
Granularity = Annotated[
    Literal["minute", "hour", "day"],
    QueryParameter(
        description="The width of each period: `minute` (`2027-06-01T09:05`), `hour` "
        "(`2027-06-01T09:00`) or `day` (`2027-06-01`, the default). Times are UTC."
    ),
]


async def reports_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """Analysts read every convention's reports; otherwise admins and staff of the convention
    (`convention_guard`)."""
    from gateway.accounts import principal

    if (await principal(connection)).is_analyst:
        return
    await convention_guard(connection, handler)


@dataclass(frozen=True)
class Report:
    """One report: its rows, each with the same columns."""

    convention_id: uuid.UUID
    report: str
    columns: list[str]
    rows: list[dict[str, Any]]


REGISTRATIONS = """
SELECT DATE_FORMAT(created_at, :pattern) AS period, badge_type,
       COUNT(*) AS registrations,
       SUM(status = 'confirmed') AS confirmed,
       SUM(status = 'cancelled') AS cancelled,
       SUM(status = 'expired') AS expired
FROM fact_registrations
WHERE convention_id = :convention AND status <> 'rejected'
GROUP BY period, badge_type
ORDER BY period, badge_type
"""
REVENUE = """
SELECT 'badge_type' AS dimension, s.badge_type AS code, NULL AS variant,
       SUM(s.registrations) AS units, SUM(s.paid_cents) AS paid_cents,
       SUM(s.refunded_cents) AS refunded_cents, SUM(s.revenue_cents) AS revenue_cents
FROM fact_daily_sales s
WHERE s.convention_id = :convention
GROUP BY s.badge_type
UNION ALL
SELECT 'option', l.code, l.variant, SUM(l.quantity), SUM(l.total_cents), 0, SUM(l.total_cents)
FROM fact_order_lines l
WHERE l.convention_id = :convention AND l.kind = 'option'
  AND l.order_status IN ('paid', 'confirmed', 'removed')
GROUP BY l.code, l.variant
ORDER BY dimension, code, variant
"""
CANCELLATIONS = """
SELECT d.day, COALESCE(c.cancellations, 0) AS cancellations,
       COALESCE(r.refunds, 0) AS refunds, COALESCE(r.refunded_cents, 0) AS refunded_cents,
       COALESCE(r.completed, 0) AS refunds_completed
FROM (
    SELECT sale_date AS day FROM fact_daily_sales
    WHERE convention_id = :convention AND cancellations > 0
    UNION
    SELECT issued_on FROM fact_refunds WHERE convention_id = :convention
) d
LEFT JOIN (
    SELECT sale_date, SUM(cancellations) AS cancellations FROM fact_daily_sales
    WHERE convention_id = :convention GROUP BY sale_date
) c ON c.sale_date = d.day
LEFT JOIN (
    SELECT issued_on, COUNT(*) AS refunds, SUM(amount_cents) AS refunded_cents,
           SUM(completed_at IS NOT NULL) AS completed
    FROM fact_refunds WHERE convention_id = :convention GROUP BY issued_on
) r ON r.issued_on = d.day
ORDER BY d.day
"""
WAITLIST = """
SELECT kind, code, COUNT(*) AS joined,
       SUM(offered_at IS NOT NULL) AS offered,
       SUM(status = 'accepted') AS accepted,
       SUM(status = 'left') AS left_line,
       SUM(status = 'expired') AS offers_expired,
       SUM(status IN ('waiting', 'offered')) AS still_waiting,
       ROUND(SUM(status = 'accepted') / COUNT(*), 4) AS conversion
FROM fact_waitlist_entries
WHERE convention_id = :convention
GROUP BY kind, code
ORDER BY kind, code
"""
LODGING = """
SELECT h.hotel_code, h.name,
       COALESCE(b.block_nights, 0) AS block_nights,
       COALESCE(p.picked_up, 0) AS picked_up_nights,
       ROUND(COALESCE(p.picked_up, 0) / NULLIF(b.block_nights, 0), 4) AS pickup
FROM dim_hotel h
LEFT JOIN (
    SELECT hotel_code, SUM(size) AS block_nights FROM fact_block_nights
    WHERE convention_id = :convention GROUP BY hotel_code
) b ON b.hotel_code = h.hotel_code
LEFT JOIN (
    SELECT hotel_code, COUNT(*) AS picked_up FROM fact_lodging_nights
    WHERE convention_id = :convention AND status IN ('held', 'confirmed') GROUP BY hotel_code
) p ON p.hotel_code = h.hotel_code
WHERE h.convention_id = :convention
ORDER BY h.hotel_code
"""
PERIODS = {"minute": "%Y-%m-%dT%H:%i", "hour": "%Y-%m-%dT%H:00", "day": "%Y-%m-%d"}


async def run_report(
    engine: AsyncEngine, convention_id: uuid.UUID, name: str, sql: str, **params: Any
) -> Report:
    async with engine.connect() as conn:
        result = await conn.execute(text(sql), {"convention": str(convention_id), **params})
        columns = list(result.keys())
        rows = [{c: _plain(v) for c, v in zip(columns, row, strict=True)} for row in result]
    return Report(convention_id=convention_id, report=name, columns=columns, rows=rows)


def _plain(value: Any) -> Any:
    """JSON-friendly cells: MariaDB gives sums as decimals."""
    if isinstance(value, date | datetime):
        return value.isoformat()
    if value is None or isinstance(value, int | float | str):
        return value
    number = float(value)
    return int(number) if number.is_integer() and "." not in str(value) else number


def to_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [
                neutralise(v) if isinstance(v, str) else ("" if v is None else v)
                for v in row.values()
            ]
        )
    return buffer.getvalue()


def _answer(request: Request[Any, Any, Any], report: Report, fmt: str | None) -> Response[Any]:
    wants_csv = fmt == "csv" or (
        fmt is None and CSV_MEDIA_TYPE in request.headers.get("accept", "").lower()
    )
    if wants_csv:
        return Response(
            to_csv(report.columns, report.rows),
            media_type=CSV_MEDIA_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="{report.report}-'
                f'{report.convention_id}.csv"'
            },
        )
    return Response(
        {"convention_id": str(report.convention_id), "report": report.report, "rows": report.rows}
    )


def _engine(gateway: Gateway) -> AsyncEngine:
    if gateway.reporting_engine is None:
        raise Problem(
            503, "reports-unavailable", "Reports unavailable", "No reporting database is set up."
        )
    return gateway.reporting_engine


class ReportController(Controller):
    path = "/api/v1/admin/conventions/{convention_id:uuid}/reports"
    guards = [reports_guard]
    tags = ["reports"]

    @get(
        "/registrations",
        operation_id="reportRegistrations",
        summary="Registrations over time, by badge type (rejected requests left out)",
    )
    async def registrations(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        by: Granularity = "day",
        format: Format = None,
    ) -> Response[Any]:
        report = await run_report(
            _engine(gateway), convention_id, "registrations", REGISTRATIONS, pattern=PERIODS[by]
        )
        return _answer(request, report, format)

    @get(
        "/revenue",
        operation_id="reportRevenue",
        summary="Revenue by badge type (paid less refunded) and by option",
    )
    async def revenue(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        format: Format = None,
    ) -> Response[Any]:
        report = await run_report(_engine(gateway), convention_id, "revenue", REVENUE)
        return _answer(request, report, format)

    @get(
        "/cancellations",
        operation_id="reportCancellations",
        summary="Cancellations and refunds by day",
    )
    async def cancellations(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        format: Format = None,
    ) -> Response[Any]:
        report = await run_report(_engine(gateway), convention_id, "cancellations", CANCELLATIONS)
        return _answer(request, report, format)

    @get(
        "/waitlist",
        operation_id="reportWaitlist",
        summary="Waitlist conversion by badge type and option",
    )
    async def waitlist(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        format: Format = None,
    ) -> Response[Any]:
        report = await run_report(_engine(gateway), convention_id, "waitlist", WAITLIST)
        return _answer(request, report, format)

    @get(
        "/lodging",
        operation_id="reportLodging",
        summary="Room nights picked up per hotel against its block",
    )
    async def lodging(
        self,
        request: Request[Any, Any, Any],
        gateway: Gateway,
        convention_id: uuid.UUID,
        format: Format = None,
    ) -> Response[Any]:
        report = await run_report(_engine(gateway), convention_id, "lodging", LODGING)
        return _answer(request, report, format)
