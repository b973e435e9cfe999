"""The website projector: registration events (and submitted registration commands, shown as
pending until decided) into the read models in `butterfly_read`.

What each record does to the read model is defined once, as `Changes`: `WebsiteProjector`
decodes records into them, and they are applied either to the database, a batch at a time
(`write_changes`, the incremental projector), or to rows held in memory (`ReadModelImage`,
the rebuild, which then inserts the final rows in bulk). The two appliers mirror each other
statement for statement, so a rebuild and a replay give the same rows.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from aiokafka import TopicPartition
from pydantic import ValidationError
from sqlalchemy import String, bindparam, func, literal_column, or_, select, update
from sqlalchemy.dialects.mysql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from infra.pipeline.exactly_once import DeadLetter, HandledBatch, Record
from producers.dead_letters import split_dead_letter_headers
from projections.orders.stock import parse_stock_key
from projections.website import tables as t
from schemas.checkin import AttendeeCheckedIn, CheckInRefusal, CheckInRefused, CheckInSuperseded
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_SOURCE_TOPIC,
    HEADER_TYPE,
    Envelope,
    UndecodableMessage,
    decode_envelope,
    header,
)
from schemas.identity import email_key
from schemas.orders import (
    BadgeQuotaSet,
    CatalogueChangeRejected,
    OptionDefined,
    OptionRemoved,
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    OrderPolicySet,
    OrderRejected,
    PaymentDeclined,
    PriceTiersDefined,
    PromoCodeApplied,
    PromoCodeCreated,
    RefundCompleted,
    RefundIssued,
    WaitlistJoined,
    WaitlistLeft,
    WaitlistOfferAccepted,
    WaitlistOfferExpired,
    WaitlistOfferMade,
    WaitlistRejected,
)
from schemas.registration import (
    SET_ASIDE,
    AttendeeRegistered,
    CancellationRejected,
    ConventionClosed,
    ConventionCommandRejected,
    ConventionCreated,
    ConventionOpened,
    Event,
    OrderPlaced,
    RegisterAttendee,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationRequestRefused,
    RegistrationTransferred,
    TransferRejected,
)
from schemas.registry import decode_message
from schemas.topics import Topics

log = structlog.get_logger(__name__)

ACCEPTED = "accepted"
REJECTED = "rejected"
PENDING_PAYMENT = "pending_payment"
"""A registration placed with something to pay: its seat is held until paid or expired."""
CHECKED_IN = "checked_in"
SUPERSEDED = "superseded"
"""Check-in scan outcomes besides the refusals' reasons (`schemas.checkin.CheckInRefusal`)."""


@dataclass
class Changes:
    """What a run of records does to the read model, grouped so each kind is one statement,
    in an order that keeps every row's history right (insert before update, decisions
    before cancellations). `write_changes` and `ReadModelImage.apply` define the effects."""

    pending: list[dict[str, Any]] = field(default_factory=list)
    """Registrations submitted: inserted as pending unless the registration is known."""
    pending_commands: list[str] = field(default_factory=list)
    """Their command ids: one the decider set aside already makes its registration `invalid`."""
    conventions: list[dict[str, Any]] = field(default_factory=list)
    badge_types: list[dict[str, Any]] = field(default_factory=list)
    quotas: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    decided: list[dict[str, Any]] = field(default_factory=list)
    """Registrations decided: inserted, or their status, reason and time replaced."""
    registration_statuses: list[dict[str, Any]] = field(default_factory=list)
    """Registrations paid, expired or cancelled since they were decided, in event order."""
    transfers: list[dict[str, Any]] = field(default_factory=list)
    """Registrations handed to another account: the earlier holder recorded, then the
    registration's holder replaced. Each applies after the status changes before it
    (`statuses_before`), so every row's last change sets its `updated_at`."""
    check_ins: list[dict[str, Any]] = field(default_factory=list)
    """Registrations checked in, or their check-in moved to an earlier scan, in event order."""
    scans: list[dict[str, Any]] = field(default_factory=list)
    """Scans decided: a scan's first decision is its row."""
    superseded: list[dict[str, Any]] = field(default_factory=list)
    """Check-ins an earlier scan replaced, in event order: the replaced scan's row turns
    `superseded`, and every superseded or `already_checked_in` row of the registration names
    the new winner (the rows are inserted first: a scan is decided before it is replaced)."""
    sold: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    """Seats taken (held by an unpaid order, paid, or offered to the waitlist) or freed."""
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    """How commands were decided: the first event of a command answers it, and a decision
    replaces an earlier `invalid` answer."""
    invalid: list[dict[str, Any]] = field(default_factory=list)
    """Commands the decider set aside: answered `invalid` unless decided."""
    applied: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DecodedBatch:
    """One partition's records, decoded: the events still to be checked against the ids
    already applied, and what the commands and dead letters do."""

    events: list[tuple[Envelope, Event]] = field(default_factory=list)
    changes: Changes = field(default_factory=Changes)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    @property
    def event_ids(self) -> set[str]:
        return {str(envelope.message_id) for envelope, _ in self.events}

    def project(self, applied: set[str]) -> Changes:
        """The batch's changes, with its events projected (see `project_events`)."""
        return project_events(self.events, applied, self.changes)


def project_events(
    events: Sequence[tuple[Envelope, Event]], applied: set[str], changes: Changes
) -> Changes:
    """Add what `events` do to `changes`, skipping each event whose id is in `applied` (a
    redelivery) and adding the id of each one projected to it."""
    for envelope, event in events:
        event_id = str(envelope.message_id)
        if event_id in applied:
            continue
        applied.add(event_id)
        changes.applied.append(
            {"event_id": event_id, "applied_at": envelope.occurred_at.replace(tzinfo=None)}
        )
        _project_event(changes, envelope, event)
    return changes


PendingFilter = Callable[[str, str], bool]
"""(command id, registration id) -> whether a submitted registration can change the read
model: the rebuild knows when it cannot, and skips validating that command."""


class WebsiteProjector:
    """Projects the event topic, the command topic (pending registrations) and the commands
    the decider dead-lettered (answered as rejected with reason `invalid`)."""

    def __init__(self, topics: Topics, decider_group: str) -> None:
        self._topics = topics
        self._decider_group = decider_group

    async def handle(
        self, conn: AsyncConnection, tp: TopicPartition, records: Sequence[Record]
    ) -> HandledBatch:
        batch = self.decode(records)
        event_ids = batch.event_ids
        applied: set[str] = set()
        if event_ids:
            applied = set((await conn.execute(_APPLIED, {"ids": list(event_ids)})).scalars())
        changes = batch.project(applied)
        await write_changes(conn, changes)
        log.debug(
            "batch_projected",
            partition=f"{tp.topic}[{tp.partition}]",
            records=len(records),
            events=len(changes.applied),
            pending=changes.pending_commands,
            dead_letters=len(batch.dead_letters),
        )
        return HandledBatch(dead_letters=batch.dead_letters)

    def decode(
        self, records: Sequence[Record], *, pending_matters: PendingFilter | None = None
    ) -> DecodedBatch:
        """Decode one partition's records. An event that cannot be decoded is dead-lettered;
        a command that cannot is skipped (the decider dead-letters it, and its dead letter
        answers it); a dead letter that is not the decider's is skipped."""
        batch = DecodedBatch()
        for record in records:
            if record.topic == self._topics.dead_letter:
                self._project_dead_letter(batch.changes, record)
            elif record.topic == self._topics.registration_commands:
                self._project_command(batch.changes, record, pending_matters)
            else:
                try:
                    envelope, message = decode_message(
                        record.value, header(record.headers, HEADER_TYPE)
                    )
                except UndecodableMessage as exc:
                    batch.dead_letters.append(DeadLetter(record, exc))
                    continue
                if isinstance(message, Event):
                    batch.events.append((envelope, message))
        return batch

    def _project_command(
        self, changes: Changes, record: Record, pending_matters: PendingFilter | None
    ) -> None:
        """Only a submitted registration shows (as pending): other commands are shown by
        their events, so only their envelope is read, to learn their type."""
        try:
            envelope = Envelope.model_validate_json(record.value or b"")
        except ValidationError:
            try:
                envelope = decode_envelope(record.value)
            except UndecodableMessage:
                return
        if envelope.type != RegisterAttendee.message_type:
            return
        if pending_matters is not None:
            registration_id = _uuid_or_none(envelope.payload.get("registration_id"))
            if registration_id is None or not pending_matters(
                str(envelope.message_id), registration_id
            ):
                return
        try:
            envelope, message = decode_message(record.value, RegisterAttendee.message_type)
        except UndecodableMessage:
            return
        if not isinstance(message, RegisterAttendee):
            return
        changes.pending.append(_registration_row(envelope, message, "pending", None))
        changes.pending_commands.append(str(envelope.message_id))

    def _project_dead_letter(self, changes: Changes, record: Record) -> None:
        """A command the decider dead-lettered was not decided: its client is answered
        `invalid` instead of waiting for ever. A later replay that decides it overrides this."""
        _, added = split_dead_letter_headers(record.headers or ())
        if (
            header(added, HEADER_CONSUMER_GROUP) != self._decider_group
            or header(added, HEADER_SOURCE_TOPIC) != self._topics.registration_commands
        ):
            return
        try:
            envelope = decode_envelope(record.value)
        except UndecodableMessage:
            return
        subject = _uuid_or_none(envelope.payload.get("registration_id")) or (
            _uuid_or_none(envelope.payload.get("convention_id")) or str(envelope.message_id)
        )
        dead_lettered_at = datetime.fromtimestamp(record.timestamp / 1000, UTC)
        changes.invalid.append(
            {
                "command_id": str(envelope.message_id),
                "outcome": REJECTED,
                "reason": SET_ASIDE,
                "subject_id": subject,
                "recorded_at": dead_lettered_at.replace(tzinfo=None),
            }
        )


def _uuid_or_none(value: object) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


def _project_event(changes: Changes, envelope: Envelope, event: Event) -> None:
    at = envelope.occurred_at.replace(tzinfo=None)
    cid = str(event.convention_id)
    command_id = str(envelope.causation_id or envelope.message_id)

    def outcome(result: str, subject: str, reason: str | None = None) -> None:
        changes.outcomes.append(
            {
                "command_id": command_id,
                "outcome": result,
                "reason": reason,
                "subject_id": subject,
                "recorded_at": at,
            }
        )

    match event:
        case ConventionCreated():
            changes.conventions.append(
                {
                    "convention_id": cid,
                    "name": event.name,
                    "starts_on": event.starts_on,
                    "ends_on": event.ends_on,
                    "status": "draft",
                    "request_hash": event.request_hash,
                    "created_at": at,
                    "updated_at": at,
                    "allow_guests": event.allow_guests,
                }
            )
            changes.badge_types.extend(
                {
                    "convention_id": cid,
                    "code": b.code,
                    "name": b.name,
                    "price_cents": b.price_cents,
                    "quota": b.quota,
                    "sold": 0,
                    "position": i,
                }
                for i, b in enumerate(event.badge_types)
            )
            outcome(ACCEPTED, cid)
        case ConventionOpened():
            changes.statuses.append({"c_id": cid, "c_status": "open", "at": at})
            outcome(ACCEPTED, cid)
        case ConventionClosed():
            changes.statuses.append({"c_id": cid, "c_status": "closed", "at": at})
            outcome(ACCEPTED, cid)
        case ConventionCommandRejected():
            outcome(REJECTED, cid, event.reason.value)
        case AttendeeRegistered():
            changes.decided.append(_registration_row(envelope, event, "confirmed", None))
            changes.sold[(cid, event.badge_type)] += 1
            outcome(ACCEPTED, str(event.registration_id))
        case OrderPlaced():
            changes.decided.append(_registration_row(envelope, event, PENDING_PAYMENT, None))
            changes.sold[(cid, event.badge_type)] += 1
            outcome(ACCEPTED, str(event.registration_id))
        case RegistrationRejected():
            changes.decided.append(
                _registration_row(envelope, event, "rejected", event.reason.value)
            )
            outcome(REJECTED, str(event.registration_id), event.reason.value)
        case RegistrationCancelled():
            changes.registration_statuses.append(
                _registration_status(event.registration_id, "cancelled", at)
            )
            changes.sold[(cid, event.badge_type)] -= 1
            outcome(ACCEPTED, str(event.registration_id))
        case OrderPaid():
            if event.confirms_registration:
                changes.registration_statuses.append(
                    _registration_status(event.registration_id, "confirmed", at)
                )
            outcome(ACCEPTED, str(event.registration_id))
        case OrderExpired():
            if event.expires_registration:
                changes.registration_statuses.append(
                    _registration_status(event.registration_id, "expired", at)
                )
            for line in event.lines:
                if line.kind == "badge":
                    changes.sold[(cid, line.code)] -= line.quantity
            outcome(ACCEPTED, str(event.registration_id))
        case WaitlistOfferMade():
            _count_badges(changes, cid, event.stock, event.quantity)
            outcome(ACCEPTED, str(event.entry_id))
        case WaitlistOfferExpired() | WaitlistOfferAccepted() | WaitlistLeft():
            _count_badges(changes, cid, event.stock, -event.released)
            outcome(ACCEPTED, str(event.entry_id))
        case WaitlistJoined():
            outcome(ACCEPTED, str(event.entry_id))
        case WaitlistRejected():
            outcome(REJECTED, str(event.entry_id), event.reason.value)
        case BadgeQuotaSet():
            changes.quotas.append({"c_id": cid, "b_code": event.badge_type, "b_quota": event.quota})
            outcome(ACCEPTED, cid)
        case PriceTiersDefined() | OptionDefined() | PromoCodeCreated() | OrderPolicySet():
            outcome(ACCEPTED, cid)
        case CatalogueChangeRejected():
            outcome(REJECTED, cid, event.reason.value)
        case (
            OptionsOrdered()
            | OptionRemoved()
            | PromoCodeApplied()
            | PaymentDeclined()
            | RefundIssued()
            | RefundCompleted()
        ):
            outcome(ACCEPTED, str(event.registration_id))
        case OrderRejected():
            outcome(REJECTED, str(event.registration_id), event.reason.value)
        case RegistrationTransferred():
            changes.transfers.append(
                {
                    "statuses_before": len(changes.registration_statuses),
                    "event_id": str(envelope.message_id),
                    "r_id": str(event.registration_id),
                    "email": event.email,
                    "name": event.name,
                    "email_key": _email_key(event.email),
                    "account_id": str(event.account_id),
                    "at": at,
                }
            )
            outcome(ACCEPTED, str(event.registration_id))
        case CancellationRejected() | RegistrationRequestRefused() | TransferRejected():
            outcome(REJECTED, str(event.registration_id), event.reason.value)
        case AttendeeCheckedIn() | CheckInSuperseded():
            scan = _scan_row(event, CHECKED_IN, at)
            changes.scans.append(scan)
            changes.check_ins.append(
                {
                    "r_id": str(event.registration_id),
                    "w_station": scan["station"],
                    "w_at": scan["scanned_at"],
                }
            )
            if isinstance(event, CheckInSuperseded):
                changes.superseded.append(
                    {
                        "r_id": str(event.registration_id),
                        "s_id": str(event.superseded_scan_id),
                        "w_station": scan["station"],
                        "w_at": scan["scanned_at"],
                    }
                )
            outcome(ACCEPTED, str(event.registration_id))
        case CheckInRefused():
            changes.scans.append(_scan_row(event, event.reason.value, at))
            outcome(REJECTED, str(event.registration_id), event.reason.value)
        case _:
            log.warning("event_not_projected", type=envelope.type)


def _naive_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def _scan_row(
    event: AttendeeCheckedIn | CheckInSuperseded | CheckInRefused, outcome: str, at: datetime
) -> dict[str, Any]:
    """A scan's row as decided; a scan refused as already checked in names the winner."""
    winner_station = winner_scanned_at = None
    if isinstance(event, CheckInRefused) and event.reason is CheckInRefusal.ALREADY_CHECKED_IN:
        winner_station = event.checked_in_station
        if event.checked_in_at is not None:
            winner_scanned_at = _naive_utc(event.checked_in_at)
    return {
        "scan_id": str(event.scan_id),
        "convention_id": str(event.convention_id),
        "registration_id": str(event.registration_id),
        "station": event.station,
        "scanned_at": _naive_utc(event.scanned_at),
        "outcome": outcome,
        "winner_station": winner_station,
        "winner_scanned_at": winner_scanned_at,
        "decided_at": at,
    }


def _registration_status(registration_id: uuid.UUID, status: str, at: datetime) -> dict[str, Any]:
    return {"r_id": str(registration_id), "r_status": status, "at": at}


def _count_badges(changes: Changes, convention_id: str, stock: str, seats: int) -> None:
    """Seats a waitlist offer holds are taken like sold ones; option stock is not shown here."""
    held = parse_stock_key(stock)
    if held.kind == "badge":
        changes.sold[(convention_id, held.code)] += seats


def _email_key(email: str) -> str | None:
    """The identity key a guest registration is claimed by; None for an address that has
    none (a dead-lettered command's, shown pending until set aside)."""
    try:
        return email_key(email)
    except ValueError:
        return None


def _registration_row(
    envelope: Envelope,
    message: RegisterAttendee | AttendeeRegistered | OrderPlaced | RegistrationRejected,
    status: str,
    reason: str | None,
) -> dict[str, Any]:
    at = envelope.occurred_at.replace(tzinfo=None)
    return {
        "registration_id": str(message.registration_id),
        "convention_id": str(message.convention_id),
        "email": message.email,
        "email_key": _email_key(message.email),
        "account_id": None if message.account_id is None else str(message.account_id),
        "name": message.name,
        "badge_type": message.badge_type,
        "status": status,
        "reason": reason,
        "reason_subject": getattr(message, "subject", None) or None,
        "has_order": getattr(message, "order", None) is not None,
        "request_hash": message.request_hash,
        "created_at": at,
        "updated_at": at,
        "ticket_serial": 0,
        "checked_in_at": None,
        "checked_in_station": None,
    }


# Statements built once: building SQLAlchemy expressions per row or per batch cost more
# than running them. The row-by-row ones are rare (status changes, cancellations, dead
# letters); each is one executemany.
_APPLIED = select(t.applied_events.c.event_id).where(
    t.applied_events.c.event_id.in_(bindparam("ids", expanding=True))
)
_INSERT_CONVENTIONS = insert(t.conventions).prefix_with("IGNORE")
_INSERT_BADGE_TYPES = insert(t.badge_types).prefix_with("IGNORE")
_SET_STATUS = (
    update(t.conventions)
    .where(t.conventions.c.convention_id == bindparam("c_id"))
    .values(status=bindparam("c_status"), updated_at=bindparam("at"))
)
_SET_QUOTA = (
    update(t.badge_types)
    .where(
        t.badge_types.c.convention_id == bindparam("c_id"),
        t.badge_types.c.code == bindparam("b_code"),
    )
    .values(quota=bindparam("b_quota"))
)
_INSERT_PENDING = insert(t.registrations).prefix_with("IGNORE")
_SET_ASIDE_OUTCOMES = select(
    t.command_outcomes.c.subject_id, t.command_outcomes.c.recorded_at
).where(
    t.command_outcomes.c.command_id.in_(bindparam("ids", expanding=True)),
    t.command_outcomes.c.reason == SET_ASIDE,
)
_decided = insert(t.registrations)
_UPSERT_DECIDED = _decided.on_duplicate_key_update(
    status=_decided.inserted.status,
    reason=_decided.inserted.reason,
    reason_subject=_decided.inserted.reason_subject,
    has_order=_decided.inserted.has_order,
    updated_at=_decided.inserted.updated_at,
)
_SET_REGISTRATION_STATUS = (
    update(t.registrations)
    .where(t.registrations.c.registration_id == bindparam("r_id"))
    .values(status=bindparam("r_status"), updated_at=bindparam("at"))
)
_RECORD_TRANSFER = (
    insert(t.registration_transfers)
    .prefix_with("IGNORE")
    .from_select(
        [
            "event_id",
            "registration_id",
            "convention_id",
            "from_account_id",
            "from_email_key",
            "to_account_id",
            "transferred_at",
        ],
        select(
            bindparam("event_id"),
            t.registrations.c.registration_id,
            t.registrations.c.convention_id,
            t.registrations.c.account_id,
            t.registrations.c.email_key,
            bindparam("account_id"),
            bindparam("at"),
        ).where(t.registrations.c.registration_id == bindparam("r_id")),
    )
)
_TRANSFER = (
    update(t.registrations)
    .where(t.registrations.c.registration_id == bindparam("r_id"))
    .values(
        email=bindparam("email"),
        name=bindparam("name"),
        email_key=bindparam("email_key"),
        account_id=bindparam("account_id"),
        updated_at=bindparam("at"),
        ticket_serial=t.registrations.c.ticket_serial + 1,
    )
)
_CHECK_IN = (
    update(t.registrations)
    .where(t.registrations.c.registration_id == bindparam("r_id"))
    .values(checked_in_at=bindparam("w_at"), checked_in_station=bindparam("w_station"))
)
_INSERT_SCANS = insert(t.check_in_scans).prefix_with("IGNORE")
_NAMES_WINNER = (SUPERSEDED, CheckInRefusal.ALREADY_CHECKED_IN.value)
"""Scan outcomes whose row names the registration's check-in, kept up to date."""
_s = t.check_in_scans.c
_SUPERSEDE = (
    update(t.check_in_scans)
    .where(
        _s.registration_id == bindparam("r_id"),
        or_(
            _s.scan_id == bindparam("s_id"),
            # literals: an expanding IN cannot run as one executemany
            _s.outcome.in_([literal_column(f"'{outcome}'") for outcome in _NAMES_WINNER]),
        ),
    )
    .values(
        outcome=func.if_(_s.scan_id == bindparam("s_id"), SUPERSEDED, _s.outcome),
        winner_station=bindparam("w_station"),
        winner_scanned_at=bindparam("w_at"),
    )
)
_ADD_SOLD = (
    update(t.badge_types)
    .where(
        t.badge_types.c.convention_id == bindparam("c_id"),
        t.badge_types.c.code == bindparam("b_code"),
    )
    .values(sold=t.badge_types.c.sold + bindparam("delta"))
)
_outcome = insert(t.command_outcomes)
# a literal: a bound parameter after VALUES stops the driver packing the rows
_set_aside = t.command_outcomes.c.reason == literal_column(f"'{SET_ASIDE}'")
_UPSERT_OUTCOMES = _outcome.on_duplicate_key_update(
    [
        (name, func.if_(_set_aside, _outcome.inserted[name], t.command_outcomes.c[name]))
        for name in ("outcome", "subject_id", "recorded_at", "reason")
    ]
)
"""A command's first event answers it; a later event of the same command (a refund or a
waitlist offer after a cancellation) leaves that answer, but a decision replaces the
`invalid` answer of a command set aside and replayed since. `reason` is assigned last: the
assignments run in order and the others must still see the reason recorded before."""
_INSERT_INVALID = insert(t.command_outcomes).prefix_with("IGNORE")
_MARK_INVALID = (
    update(t.registrations)
    .where(
        t.registrations.c.registration_id == bindparam("r_id"),
        t.registrations.c.status == "pending",
    )
    .values(status=REJECTED, reason=SET_ASIDE, updated_at=bindparam("at"))
)
_INSERT_APPLIED = insert(t.applied_events)


def _sold_deltas(c: Changes) -> list[dict[str, Any]]:
    return [
        {"c_id": cid, "b_code": code, "delta": delta}
        for (cid, code), delta in sorted(c.sold.items())
        if delta
    ]


def _between_transfers(
    c: Changes,
) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any] | None]]:
    """The status changes in event order, split at each transfer: (the changes before it,
    the transfer), then (the changes after the last one, None)."""
    done = 0
    for transfer in c.transfers:
        upto = transfer["statuses_before"]
        yield c.registration_statuses[done:upto], transfer
        done = upto
    yield c.registration_statuses[done:], None


async def write_changes(conn: AsyncConnection, c: Changes) -> None:
    """Apply one batch's changes to the database. `ReadModelImage.apply` is its mirror."""
    if c.conventions:
        await conn.execute(_INSERT_CONVENTIONS, c.conventions)
    if c.badge_types:
        await conn.execute(_INSERT_BADGE_TYPES, c.badge_types)
    if c.quotas:
        await conn.execute(_SET_QUOTA, c.quotas)
    if c.statuses:
        await conn.execute(_SET_STATUS, c.statuses)
    invalid = [{"r_id": row["subject_id"], "at": row["recorded_at"]} for row in c.invalid]
    if c.pending:
        await conn.execute(_INSERT_PENDING, c.pending)
        invalid.extend(
            {"r_id": row.subject_id, "at": row.recorded_at}
            for row in await conn.execute(_SET_ASIDE_OUTCOMES, {"ids": c.pending_commands})
        )
    if c.decided:
        await conn.execute(_UPSERT_DECIDED, c.decided)
    for statuses, transfer in _between_transfers(c):
        if statuses:
            await conn.execute(_SET_REGISTRATION_STATUS, statuses)
        if transfer is not None:
            await conn.execute(_RECORD_TRANSFER, transfer)
            await conn.execute(_TRANSFER, transfer)
    if c.check_ins:
        await conn.execute(_CHECK_IN, c.check_ins)
    if c.scans:
        await conn.execute(_INSERT_SCANS, c.scans)
    if c.superseded:
        await conn.execute(_SUPERSEDE, c.superseded)
    sold = _sold_deltas(c)
    if sold:
        await conn.execute(_ADD_SOLD, sold)
    if c.outcomes:
        await conn.execute(_UPSERT_OUTCOMES, c.outcomes)
    if c.invalid:
        await conn.execute(_INSERT_INVALID, c.invalid)
    if invalid:
        await conn.execute(_MARK_INVALID, invalid)
    if c.applied:
        await conn.execute(_INSERT_APPLIED, c.applied)


def _collated(text: str) -> str:
    """A key compared the way the read model's columns compare (`utf8mb4_unicode_ci`, pad
    space) for the ASCII codes and ids they hold: case and trailing spaces ignored."""
    return text.casefold().rstrip(" ")


_TEXT_LIMITS = {
    table.name: [
        (column.name, column.type.length)
        for column in table.columns
        if isinstance(column.type, String) and column.type.length
    ]
    for table in (t.conventions, t.badge_types, t.registrations)
}


def _fits(c: Changes) -> bool:
    """Whether the rows an event writes fit their columns (in characters, as utf8mb4 counts
    them); commands are validated to fit, events carry what their decider copied."""
    for table, rows in (
        (t.conventions, c.conventions),
        (t.badge_types, c.badge_types),
        (t.registrations, c.decided),
    ):
        for row in rows:
            for name, length in _TEXT_LIMITS[table.name]:
                value = row[name]
                if isinstance(value, str) and len(value) > length:
                    return False
    return True


class ReadModelImage:
    """The read model held in memory while a rebuild folds every record into it: the rows
    `write_changes` would leave in the database, applied the same way, statement for
    statement, then inserted in bulk."""

    def __init__(self) -> None:
        self.conventions: dict[str, dict[str, Any]] = {}
        self.badge_types: dict[tuple[str, str], dict[str, Any]] = {}
        self.registrations: dict[str, dict[str, Any]] = {}
        self.command_outcomes: dict[str, dict[str, Any]] = {}
        self.applied_events: dict[str, dict[str, Any]] = {}
        self.registration_transfers: dict[str, dict[str, Any]] = {}
        self.check_in_scans: dict[str, dict[str, Any]] = {}
        self._scans_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
        """Each registration's scan rows."""
        self._event_ids: set[str] = set()
        self.set_aside = 0
        """Events left out because their rows do not fit the columns (see `fold_events`)."""

    def tables(self) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
        """Each table with its final rows."""
        yield t.conventions, list(self.conventions.values())
        yield t.badge_types, list(self.badge_types.values())
        yield t.registrations, list(self.registrations.values())
        yield t.registration_transfers, list(self.registration_transfers.values())
        yield t.check_in_scans, list(self.check_in_scans.values())
        yield t.command_outcomes, list(self.command_outcomes.values())
        yield t.applied_events, list(self.applied_events.values())

    def pending_matters(self, command_id: str, registration_id: str) -> bool:
        """Whether a submitted registration would change these rows: not if its
        registration is known and the decider did not set the command aside."""
        if _collated(registration_id) not in self.registrations:
            return True
        outcome = self.command_outcomes.get(_collated(command_id))
        return outcome is not None and outcome["reason"] == SET_ASIDE

    def fold_events(self, events: Sequence[tuple[Envelope, Event]]) -> None:
        """Apply events one by one. One whose rows do not fit the columns changes nothing:
        in the database its batch fails, and the projector retries that batch one record
        at a time and dead-letters it alone (it is in the dead-letter topic already)."""
        for pair in events:
            changes = project_events([pair], self._event_ids, Changes())
            if not changes.applied:
                continue
            if not _fits(changes):
                self._event_ids.discard(changes.applied[0]["event_id"])
                self.set_aside += 1
                continue
            self.apply(changes)

    def apply(self, c: Changes) -> None:
        for row in c.conventions:
            self.conventions.setdefault(_collated(row["convention_id"]), dict(row))
        for row in c.badge_types:
            code = (_collated(row["convention_id"]), _collated(row["code"]))
            self.badge_types.setdefault(code, dict(row))
        for quota in c.quotas:
            badge = self.badge_types.get((_collated(quota["c_id"]), _collated(quota["b_code"])))
            if badge is not None:
                badge["quota"] = quota["b_quota"]
        for status in c.statuses:
            self._update(self.conventions, status["c_id"], status=status["c_status"], at=status)
        invalid = [(row["subject_id"], row["recorded_at"]) for row in c.invalid]
        for row in c.pending:
            self.registrations.setdefault(_collated(row["registration_id"]), dict(row))
        for command_id in c.pending_commands:
            outcome = self.command_outcomes.get(_collated(command_id))
            if outcome is not None and outcome["reason"] == SET_ASIDE:
                invalid.append((outcome["subject_id"], outcome["recorded_at"]))
        for row in c.decided:
            key = _collated(row["registration_id"])
            known = self.registrations.get(key)
            if known is None:
                self.registrations[key] = dict(row)
            else:
                known.update(
                    status=row["status"],
                    reason=row["reason"],
                    reason_subject=row["reason_subject"],
                    has_order=row["has_order"],
                    updated_at=row["updated_at"],
                )
        for statuses, transfer in _between_transfers(c):
            for change in statuses:
                self._update(
                    self.registrations, change["r_id"], status=change["r_status"], at=change
                )
            if transfer is not None:
                self._transfer(transfer)
        for change in c.check_ins:
            known = self.registrations.get(_collated(change["r_id"]))
            if known is not None:
                known.update(checked_in_at=change["w_at"], checked_in_station=change["w_station"])
        for row in c.scans:
            key = _collated(row["scan_id"])
            if key not in self.check_in_scans:
                self.check_in_scans[key] = scan = dict(row)
                self._scans_of[_collated(row["registration_id"])].append(scan)
        for change in c.superseded:
            replaced = _collated(change["s_id"])
            for scan in self._scans_of.get(_collated(change["r_id"]), ()):
                if _collated(scan["scan_id"]) == replaced:
                    scan["outcome"] = SUPERSEDED
                elif scan["outcome"] not in _NAMES_WINNER:
                    continue
                scan.update(winner_station=change["w_station"], winner_scanned_at=change["w_at"])
        for change in _sold_deltas(c):
            badge = self.badge_types.get((_collated(change["c_id"]), _collated(change["b_code"])))
            if badge is not None:
                badge["sold"] += change["delta"]
        for row in c.outcomes:
            key = _collated(row["command_id"])
            known = self.command_outcomes.get(key)
            if known is None or known["reason"] == SET_ASIDE:
                self.command_outcomes[key] = dict(row)
        for row in c.invalid:
            self.command_outcomes.setdefault(_collated(row["command_id"]), dict(row))
        for registration_id, at in invalid:
            known = self.registrations.get(_collated(registration_id))
            if known is not None and known["status"] == "pending":
                known.update(status=REJECTED, reason=SET_ASIDE, updated_at=at)
        for row in c.applied:
            self.applied_events[row["event_id"]] = dict(row)

    def _transfer(self, transfer: dict[str, Any]) -> None:
        row = self.registrations.get(_collated(transfer["r_id"]))
        if row is None:
            return
        self.registration_transfers.setdefault(
            transfer["event_id"],
            {
                "event_id": transfer["event_id"],
                "registration_id": row["registration_id"],
                "convention_id": row["convention_id"],
                "from_account_id": row["account_id"],
                "from_email_key": row["email_key"],
                "to_account_id": transfer["account_id"],
                "transferred_at": transfer["at"],
            },
        )
        row.update(
            email=transfer["email"],
            name=transfer["name"],
            email_key=transfer["email_key"],
            account_id=transfer["account_id"],
            updated_at=transfer["at"],
            ticket_serial=row["ticket_serial"] + 1,
        )

    @staticmethod
    def _update(
        rows: dict[str, dict[str, Any]], key: str, *, status: str, at: dict[str, Any]
    ) -> None:
        row = rows.get(_collated(key))
        if row is not None:
            row.update(status=status, updated_at=at["at"])
