"""The accounts projector on a real broker and MariaDB: account events become the account
read models once each, whatever is redelivered; a poison record and an event the read model
refuses (an identity another account holds) go to the dead-letter topic, and the projector
moves on."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from gateway.account_reads import AccountReads
from infra.bootstrap import ConsumerRole, group_name
from infra.db import make_engine
from infra.pipeline.exactly_once import ConsumerConfig, ExactlyOnceConsumer
from infra.settings import Settings
from producers.dead_letters import read_dead_letters
from producers.kafka import make_producer
from projections.accounts import tables as t
from projections.accounts.projector import AccountsProjector
from projections.website.tables import consumer_positions
from schemas.accounts import (
    AccountCommandRejected,
    AccountCreated,
    AccountMessage,
    AccountRejection,
    EmailVerified,
    PasswordChanged,
    Role,
    RoleGranted,
    RoleRevoked,
    VerificationMailed,
    account_envelope,
)
from schemas.envelope import Envelope
from schemas.topics import Topics, account_key
from tests.conftest import StackFactory
from tests.support import count, engine_for, eventually, produce, running

pytestmark = pytest.mark.integration

START = datetime(2027, 1, 10, 9, 0, 0, tzinfo=UTC)
Record = tuple[str, bytes, list[tuple[str, bytes]]]


def projector_group(settings: Settings) -> str:
    return group_name(settings, "projector.accounts")


def build_accounts_projector(settings: Settings) -> ConsumerRole:
    """The projector as the composition root would run it: positions in the read database."""
    topics = Topics(settings.topic_prefix)
    engine = make_engine(settings.db.read_url, pool_size=2)
    producer = make_producer(settings.kafka_bootstrap_servers)
    consumer = ExactlyOnceConsumer(
        ConsumerConfig(
            group=projector_group(settings),
            topics=(topics.account_events,),
            dead_letter_topic=topics.dead_letter,
            bootstrap_servers=settings.kafka_bootstrap_servers,
        ),
        engine=engine,
        positions=consumer_positions,
        handler=AccountsProjector(),
        producer=producer,
    )
    return ConsumerRole(consumer, producer, engine.dispose)


class Stream:
    """Account events of one identity, a second apart, each caused by a command."""

    def __init__(self, email_key: str) -> None:
        self.email_key = email_key
        self.envelopes: list[Envelope] = []

    def add(self, event: AccountMessage, command_id: uuid.UUID | None = None) -> Envelope:
        envelope = account_envelope(
            event,
            message_id=uuid.uuid4(),
            occurred_at=START + timedelta(seconds=len(self.envelopes)),
            correlation_id=uuid.uuid4(),
            causation_id=command_id or uuid.uuid4(),
            email_key=self.email_key,
            actor="admin:root",
        )
        self.envelopes.append(envelope)
        return envelope


def as_record(envelope: Envelope) -> Record:
    return (account_key(envelope.key), envelope.encode(), envelope.headers())


async def stored_offsets(settings: Settings) -> int:
    positions = consumer_positions.c
    async with engine_for(settings.db.read_url) as engine, engine.connect() as conn:
        total = (
            await conn.execute(
                select(func.coalesce(func.sum(positions.next_offset), 0)).where(
                    positions.group_name == projector_group(settings),
                    positions.topic == Topics(settings.topic_prefix).account_events,
                )
            )
        ).scalar_one()
    return int(total)


def naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


async def test_account_events_project_once_and_poison_is_set_aside(
    make_settings: StackFactory,
) -> None:
    settings = await make_settings()
    topics = Topics(settings.topic_prefix)
    ada, bob, thief = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    convention = uuid.uuid4()
    rejected_command = uuid.uuid4()

    stream = Stream("ada@example.org")
    created = stream.add(
        AccountCreated(
            account_id=ada, email="Ada@example.org", email_key=stream.email_key, name="Ada"
        )
    )
    stream.add(VerificationMailed(account_id=ada))
    stream.add(EmailVerified(account_id=ada, email_key=stream.email_key))
    changed = stream.add(PasswordChanged(account_id=ada, reset=True))
    granted = stream.add(RoleGranted(account_id=ada, role=Role.STAFF, convention_id=convention))
    stream.add(RoleGranted(account_id=ada, role=Role.ADMIN))
    revoked = stream.add(RoleRevoked(account_id=ada, role=Role.ADMIN))
    stream.add(
        AccountCommandRejected(
            account_id=ada, command="VerifyEmail", reason=AccountRejection.ALREADY_VERIFIED
        ),
        command_id=rejected_command,
    )
    takeover = stream.add(
        AccountCreated(
            account_id=thief, email="ADA@example.org", email_key=stream.email_key, name="Eve"
        )
    )
    other = Stream("bob@example.org")
    bob_created = other.add(
        AccountCreated(
            account_id=bob, email="bob@example.org", email_key=other.email_key, name="Bob"
        )
    )

    records = [as_record(e) for e in stream.envelopes[:-1]]
    records += [
        as_record(granted),  # redelivered: changes nothing twice
        as_record(created),
        (stream.email_key, b"\x00 not an envelope", [("type", b"AccountCreated")]),
        as_record(takeover),  # the identity is Ada's: refused by the read model's key
        as_record(bob_created),
    ]
    await produce(settings, topics.account_events, records)

    async with running(build_accounts_projector(settings)):
        await eventually(
            lambda: stored_offsets(settings),
            lambda offset: offset == len(records),
            what="the projector past every account record",
        )

    async with engine_for(settings.db.read_url) as engine:
        reads = AccountReads(engine)
        account = await reads.account(ada)
        assert account is not None
        assert account.email == "Ada@example.org"
        assert account.name == "Ada"
        assert account.verified
        assert account.created_at == naive(created.occurred_at)
        assert account.sessions_valid_after == naive(changed.occurred_at)
        assert await reads.by_email_key("ada@example.org") == account
        assert await reads.by_email_key("ADA@example.org") is None
        assert await reads.account(thief) is None

        bob_view = await reads.by_email_key("bob@example.org")
        assert bob_view is not None
        assert bob_view.account_id == bob
        assert not bob_view.verified
        assert bob_view.sessions_valid_after is None

        assert await reads.roles(ada) == [("staff", convention)]
        changes = await reads.role_changes(ada)
        assert [(c.role, c.convention_id, c.granted, c.actor) for c in changes] == [
            ("staff", convention, True, "admin:root"),
            ("admin", None, True, "admin:root"),
            ("admin", None, False, "admin:root"),
        ]
        assert changes[-1].event_id == revoked.message_id

        outcome = await reads.outcome(rejected_command)
        assert outcome is not None
        assert outcome.rejected
        assert (outcome.account_id, outcome.command, outcome.reason) == (
            ada,
            "VerifyEmail",
            "already_verified",
        )
        accepted = await reads.outcome(granted.causation_id or uuid.uuid4())
        assert accepted is not None
        assert (accepted.command, accepted.outcome) == ("GrantRole", "accepted")
        assert await reads.outcome(uuid.uuid4()) is None

        # Ada's events but the takeover, and Bob's one: each applied once.
        assert await count(engine, t.applied_events) == len(stream.envelopes)
        assert await count(engine, t.accounts) == 2

    dead = await read_dead_letters(settings.kafka_bootstrap_servers, topics.dead_letter)
    assert [(d.source_topic, d.consumer_group) for d in dead] == [
        (topics.account_events, projector_group(settings))
    ] * 2
    assert {d.error_class for d in dead} == {"UndecodableMessage", "IntegrityError"}
    assert {d.value for d in dead} == {b"\x00 not an envelope", takeover.encode()}
