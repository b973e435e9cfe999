"""The comparison behind `butterfly rebuild write`: rows matched by key, differences named by
column, JSON compared as values, what events cannot restore left out; and the account rows
folded from account events alone."""

from __future__ import annotations

import uuid
from datetime import datetime

from consumers.registration import tables as w
from infra.rebuild_write import (
    ACCOUNT_TABLES,
    Compared,
    Read,
    WriteReport,
    compare,
    fold_accounts,
)
from schemas.accounts import AccountCreated, EmailVerified, Role, RoleGranted, RoleRevoked

BADGES = Compared(w.badge_types, ("convention_id", "code"))
REFUNDS = Compared(w.refunds, ("refund_id",), ignored=("issued_at",))
CONVENTIONS = Compared(w.conventions, ("convention_id",), json_columns=frozenset({"catalogue"}))


def badge(code: str, confirmed: int) -> dict[str, object]:
    return {
        "convention_id": "c1",
        "code": code,
        "name": code,
        "price_cents": 100,
        "quota": 5,
        "confirmed": confirmed,
    }


def test_missing_extra_and_differing_rows_are_told_apart() -> None:
    live = [badge("A", 1), badge("B", 3), badge("X", 0)]
    folded = [badge("A", 1), badge("B", 2), badge("C", 0)]
    report = compare(BADGES, live, folded)
    assert (report.live, report.folded) == (3, 3)
    assert report.missing == [("c1", "C")]
    assert report.extra == [("c1", "X")]
    assert report.differing == [(("c1", "B"), {"confirmed": (3, 2)})]
    assert not report.ok


def test_equal_rows_pass_whatever_their_order() -> None:
    rows = [badge("A", 1), badge("B", 2)]
    assert compare(BADGES, rows, list(reversed(rows))).ok


def test_json_is_compared_as_values_and_ignored_columns_not_at_all() -> None:
    live = [{"convention_id": "c1", "name": "N", "status": "open", "request_hash": "h",
             "catalogue": '{"a": 1, "b": [2]}'}]  # fmt: skip
    folded = [{**live[0], "catalogue": '{"b":[2],"a":1}'}]
    assert compare(CONVENTIONS, live, folded).ok
    refund = {
        "refund_id": "r1",
        "registration_id": "g",
        "convention_id": "c1",
        "order_id": "o",
        "payment_id": "p",
        "amount_cents": 10,
        "currency": "EUR",
        "reason": "expired",
        "status": "issued",
    }
    report = compare(
        REFUNDS,
        [{**refund, "issued_at": datetime(2027, 1, 1)}],
        [{**refund, "issued_at": datetime(2027, 2, 2)}],
    )
    assert report.ok
    assert "issued_at" not in REFUNDS.columns


def test_the_report_prints_a_line_per_table_and_says_what_it_left_out() -> None:
    report = WriteReport(
        [compare(BADGES, [badge("A", 1)], [badge("A", 2)])], {"events": 3}, set_aside=0
    )
    lines = list(report.lines())
    assert lines[1].split() == ["badge_types", "1", "1", "0", "0", "1"]
    assert any("confirmed live=1 folded=2" in line for line in lines)
    assert any("account_tokens" in line for line in lines)
    assert lines[-1] == "DIFFERENCES FOUND"
    assert report.as_json()["tables"][0]["differing"] == 1


def test_accounts_fold_from_their_events_without_password_hashes() -> None:
    account, other = uuid.uuid4(), uuid.uuid4()
    at = [datetime(2027, 1, 1, 9, 0, n) for n in range(5)]
    events = [
        AccountCreated(account_id=account, email="A@x.org", email_key="a@x.org", name="A"),
        EmailVerified(account_id=account, email_key="a@x.org"),
        RoleGranted(account_id=account, role=Role.ADMIN),
        RoleGranted(account_id=other, role=Role.ANALYST),
        RoleRevoked(account_id=other, role=Role.ANALYST),
    ]
    rows = fold_accounts(
        Read(0, 0, moment, event) for moment, event in zip(at, events, strict=True)
    )
    [row] = rows["accounts"]
    assert row["verified"] is True
    assert row["created_at"] == at[0]
    assert "password_hash" not in row
    assert rows["account_roles"] == [
        {"account_id": str(account), "role": "admin", "scope": "", "granted_at": at[2]}
    ]
    assert "password_hash" in ACCOUNT_TABLES[0].ignored
