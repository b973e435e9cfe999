"""Admin search over a convention's registrations: the filters the listing and the CSV export
share, and the export itself, streamed page by page."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from typing import Annotated

from litestar.openapi.spec import Example
from litestar.params import QueryParameter

from gateway.problems import Problem
from gateway.reads import ReadModels, RegistrationFilter
from gateway.views import RegistrationView
from schemas.identity import InvalidEmail, InvalidText, check_text, email_key

STATUSES = ("pending", "pending_payment", "confirmed", "rejected", "cancelled", "expired")
BADGE_CODE = r"^[A-Za-z0-9_.-]+$"

EmailFilter = Annotated[
    str | None,
    QueryParameter(
        min_length=3,
        max_length=320,
        description="Only the registration of this e-mail identity: compared the way "
        "registration compares addresses (case, Unicode width and the domain's case do not "
        "matter), so `ADA@Example.org` finds `ada@example.org`. Uses an index.",
        examples=[Example(summary="An address in any case", value="Ada@Example.org")],
    ),
]
NameFilter = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=200,
        description="Only names containing this text, whatever its case; `%` and `_` match "
        "themselves. Checked row by row within the convention.",
        examples=[Example(summary="Part of a name", value="lovelace")],
    ),
]
StatusFilter = Annotated[
    str | None,
    QueryParameter(
        enum=STATUSES,
        description="Only registrations in this status.",
        examples=[Example(summary="Confirmed registrations", value="confirmed")],
    ),
]
BadgeTypeFilter = Annotated[
    str | None,
    QueryParameter(
        min_length=1,
        max_length=40,
        pattern=BADGE_CODE,
        description="Only registrations for this badge type code (its case does not matter).",
        examples=[Example(summary="A badge type code", value="STD")],
    ),
]

CSV_MEDIA_TYPE = "text/csv"
"""Litestar adds `; charset=utf-8` (the response's encoding) to a text/ media type."""

EXPORT_PAGE = 1000
"""Rows read per query while exporting: the export holds one page at a time, never the file."""

CSV_COLUMNS = (
    "registration_id",
    "email",
    "name",
    "badge_type",
    "status",
    "reason",
    "account_id",
    "created_at",
)

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (or strip it into one). Names and
addresses are typed by attendees, and a cell such as `=HYPERLINK(...)` would run, or leak
data, in the organiser's spreadsheet; a leading `'` makes it plain text (OWASP, CSV
injection)."""


def registration_filter(
    *,
    email: str | None,
    name: str | None,
    status: str | None,
    badge_type: str | None,
) -> RegistrationFilter:
    """The filters of a request, checked; a 400 problem naming every field that is wrong."""
    errors: list[dict[str, str]] = []
    key = None
    if email is not None:
        try:
            key = email_key(email)
        except InvalidEmail as exc:
            errors.append({"field": "email", "message": f"not a valid e-mail address: {exc}"})
    if name is not None:
        try:
            name = check_text(name)
        except InvalidText as exc:
            errors.append({"field": "name", "message": str(exc)})
    if status is not None and status not in STATUSES:
        errors.append({"field": "status", "message": f"must be one of {', '.join(STATUSES)}"})
    if errors:
        raise Problem(
            400,
            "validation-error",
            "Invalid request",
            "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            errors=errors,
        )
    return RegistrationFilter(email_key=key, name=name, status=status, badge_type=badge_type)


def csv_filename(convention_id: uuid.UUID) -> str:
    return f"registrations-{convention_id}.csv"


async def registrations_csv(
    reads: ReadModels, convention_id: uuid.UUID, where: RegistrationFilter
) -> AsyncIterator[str]:
    """The header, then the matching registrations oldest first, one page of CSV lines at a
    time. Each page is its own query (keyset on created_at, registration_id), so a long
    export holds no connection between pages and sees rows added while it runs once they
    sort after the last row sent."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    yield _drain(buffer)
    cursor: str | None = None
    while True:
        items, cursor = await reads.search_registrations(
            convention_id, where, cursor=cursor, limit=EXPORT_PAGE
        )
        writer.writerows(_csv_row(view) for view in items)
        if items:
            yield _drain(buffer)
        if cursor is None:
            return


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _csv_row(view: RegistrationView) -> list[str]:
    return [
        neutralise(cell)
        for cell in (
            str(view.registration_id),
            view.email,
            view.name,
            view.badge_type,
            view.status,
            view.reason or "",
            "" if view.account_id is None else str(view.account_id),
            view.created_at.isoformat(),
        )
    ]


def neutralise(cell: str) -> str:
    """A cell a spreadsheet shows as the text it is (see FORMULA_STARTS)."""
    return f"'{cell}" if cell.startswith(FORMULA_STARTS) else cell
