"""Hostile order commands put straight on the broker (past the gateway's fence), through the
decider and both projectors into the database: each poison record is set aside on the
dead-letter topic, each well-formed but hostile command is refused with a reason, and the
convention's partition keeps deciding, its counts untouched."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from infra.bootstrap import build_decider, build_projector
from projections.orders import tables as o
from projections.website import tables as r
from schemas.catalogue import OptionSpec
from schemas.orders import AcceptOffer, AddOptions, DefineOption, RecordPayment
from schemas.registration import RegisterAttendee
from schemas.topics import Topics, registration_key
from tests.conftest import StackFactory
from tests.support import (
    command_envelope,
    engine_for,
    eventually,
    open_convention_with_quota,
    produce,
    read_topic,
    running,
    send_commands,
)

pytestmark = pytest.mark.integration


def raw(convention_id: uuid.UUID, type_name: str, payload: dict[str, Any]) -> bytes:
    """A command envelope as anyone with the broker's address could write it."""
    return json.dumps(
        {
            "message_id": str(uuid.uuid4()),
            "type": type_name,
            "schema_version": 1,
            "occurred_at": datetime.now(UTC).isoformat(),
            "correlation_id": str(uuid.uuid4()),
            "causation_id": None,
            "key": str(convention_id),
            "actor": "intruder",
            "payload": {"convention_id": str(convention_id), **payload},
        }
    ).encode()


async def test_hostile_order_commands_are_set_aside_or_refused_and_the_partition_goes_on(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    cid = await open_convention_with_quota(settings, 50)
    other = await open_convention_with_quota(settings, 5)
    shirt = DefineOption(
        convention_id=cid,
        option=OptionSpec(code="SHIRT", name="T-shirt", price_cents=0, quota=2),
    )
    first = RegisterAttendee(
        convention_id=cid,
        registration_id=uuid.uuid4(),
        email="first@example.org",
        name="First",
        badge_type="STD",
        request_hash="first",
    )
    await send_commands(settings, command_envelope(shirt), command_envelope(first))
    some = str(first.registration_id)
    poison = [
        ("RecordPayment", {"registration_id": some, "order_id": some, "payment_id": "p 1",
                           "amount_cents": -5, "currency": "EUR", "succeeded": True}),
        ("AddOptions", {"registration_id": some, "order_id": some, "request_hash": "x",
                        "options": [{"code": "SHIRT"}] * 10_000}),
        ("JoinWaitlist", {"entry_id": some, "kind": "badge", "code": "STD", "email": "a@b",
                          "name": "Nobody"}),
        ("DefineOption", {"option": {"code": "EVIL", "name": "Evil\u202egnp.exe",
                                     "price_cents": 0}}),
        ("OrderPlaced", {"registration_id": some}),
        ("RegisterAttendee", {"registration_id": some, "email": "x@example.org", "name": "X",
                              "badge_type": "STD", "request_hash": "h",
                              "options": [{"code": "SHIRT", "quantity": 10**9}]}),
    ]  # fmt: skip
    await produce(
        settings,
        topics.registration_commands,
        [
            (registration_key(cid), raw(cid, name, payload), [("type", name.encode())])
            for name, payload in poison
        ],
    )
    hostile = [
        # Fifty lines of the most units each: merged, far past the option's limit.
        RegisterAttendee(
            convention_id=cid,
            registration_id=uuid.uuid4(),
            email="greedy@example.org",
            name="Greedy",
            badge_type="STD",
            request_hash="greedy",
            options=tuple({"code": "SHIRT", "quantity": 100} for _ in range(50)),  # type: ignore[misc]
        ),
        # Options for a registration of this convention, sent as another convention's.
        AddOptions(
            convention_id=other,
            registration_id=first.registration_id,
            order_id=uuid.uuid4(),
            options=({"code": "SHIRT"},),  # type: ignore[arg-type]
            request_hash="elsewhere",
        ),
        # Money for an order nobody placed, and an offer nobody made.
        RecordPayment(
            convention_id=cid,
            registration_id=uuid.uuid4(),
            order_id=uuid.uuid4(),
            payment_id="pay_forged",
            amount_cents=100,
            currency="EUR",
            succeeded=True,
        ),
        AcceptOffer(
            convention_id=cid, entry_id=uuid.uuid4(), registration_id=uuid.uuid4(), request_hash="x"
        ),
    ]
    after = RegisterAttendee(
        convention_id=cid,
        registration_id=uuid.uuid4(),
        email="after@example.org",
        name="After",
        badge_type="STD",
        request_hash="after",
        options=({"code": "SHIRT"},),  # type: ignore[arg-type]
    )
    await send_commands(settings, *(command_envelope(c) for c in [*hostile, after]))

    async with (
        running(build_decider(settings)),
        running(build_projector(settings, "website")),
        running(build_projector(settings, "orders")),
    ):
        dead = await eventually(
            lambda: read_topic(settings, topics.dead_letter),
            lambda records: len(records) >= len(poison),
            what="every poison record set aside",
        )

        async def state() -> tuple[str | None, int | None]:
            async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
                status = (
                    await conn.execute(
                        select(r.registrations.c.status).where(
                            r.registrations.c.registration_id == str(after.registration_id)
                        )
                    )
                ).scalar_one_or_none()
                taken = (
                    await conn.execute(
                        select(o.options.c.taken).where(
                            o.options.c.convention_id == str(cid), o.options.c.code == "SHIRT"
                        )
                    )
                ).scalar_one_or_none()
            return status, taken

        assert await eventually(
            state, lambda s: s == ("confirmed", 1), what="the next registration decided"
        ) == ("confirmed", 1)
        events = await eventually(
            lambda: read_topic(settings, topics.registration_events),
            lambda records: sum(
                json.loads(e.value)["type"] in ("RegistrationRejected", "OrderRejected",
                                                "WaitlistRejected")
                for e in records
            ) >= len(hostile),
            what="every hostile command refused",
        )  # fmt: skip
    assert {dict(d.headers)["type"].decode() for d in dead} >= {name for name, _ in poison}
    refusals = {
        (json.loads(e.value)["type"], json.loads(e.value)["payload"]["reason"])
        for e in events
        if json.loads(e.value)["type"].endswith("Rejected")
    }
    assert refusals >= {
        ("RegistrationRejected", "limit_reached"),
        ("OrderRejected", "unknown_registration"),
        ("OrderRejected", "unknown_order"),
        ("WaitlistRejected", "unknown_entry"),
    }
