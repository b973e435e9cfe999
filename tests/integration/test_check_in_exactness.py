"""Check-ins decided exactly on the real broker and MariaDB: 300 registrations (free, paid,
unpaid, cancelled, transferred) scanned about a thousand times at four stations, with the
same ticket scanned at several stations and scans sent again, in shuffled order, the decider
restarted mid-way: each scan is decided once, every registration that may come in is
checked in exactly once, by its earliest scan, the others are refused for the right reason,
and the read model's scans agree, projected and rebuilt alike."""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from consumers.registration import tables as w
from infra.bootstrap import build_decider, build_projector
from infra.rebuild_write import REGISTRATION_TABLES, rebuild_write
from infra.settings import Settings
from projections.rebuild import rebuild_website
from projections.website import tables as r
from schemas.checkin import CheckInAttendee
from schemas.envelope import Envelope
from schemas.orders import RecordPayment
from schemas.registration import (
    BadgeTypeSpec,
    CancelRegistration,
    Command,
    CreateConvention,
    OpenConvention,
    RegisterAttendee,
    TransferRegistration,
)
from schemas.registry import wrap
from schemas.topics import Topics, registration_key
from tests.conftest import StackFactory
from tests.support import engine_for, eventually, read_topic, running, send_commands

pytestmark = pytest.mark.integration

OPENING = datetime(2027, 5, 1, 9, 0, tzinfo=UTC)
STATIONS = ("Door A", "Door B", "Door C", "Door D")
CHECK_INS = ("AttendeeCheckedIn", "CheckInSuperseded", "CheckInRefused")
REGISTRATIONS = 300


def envelope(command: Command, command_id: uuid.UUID | None = None) -> Envelope:
    return wrap(
        command,
        message_id=command_id or uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        correlation_id=uuid.uuid4(),
        causation_id=None,
        key=registration_key(command.convention_id),
        actor="test",
    )


def command_id_of(scan: CheckInAttendee) -> uuid.UUID:
    """As the gateway derives it: one scan, one command, however often it is sent."""
    return uuid.uuid5(scan.scan_id, "check-in")


@dataclass
class Attendee:
    registration_id: uuid.UUID
    kind: str
    """free, paid, unpaid, cancelled or transferred."""

    @property
    def admitted_serial(self) -> int | None:
        """The serial a ticket must carry to be let in; None when none is."""
        if self.kind in ("free", "paid"):
            return 0
        if self.kind == "transferred":
            return 1
        return None


def kinds() -> list[str]:
    made = ["free"] * 110 + ["paid"] * 100 + ["unpaid"] * 30 + ["cancelled"] * 30
    return made + ["transferred"] * (REGISTRATIONS - len(made))


async def registered_attendees(settings: Settings, cid: uuid.UUID) -> list[Attendee]:
    attendees = [Attendee(uuid.uuid4(), kind) for kind in kinds()]
    commands: list[Envelope] = [
        envelope(
            CreateConvention(
                convention_id=cid,
                name="Door Con",
                starts_on=date(2027, 5, 1),
                ends_on=date(2027, 5, 3),
                badge_types=(
                    BadgeTypeSpec(code="FREE", name="Free", price_cents=0, quota=1000),
                    BadgeTypeSpec(code="STD", name="Standard", price_cents=4000, quota=1000),
                ),
                request_hash="x",
            )
        ),
        envelope(OpenConvention(convention_id=cid)),
    ]
    for n, attendee in enumerate(attendees):
        commands.append(
            envelope(
                RegisterAttendee(
                    convention_id=cid,
                    registration_id=attendee.registration_id,
                    email=f"door{n}@example.org",
                    name=f"Attendee {n}",
                    badge_type="STD" if attendee.kind in ("paid", "unpaid") else "FREE",
                    request_hash=f"h{n}",
                )
            )
        )
    for n, attendee in enumerate(attendees):
        rid = attendee.registration_id
        if attendee.kind == "paid":
            commands.append(
                envelope(
                    RecordPayment(
                        convention_id=cid,
                        registration_id=rid,
                        order_id=rid,
                        payment_id=f"pay-{n}",
                        amount_cents=4000,
                        currency="EUR",
                        succeeded=True,
                    )
                )
            )
        elif attendee.kind == "cancelled":
            commands.append(envelope(CancelRegistration(convention_id=cid, registration_id=rid)))
        elif attendee.kind == "transferred":
            commands.append(
                envelope(
                    TransferRegistration(
                        convention_id=cid,
                        registration_id=rid,
                        to_account_id=uuid.uuid4(),
                        email=f"taker{n}@example.org",
                        name=f"Taker {n}",
                    )
                )
            )
    await send_commands(settings, *commands)
    return attendees


def scans_of(
    cid: uuid.UUID, attendees: list[Attendee], rng: random.Random
) -> list[CheckInAttendee]:
    """One to six scans of each ticket at random stations and times (some at the same
    moment at two stations); a transferred registration is scanned with both its old and
    its new ticket; a few tickets of no registration."""
    scans = []
    for attendee in attendees:
        for _ in range(rng.randint(1, 6)):
            serial = attendee.admitted_serial or 0
            if attendee.kind == "transferred":
                serial = rng.choice((0, 1))
            moment = OPENING + timedelta(seconds=rng.randrange(0, 3600, 15))
            stations = rng.sample(STATIONS, 2) if rng.random() < 0.15 else [rng.choice(STATIONS)]
            for station in stations:
                scans.append(
                    CheckInAttendee(
                        convention_id=cid,
                        registration_id=attendee.registration_id,
                        ticket_serial=serial,
                        station=station,
                        scanned_at=moment,
                        scan_id=uuid.UUID(int=rng.getrandbits(128)),
                    )
                )
    scans.extend(
        CheckInAttendee(
            convention_id=cid,
            registration_id=uuid.uuid4(),
            ticket_serial=0,
            station=rng.choice(STATIONS),
            scanned_at=OPENING,
            scan_id=uuid.uuid4(),
        )
        for _ in range(5)
    )
    return scans


async def decided(settings: Settings, cid: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    """The registration events of the convention, each once (a relay may publish an event
    twice; its id says so), by type."""
    records = await read_topic(settings, Topics(settings.topic_prefix).registration_events)
    seen: set[str] = set()
    found: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        body = json.loads(record.value)
        if body["payload"]["convention_id"] != str(cid) or body["message_id"] in seen:
            continue
        seen.add(body["message_id"])
        found.setdefault(body["type"], []).append(
            {**body["payload"], "_causation_id": body["causation_id"]}
        )
    return found


def _check_ins(found: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [{**p, "_type": t} for t in CHECK_INS for p in found.get(t, [])]


def _rank(scan: CheckInAttendee) -> tuple[datetime, str, uuid.UUID]:
    return (scan.scanned_at, scan.station, scan.scan_id)


def _naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


async def _read_rows(settings: Settings, cid: uuid.UUID) -> tuple[dict[str, Any], dict[str, Any]]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        g = r.registrations.c
        registrations = {
            row.registration_id: row
            for row in await conn.execute(
                select(
                    g.registration_id, g.ticket_serial, g.checked_in_at, g.checked_in_station
                ).where(g.convention_id == str(cid))
            )
        }
        scans = {
            row.scan_id: row
            for row in await conn.execute(
                select(r.check_in_scans).where(r.check_in_scans.c.convention_id == str(cid))
            )
        }
    return registrations, scans


async def test_every_scan_is_decided_once_and_the_earliest_scan_checks_in(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    rng = random.Random(20270501)
    cid = uuid.uuid4()
    attendees = await registered_attendees(settings, cid)
    async with running(build_decider(settings)):
        await eventually(
            lambda: decided(settings, cid),
            lambda found: (
                len(found.get("AttendeeRegistered", [])) + len(found.get("OrderPlaced", []))
                == REGISTRATIONS
                and {"OrderPaid", "RegistrationCancelled", "RegistrationTransferred"} <= set(found)
                and len(found["OrderPaid"]) == 100
                and len(found["RegistrationCancelled"]) == 30
                and len(found["RegistrationTransferred"]) == 30
            ),
            timeout=60,
            what="the registrations, payments, cancellations and transfers decided",
        )

    scans = scans_of(cid, attendees, rng)
    sent = [envelope(scan, command_id_of(scan)) for scan in scans]
    sent += [envelope(scan, command_id_of(scan)) for scan in rng.sample(scans, 150)]
    rng.shuffle(sent)
    assert 900 <= len(sent) <= 1600
    first = sent[: len(sent) // 2]
    await send_commands(settings, *first)
    async with running(build_decider(settings, max_records=40)):
        await eventually(
            lambda: decided(settings, cid),
            lambda found: len(_check_ins(found)) >= len({e.message_id for e in first}),
            timeout=60,
            what="the first half of the scans decided",
        )
    # A new decider reads its state back from its tables, and is sent the rest, with scans
    # of the first half sent again.
    await send_commands(settings, *sent[len(first) :])
    async with (
        running(build_decider(settings, max_records=40)),
        running(build_projector(settings, "website")),
    ):
        found = await eventually(
            lambda: decided(settings, cid),
            lambda found: len(_check_ins(found)) >= len(scans),
            timeout=90,
            what="every scan decided",
        )
        registrations, rows = await eventually(
            lambda: _read_rows(settings, cid),
            lambda got: len(got[1]) >= len(scans),
            timeout=60,
            what="every scan projected",
        )

    events = _check_ins(found)
    by_command = Counter(event["_causation_id"] for event in events)
    assert set(by_command) == {str(command_id_of(scan)) for scan in scans}
    assert set(by_command.values()) == {1}, "each scan decided once, sent again or not"

    by_attendee = {a.registration_id: a for a in attendees}
    decision = {uuid.UUID(e["scan_id"]): e for e in events}
    winners: dict[uuid.UUID, CheckInAttendee] = {}
    for scan in scans:
        attendee = by_attendee.get(scan.registration_id)
        event = decision[scan.scan_id]
        if attendee is None:
            assert event["reason"] == "unknown_registration"
        elif attendee.kind == "unpaid":
            assert event["reason"] == "not_paid"
        elif attendee.kind == "cancelled" or scan.ticket_serial != attendee.admitted_serial:
            assert event["reason"] == "revoked"
        else:
            assert event["_type"] in CHECK_INS
            best = winners.get(scan.registration_id)
            if best is None or _rank(scan) < _rank(best):
                winners[scan.registration_id] = scan
    admitted = [a for a in attendees if a.admitted_serial is not None]
    assert set(winners) <= {a.registration_id for a in admitted}
    assert len(winners) > 200

    async with engine_for(settings.db.write_url) as engine, engine.connect() as conn:
        g = w.registrations.c
        state = {
            uuid.UUID(row.registration_id): row
            for row in await conn.execute(
                select(
                    g.registration_id, g.ticket_serial, g.checked_in_station, g.check_in_scan_id
                ).where(g.convention_id == str(cid))
            )
        }
    for attendee in attendees:
        row = state[attendee.registration_id]
        assert row.ticket_serial == (1 if attendee.kind == "transferred" else 0)
        winner = winners.get(attendee.registration_id)
        assert row.check_in_scan_id == (None if winner is None else str(winner.scan_id))

    assert set(rows) == {str(scan.scan_id) for scan in scans}, "one row per scan"
    checked_in = Counter(
        row.registration_id for row in rows.values() if row.outcome == "checked_in"
    )
    assert checked_in == Counter(str(rid) for rid in winners), "one checked-in row each"
    for scan in scans:
        row = rows[str(scan.scan_id)]
        assert (row.station, row.scanned_at) == (scan.station, _naive(scan.scanned_at))
        winner = winners.get(scan.registration_id)
        if winner is None or row.outcome not in ("checked_in", "superseded", "already_checked_in"):
            assert row.outcome == decision[scan.scan_id]["reason"]
            continue
        if scan.scan_id == winner.scan_id:
            assert row.outcome == "checked_in"
            assert row.winner_station is None
        else:
            assert (row.winner_station, row.winner_scanned_at) == (
                winner.station,
                _naive(winner.scanned_at),
            )
    for registration_id, winner in winners.items():
        registration = registrations[str(registration_id)]
        assert (registration.checked_in_station, registration.checked_in_at) == (
            winner.station,
            _naive(winner.scanned_at),
        )
    outcomes = Counter(row.outcome for row in rows.values())
    assert outcomes["superseded"] > 0, "some earlier scans arrived after later ones"
    assert outcomes["already_checked_in"] > 0
    assert {"revoked", "not_paid", "unknown_registration"} <= set(outcomes)

    report = await rebuild_write(settings)
    decider_tables = {spec.name for spec in REGISTRATION_TABLES}
    assert all(t.ok for t in report.tables if t.table in decider_tables), "\n".join(report.lines())
    before = await _read_rows(settings, cid)
    rebuilt = await rebuild_website(settings)
    assert rebuilt.set_aside == 0
    assert await _read_rows(settings, cid) == before
