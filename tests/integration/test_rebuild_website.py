"""The fast website rebuild on a real broker and MariaDB: the same rows as the projector
wrote, and positions a projector started afterwards resumes from without doubles or gaps."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from infra.bootstrap import build_decider, build_projector, decider_group, group_name
from infra.settings import Settings
from projections.progress import Progress
from projections.rebuild import rebuild_website
from projections.website import tables as r
from schemas.catalogue import (
    OptionChoice,
    OptionSpec,
    OrderLine,
    OrderPolicy,
    PriceTier,
    PromoCodeSpec,
)
from schemas.checkin import (
    AttendeeCheckedIn,
    CheckInRefusal,
    CheckInRefused,
    CheckInSuperseded,
)
from schemas.envelope import (
    HEADER_CONSUMER_GROUP,
    HEADER_ERROR,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TOPIC,
    Envelope,
)
from schemas.orders import (
    AddOptions,
    BadgeQuotaSet,
    CatalogueChangeRejected,
    OptionDefined,
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    OrderPolicySet,
    OrderRejected,
    PaymentDeclined,
    PriceTiersDefined,
    PromoCodeCreated,
    RefundCompleted,
    RefundIssued,
    RefundReason,
    WaitlistJoined,
    WaitlistLeft,
    WaitlistOfferAccepted,
    WaitlistOfferExpired,
    WaitlistOfferMade,
    WaitlistRejected,
)
from schemas.registration import (
    BadgeTypeSpec,
    CancelRegistration,
    ConventionCreated,
    ConventionOpened,
    Event,
    OrderPlaced,
    OrderTerms,
    RegisterAttendee,
    RegistrationCancelled,
    RegistrationTransferred,
    RejectionReason,
)
from schemas.registry import wrap
from schemas.topics import Topics
from tests.conftest import StackFactory
from tests.integration.test_pipeline import _snapshot
from tests.support import (
    command_envelope,
    count,
    engine_for,
    eventually,
    open_convention_with_quota,
    produce,
    read_topic,
    registration,
    running,
    send_commands,
    sold,
    statuses,
)

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 10, 9, 0, 0, tzinfo=UTC)


async def _positions(settings: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    group = group_name(settings, "projector.website")
    p = r.consumer_positions.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(
            select(p.topic, p.partition_no, p.next_offset, p.epoch).where(p.group_name == group)
        )
        return {(row.topic, row.partition_no): (row.next_offset, row.epoch) for row in rows}


async def test_the_rebuild_writes_the_projected_rows_and_the_projector_resumes_after_it(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    convention_id = await open_convention_with_quota(settings, 2)
    decided = [registration(convention_id, f"d{i}@example.org") for i in range(3)]
    invalid = RegisterAttendee.model_construct(
        **{**registration(convention_id, "x@example.org")[0].model_dump(), "email": "no address"}
    )
    await send_commands(
        settings, *(command_envelope(c) for c, _ in decided), command_envelope(invalid)
    )
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s == {"confirmed": 2, "rejected:sold_out": 1},
            what="decisions",
        )
        cancel = CancelRegistration(convention_id=convention_id, registration_id=decided[0][1])
        await send_commands(settings, command_envelope(cancel))
        await eventually(
            lambda: sold(settings, convention_id), lambda n: n == 1, what="the cancellation"
        )
        await eventually(
            lambda: read_topic(settings, topics.dead_letter),
            lambda letters: len(letters) == 1,
            what="the invalid command dead-lettered",
        )
    waiting, _ = registration(convention_id, "waiting@example.org")
    async with running(build_projector(settings, "website")):
        await send_commands(settings, command_envelope(waiting))
        await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: s.get("pending") == 1,
            what="the undecided registration shown pending",
        )
        await eventually(
            lambda: _outcome_reasons(settings),
            lambda reasons: "invalid" in reasons,
            what="the invalid command answered",
        )
    before = await _snapshot(settings)
    positions_before = await _positions(settings)

    stderr = io.StringIO()
    report = await rebuild_website(settings, progress=Progress("rebuild ", stream=stderr))

    assert await _snapshot(settings) == before
    events = await read_topic(settings, topics.registration_events)
    assert report.events == len(events)
    assert report.records == report.events + 8 + 1
    assert report.set_aside == 0
    assert "records/s" in stderr.getvalue().splitlines()[-1]
    positions_after = await _positions(settings)
    assert {tp: offset for tp, (offset, _) in positions_after.items()} == {
        tp: offset
        for tp, (offset, _) in positions_before.items()
        if offset or tp in positions_after
    }
    assert all(positions_after[tp][1] == epoch + 1 for tp, (_, epoch) in positions_before.items())

    later, _ = registration(convention_id, "later@example.org")
    await send_commands(settings, command_envelope(later))
    async with running(build_decider(settings)), running(build_projector(settings, "website")):
        result = await eventually(
            lambda: statuses(settings, convention_id),
            lambda s: "pending" not in s and sum(s.values()) == 5,
            what="the undecided and the later registration decided",
        )
    assert result == {"confirmed": 2, "cancelled": 1, "rejected:sold_out": 2}
    assert await sold(settings, convention_id) == 2
    events = await read_topic(settings, topics.registration_events)
    async with engine_for(settings.db.read_url) as engine:
        assert await count(engine, r.applied_events) == len(
            {json.loads(e.value)["message_id"] for e in events}
        )


async def _outcome_reasons(settings: Settings) -> set[str | None]:
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        return set((await conn.execute(select(r.command_outcomes.c.reason))).scalars())


async def test_a_rebuild_of_empty_topics_writes_no_rows(make_settings: StackFactory) -> None:
    settings = await make_settings(partitions=1)
    report = await rebuild_website(settings)
    assert (report.records, report.events, report.rows) == (0, 0, 0)
    assert {offset for offset, _ in (await _positions(settings)).values()} == {0}


class Stream:
    """Hand-made events of one convention, a second apart; events decided from one command
    share its id as their cause."""

    def __init__(self, convention_id: uuid.UUID) -> None:
        self.convention_id = convention_id
        self.envelopes: list[Envelope] = []

    def add(self, *events: Event, command_id: uuid.UUID | None = None) -> uuid.UUID:
        cause = command_id or uuid.uuid4()
        for event in events:
            self.envelopes.append(
                wrap(
                    event,
                    message_id=uuid.uuid4(),
                    occurred_at=START + timedelta(seconds=len(self.envelopes)),
                    correlation_id=uuid.uuid4(),
                    causation_id=cause,
                    key=str(self.convention_id),
                    actor="test",
                )
            )
        return cause


def _seat(code: str = "FULL") -> OrderLine:
    return OrderLine(
        kind="badge", code=code, name=code, quantity=1, unit_price_cents=5000, total_cents=5000
    )


def _order(*lines: OrderLine) -> OrderTerms:
    total = sum(line.total_cents for line in lines)
    return OrderTerms(
        order_id=uuid.uuid4(), lines=lines, subtotal_cents=total, total_cents=total, currency="EUR"
    )


def _placed(cid: uuid.UUID, rid: uuid.UUID, email: str, order: OrderTerms) -> OrderPlaced:
    return OrderPlaced(
        convention_id=cid,
        registration_id=rid,
        email=email,
        name="Someone",
        badge_type="FULL",
        request_hash=f"h-{rid}",
        order=order,
        hold_until=START + timedelta(minutes=15),
    )


def _set_aside(settings: Settings, command: Envelope) -> tuple[str, bytes, list[tuple[str, bytes]]]:
    """The dead letter the registration decider makes of a command it cannot process."""
    topics = Topics(settings.topic_prefix)
    return (
        command.key,
        command.encode(),
        [
            *command.headers(),
            (HEADER_ERROR, b"cannot be processed"),
            (HEADER_ERROR_CLASS, b"UndecodableMessage"),
            (HEADER_SOURCE_TOPIC, topics.registration_commands.encode()),
            (HEADER_SOURCE_PARTITION, b"0"),
            (HEADER_SOURCE_OFFSET, b"0"),
            (HEADER_CONSUMER_GROUP, decider_group(settings).encode()),
        ],
    )


async def _outcomes(settings: Settings) -> dict[str, tuple[str, str | None, str]]:
    o = r.command_outcomes.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(select(o.command_id, o.outcome, o.reason, o.subject_id))
        return {row.command_id: (row.outcome, row.reason, row.subject_id) for row in rows}


async def _badges(settings: Settings, cid: uuid.UUID) -> dict[str, tuple[int, int]]:
    b = r.badge_types.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(
            select(b.code, b.quota, b.sold).where(b.convention_id == str(cid))
        )
        return {row.code: (row.quota, row.sold) for row in rows}


async def _check_ins(
    settings: Settings, cid: uuid.UUID
) -> tuple[dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
    g, s = r.registrations.c, r.check_in_scans.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        registrations = await conn.execute(
            select(g.registration_id, g.ticket_serial, g.checked_in_station, g.checked_in_at).where(
                g.convention_id == str(cid)
            )
        )
        scans = await conn.execute(
            select(s.scan_id, s.outcome, s.winner_station, s.winner_scanned_at).where(
                s.convention_id == str(cid)
            )
        )
        return (
            {row[0]: tuple(row[1:]) for row in registrations},
            {row[0]: tuple(row[1:]) for row in scans},
        )


async def _registrations(settings: Settings, cid: uuid.UUID) -> dict[str, str]:
    g = r.registrations.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        rows = await conn.execute(
            select(g.registration_id, g.status).where(g.convention_id == str(cid))
        )
        return {row.registration_id: row.status for row in rows}


async def test_orders_and_waitlists_show_alike_projected_and_rebuilt(
    make_settings: StackFactory,
) -> None:
    """Both appliers of the website projector (the batches and the rebuild's image) agree on
    the registration life with orders: held, paid, expired, cancelled, seats offered to the
    waitlist, quotas changed, and every new command answered, once."""
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    cid = uuid.uuid4()
    ada, bob, cy, dan = (uuid.uuid4() for _ in range(4))
    entry, late_entry, day_entry, refused_entry = (uuid.uuid4() for _ in range(4))
    ada_order = _order(_seat())

    stream = Stream(cid)
    stream.add(
        ConventionCreated(
            convention_id=cid,
            name="Con",
            starts_on=date(2027, 5, 1),
            ends_on=date(2027, 5, 3),
            badge_types=(
                BadgeTypeSpec(code="FULL", name="Full", price_cents=5000, quota=3),
                BadgeTypeSpec(code="DAY", name="Day", price_cents=2000, quota=2),
            ),
            request_hash="h",
        )
    )
    stream.add(ConventionOpened(convention_id=cid))
    catalogue = [
        stream.add(BadgeQuotaSet(convention_id=cid, badge_type="FULL", quota=5)),
        stream.add(
            PriceTiersDefined(
                convention_id=cid,
                badge_type="FULL",
                tiers=(PriceTier(name="Early", price_cents=4000),),
            )
        ),
        stream.add(
            OptionDefined(
                convention_id=cid, option=OptionSpec(code="BANQUET", name="B", price_cents=3000)
            )
        ),
        stream.add(
            PromoCodeCreated(convention_id=cid, promo=PromoCodeSpec(code="SAVE", percent_off=5))
        ),
        stream.add(OrderPolicySet(convention_id=cid, policy=OrderPolicy(hold_minutes=30))),
    ]
    refused_quota = stream.add(
        CatalogueChangeRejected(
            convention_id=cid,
            command="SetBadgeQuota",
            subject="FULL",
            reason=RejectionReason.QUOTA_BELOW_TAKEN,
        )
    )
    stream.add(
        WaitlistJoined(
            convention_id=cid,
            entry_id=entry,
            kind="badge",
            code="FULL",
            variant=None,
            quantity=1,
            email="dan@example.org",
            name="Dan",
            account_id=None,
            registration_id=None,
            position=1,
            seq=1,
            stock="badge:FULL",
        )
    )
    placed_ada = stream.add(_placed(cid, ada, "ada@example.org", ada_order))
    paid_ada = stream.add(
        OrderPaid(
            convention_id=cid,
            registration_id=ada,
            order_id=ada_order.order_id,
            payment_id="pay_1",
            amount_cents=5000,
            currency="EUR",
            confirms_registration=True,
        )
    )
    bob_order = _order(_seat())
    stream.add(_placed(cid, bob, "bob@example.org", bob_order))
    stream.add(
        PaymentDeclined(
            convention_id=cid, registration_id=bob, order_id=bob_order.order_id, payment_id="p2"
        )
    )
    stream.add(
        OrderExpired(
            convention_id=cid,
            registration_id=bob,
            order_id=bob_order.order_id,
            lines=bob_order.lines,
            expires_registration=True,
        )
    )
    stream.add(_placed(cid, cy, "cy@example.org", _order(_seat())))
    cancelled_cy = stream.add(
        RegistrationCancelled(convention_id=cid, registration_id=cy, badge_type="FULL"),
        WaitlistOfferMade(
            convention_id=cid,
            entry_id=entry,
            stock="badge:FULL",
            quantity=1,
            expires_at=START + timedelta(hours=1),
        ),
    )
    accepted = stream.add(
        WaitlistOfferAccepted(
            convention_id=cid, entry_id=entry, registration_id=dan, stock="badge:FULL", released=1
        ),
        _placed(cid, dan, "dan@example.org", _order(_seat())),
    )
    stream.add(
        WaitlistOfferMade(
            convention_id=cid,
            entry_id=day_entry,
            stock="badge:DAY",
            quantity=1,
            expires_at=START + timedelta(hours=1),
        )
    )
    stream.add(
        WaitlistOfferExpired(convention_id=cid, entry_id=day_entry, stock="badge:DAY", released=1)
    )
    stream.add(WaitlistLeft(convention_id=cid, entry_id=late_entry, stock="badge:DAY", released=0))
    refused_entry_command = stream.add(
        WaitlistRejected(
            convention_id=cid,
            entry_id=refused_entry,
            command="JoinWaitlist",
            reason=RejectionReason.NOT_SOLD_OUT,
        )
    )
    refused_order = stream.add(
        OrderRejected(
            convention_id=cid,
            registration_id=ada,
            order_id=None,
            command="AddOptions",
            reason=RejectionReason.UNKNOWN_OPTION,
            subject="NOPE",
        )
    )
    refund = uuid.uuid4()
    stream.add(
        RefundIssued(
            convention_id=cid,
            registration_id=ada,
            order_id=ada_order.order_id,
            refund_id=refund,
            payment_id="pay_1",
            amount_cents=100,
            currency="EUR",
            reason=RefundReason.DUPLICATE_PAYMENT,
        )
    )
    stream.add(RefundCompleted(convention_id=cid, registration_id=ada, refund_id=refund))
    stream.add(
        RegistrationTransferred(
            convention_id=cid,
            registration_id=ada,
            badge_type="FULL",
            email="ada2@example.org",
            name="Ada Two",
            account_id=uuid.uuid4(),
        )
    )
    door_b, door_c, door_a, revoked = (uuid.uuid4() for _ in range(4))
    scans = [
        stream.add(
            AttendeeCheckedIn(
                convention_id=cid,
                registration_id=ada,
                badge_type="FULL",
                name="Ada Two",
                station="Door B",
                scanned_at=START + timedelta(hours=5),
                scan_id=door_b,
            )
        ),
        stream.add(
            CheckInRefused(
                convention_id=cid,
                registration_id=ada,
                station="Door C",
                scanned_at=START + timedelta(hours=6),
                scan_id=door_c,
                reason=CheckInRefusal.ALREADY_CHECKED_IN,
                checked_in_station="Door B",
                checked_in_at=START + timedelta(hours=5),
            )
        ),
        stream.add(
            CheckInSuperseded(
                convention_id=cid,
                registration_id=ada,
                badge_type="FULL",
                name="Ada Two",
                station="Door A",
                scanned_at=START + timedelta(hours=4),
                scan_id=door_a,
                superseded_station="Door B",
                superseded_scanned_at=START + timedelta(hours=5),
                superseded_scan_id=door_b,
            )
        ),
        stream.add(
            CheckInRefused(
                convention_id=cid,
                registration_id=cy,
                station="Door A",
                scanned_at=START + timedelta(hours=4),
                scan_id=revoked,
                reason=CheckInRefusal.REVOKED,
            )
        ),
    ]

    options_order = _order(
        OrderLine(
            kind="option", code="BANQUET", name="B", quantity=1, unit_price_cents=0, total_cents=0
        )
    )
    add_options = command_envelope(
        AddOptions(
            convention_id=cid,
            registration_id=ada,
            order_id=options_order.order_id,
            options=(OptionChoice(code="BANQUET"),),
            request_hash="h-options",
        )
    )
    decided_later = Stream(cid)
    decided_later.add(
        OptionsOrdered(
            convention_id=cid,
            registration_id=ada,
            order=options_order,
            request_hash="h-options",
            hold_until=None,
        ),
        command_id=add_options.message_id,
    )

    await produce(
        settings,
        topics.registration_events,
        [(e.key, e.encode(), e.headers()) for e in stream.envelopes],
    )
    await produce(settings, topics.dead_letter, [_set_aside(settings, add_options)])
    set_aside_id = str(add_options.message_id)
    async with running(build_projector(settings, "website")):
        await eventually(
            lambda: _outcomes(settings),
            lambda found: (
                found.get(set_aside_id, ("",))[0] == "rejected" and str(accepted) in found
            ),
            what="the events projected and the command set aside answered invalid",
        )
        await produce(
            settings,
            topics.registration_events,
            [(e.key, e.encode(), e.headers()) for e in decided_later.envelopes],
        )
        outcomes = await eventually(
            lambda: _outcomes(settings),
            lambda found: found[set_aside_id][0] == "accepted",
            what="the command set aside, replayed and decided",
        )

    assert await _registrations(settings, cid) == {
        str(ada): "confirmed",
        str(bob): "expired",
        str(cy): "cancelled",
        str(dan): "pending_payment",
    }
    assert await _badges(settings, cid) == {"FULL": (5, 2), "DAY": (2, 0)}
    assert outcomes[set_aside_id] == ("accepted", None, str(ada))
    assert outcomes[str(cancelled_cy)] == ("accepted", None, str(cy))
    assert outcomes[str(accepted)] == ("accepted", None, str(entry))
    assert outcomes[str(placed_ada)] == outcomes[str(paid_ada)] == ("accepted", None, str(ada))
    assert {outcomes[str(c)] for c in catalogue} == {("accepted", None, str(cid))}
    assert outcomes[str(refused_quota)] == ("rejected", "quota_below_taken", str(cid))
    assert outcomes[str(refused_entry_command)] == ("rejected", "not_sold_out", str(refused_entry))
    assert outcomes[str(refused_order)] == ("rejected", "unknown_option", str(ada))
    assert [outcomes[str(c)] for c in scans] == [
        ("accepted", None, str(ada)),
        ("rejected", "already_checked_in", str(ada)),
        ("accepted", None, str(ada)),
        ("rejected", "revoked", str(cy)),
    ]
    at_four = (START + timedelta(hours=4)).replace(tzinfo=None)
    assert await _check_ins(settings, cid) == (
        {str(ada): (1, "Door A", at_four), str(cy): (0, None, None)}
        | {str(rid): (0, None, None) for rid in (bob, dan)},
        {
            str(door_a): ("checked_in", None, None),
            str(door_b): ("superseded", "Door A", at_four),
            str(door_c): ("already_checked_in", "Door A", at_four),
            str(revoked): ("revoked", None, None),
        },
    )

    before = await _snapshot(settings)
    report = await rebuild_website(settings)
    assert report.set_aside == 0
    assert await _snapshot(settings) == before
