"""The composition root: which handler serves which topics, with which engine and producer.

Every role (and every test) is built here from a `Settings`; nothing else wires components.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from litestar import Litestar
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.accounts import tables as account_tables
from consumers.accounts.handler import AccountDecider
from consumers.accounts.mailer import Mailer, MailTickets
from consumers.lodging import tables as lodging_tables
from consumers.lodging.circuit import CircuitBreaker
from consumers.lodging.handler import LodgingDecider
from consumers.lodging.manager import LodgingManager
from consumers.lodging.partner import PartnerClient
from consumers.orders.clock import OrderClock
from consumers.payments.provider import HttpPaymentProvider
from consumers.registration import tables as write_tables
from consumers.registration.handler import RegistrationDecider
from gateway.account_desk import AccountDesk
from gateway.account_reads import AccountReads
from gateway.app import create_app
from gateway.credentials import Credentials
from gateway.deps import Gateway
from gateway.payments import PaymentDesk
from gateway.reads import ReadModels
from gateway.sessions import LoginLimiter, SessionStore, make_redis
from gateway.waiting import DecisionStream, DecisionWaiter
from infra.db import make_engine
from infra.pipeline.exactly_once import BatchHandler, ConsumerConfig, ExactlyOnceConsumer
from infra.pipeline.health import ConsumerWatch, WatchedGroup
from infra.pipeline.retention import DedupRetention, Purge
from infra.services import DEFAULT_REDIS_URL
from infra.settings import Settings
from producers.commands import CommandPublisher
from producers.kafka import make_producer
from producers.outbox import OutboxRelay
from producers.partner_bridge import PartnerBridge
from projections.accounts import tables as account_read
from projections.accounts.projector import AccountsProjector
from projections.lodging import tables as lodging_read
from projections.lodging.projector import LodgingProjector
from projections.orders import tables as orders_read
from projections.orders.projector import OrdersProjector
from projections.reporting import tables as reporting_tables
from projections.reporting.archive import EventArchiver
from projections.website import tables as read_tables
from projections.website.projector import WebsiteProjector
from schemas.topics import Topics

DECIDERS = ("registration", "lodging", "accounts")
PROJECTORS = ("website", "reporting", "lodging", "accounts", "orders")
BRIDGE = "bridge.partner"
LODGING_FETCH_WAIT_MS = 100
"""Lodging's, accounts' and orders' consumers wait longer for records than the registration
path's 20 ms: the embedded broker answers a fetch only when the wait is over, so an idle
consumer costs it a fetch per wait, and neither a room request (which waits on the partner
anyway), a sign-up nor an order page loses much."""


def topics_of(settings: Settings) -> Topics:
    return Topics(settings.topic_prefix)


def producer_of(settings: Settings) -> AIOKafkaProducer:
    return make_producer(settings.kafka_bootstrap_servers, idempotence=settings.kafka_idempotence)


def group_name(settings: Settings, role: str) -> str:
    return f"{settings.topic_prefix}{role}"


def website_sources(topics: Topics) -> tuple[str, ...]:
    """Events, commands (shown pending until decided), and the commands the decider
    dead-lettered (answered `invalid`)."""
    return (topics.registration_events, topics.registration_commands, topics.dead_letter)


def lodging_sources(topics: Topics) -> tuple[str, ...]:
    """Registration events (which registrations are confirmed or cancelled) before lodging
    commands, so a poll that brings both decides a room request knowing its registration."""
    return (topics.registration_events, topics.lodging_commands)


def lodging_read_sources(topics: Topics) -> tuple[str, ...]:
    """Lodging events, and lodging commands (a room request shows as requested at once)."""
    return (topics.lodging_events, topics.lodging_commands)


def watched_groups(settings: Settings, read_engine: AsyncEngine) -> list[WatchedGroup]:
    """Every consumer group Butterfly runs, with the database holding its positions: the
    write and reporting databases get a small engine of their own for this."""
    topics = topics_of(settings)
    write_engine = make_engine(settings.db.write_url, pool_size=1)
    reporting_engine = make_engine(settings.db.reporting_url, pool_size=1)
    return [
        WatchedGroup(
            decider_group(settings),
            (topics.registration_commands,),
            write_engine,
            write_tables.consumer_positions,
        ),
        WatchedGroup(
            group_name(settings, "projector.website"),
            website_sources(topics),
            read_engine,
            read_tables.consumer_positions,
        ),
        WatchedGroup(
            group_name(settings, "projector.reporting"),
            topics.event_topics(),
            reporting_engine,
            reporting_tables.consumer_positions,
        ),
        WatchedGroup(
            decider_group(settings, "lodging"),
            lodging_sources(topics),
            write_engine,
            write_tables.consumer_positions,
        ),
        WatchedGroup(
            group_name(settings, BRIDGE),
            (topics.partner_lodging_events,),
            write_engine,
            write_tables.consumer_positions,
        ),
        WatchedGroup(
            group_name(settings, "projector.lodging"),
            lodging_read_sources(topics),
            read_engine,
            read_tables.consumer_positions,
        ),
        WatchedGroup(
            decider_group(settings, "accounts"),
            (topics.account_commands,),
            write_engine,
            write_tables.consumer_positions,
        ),
        WatchedGroup(
            group_name(settings, "projector.accounts"),
            (topics.account_events,),
            read_engine,
            read_tables.consumer_positions,
        ),
        WatchedGroup(
            group_name(settings, "projector.orders"),
            (topics.registration_events,),
            read_engine,
            read_tables.consumer_positions,
        ),
    ]


def build_consumer_watch(
    settings: Settings, read_engine: AsyncEngine, *, observe: bool = True
) -> ConsumerWatch:
    return ConsumerWatch(
        watched_groups(settings, read_engine),
        settings.kafka_bootstrap_servers,
        settings.stall_seconds,
        observe=observe,
    )


def build_account_desk(settings: Settings, read_engine: AsyncEngine) -> AccountDesk:
    """Sessions and login limits in the Redis every gateway shares, the password hashes
    (a narrow reader of the deciders' database) and the accounts read model."""
    redis = make_redis(settings.redis_url or DEFAULT_REDIS_URL)
    return AccountDesk(
        sessions=SessionStore(redis, settings.redis_namespace, settings.session_idle_minutes * 60),
        limiter=LoginLimiter(
            redis,
            settings.redis_namespace,
            settings.login_attempts_per_account,
            settings.login_attempts_per_address,
            settings.login_window_seconds,
        ),
        credentials=Credentials(make_engine(settings.db.write_url, pool_size=2)),
        reads=AccountReads(read_engine),
        redis=redis,
    )


def build_gateway_app(settings: Settings) -> Litestar:
    read_engine = make_engine(settings.db.read_url, pool_size=settings.db.pool_size)
    reads = ReadModels(read_engine)
    topics = topics_of(settings)
    stream = DecisionStream(
        settings.kafka_bootstrap_servers,
        events_topic=topics.registration_events,
        dead_letter_topic=topics.dead_letter,
        commands_topic=topics.registration_commands,
        decider_group=decider_group(settings),
    )
    gateway = Gateway(
        topics=topics,
        publisher=CommandPublisher(
            settings.kafka_bootstrap_servers, idempotence=settings.kafka_idempotence
        ),
        reads=reads,
        waiter=DecisionWaiter(
            reads, stream=stream, projector_group=group_name(settings, "projector.website")
        ),
        read_engine=read_engine,
        admin_token=settings.admin_token,
        decision_wait_seconds=settings.decision_wait_seconds,
        watch=build_consumer_watch(settings, read_engine),
        accounts=build_account_desk(settings, read_engine),
        reporting_engine=make_engine(settings.db.reporting_url, pool_size=2),
        kafka_bootstrap_servers=settings.kafka_bootstrap_servers,
        ticket_keys=settings.ticket_signing_keys,
    )
    return create_app(
        gateway,
        max_body_bytes=settings.http.max_body_bytes,
        max_in_flight=settings.max_in_flight,
        shed_latency_seconds=settings.shed_latency_ms / 1000,
        shed_floor=settings.shed_floor,
        payments=PaymentDesk(
            payment_provider(settings), settings.payment_webhook_secret, settings.public_url
        ),
    )


def payment_provider(settings: Settings) -> HttpPaymentProvider:
    return HttpPaymentProvider(
        settings.payment_provider_base_url, settings.payment_call_timeout_seconds
    )


@contextlib.asynccontextmanager
async def clock_role(settings: Settings) -> AsyncIterator[OrderClock]:
    """The order clock: reads the decider's tables, sends expiries, asks for refunds."""
    engine = make_engine(settings.db.write_url, pool_size=2)
    producer = producer_of(settings)
    provider = payment_provider(settings)
    await producer.start()
    await provider.start()
    try:
        yield OrderClock(engine, producer, topics_of(settings), provider)
    finally:
        await provider.close()
        await producer.stop()
        await engine.dispose()


class Companion(Protocol):
    """Work a role runs beside its consumer, for as long as the consumer runs."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ConsumerRole:
    """A consumer-group member ready to run: `run()` until `stop()`."""

    consumer: ExactlyOnceConsumer
    producer: AIOKafkaProducer
    close: Callable[[], Awaitable[None]]
    companions: tuple[Companion, ...] = ()

    async def run(self) -> None:
        await self.producer.start()
        beside = [asyncio.create_task(companion.run()) for companion in self.companions]
        try:
            await self.consumer.run()
        finally:
            for companion in self.companions:
                companion.stop()
            await asyncio.gather(*beside, return_exceptions=True)
            await self.producer.stop()
            await self.close()

    def stop(self) -> None:
        self.consumer.stop()
        for companion in self.companions:
            companion.stop()


@dataclass
class PartnerCalls:
    """The lodging process manager with its partner client, run beside the lodging
    decider: it acts only on the partitions this member owns."""

    manager: LodgingManager
    partner: PartnerClient

    async def run(self) -> None:
        await self.partner.start()
        try:
            await self.manager.run()
        finally:
            await self.partner.close()

    def stop(self) -> None:
        self.manager.stop()


def build_decider(
    settings: Settings,
    name: str = "registration",
    *,
    max_records: int = 500,
    wrap_handler: Callable[[BatchHandler], BatchHandler] | None = None,
) -> ConsumerRole:
    """`wrap_handler` lets a test put a fault between the decision and its publication."""
    if name not in DECIDERS:
        raise ValueError(f"unknown decider {name!r}; known: {', '.join(DECIDERS)}")
    if name == "lodging":
        return build_lodging(settings, max_records=max_records)
    if name == "accounts":
        return build_account_decider(settings, max_records=max_records)
    topics = topics_of(settings)
    engine = make_engine(settings.db.write_url, pool_size=4)
    producer = producer_of(settings)
    decider = RegistrationDecider(topics, engine, producer)
    consumer = _decider_consumer(
        settings,
        name,
        sources=(topics.registration_commands,),
        command_topic=topics.registration_commands,
        engine=engine,
        producer=producer,
        handler=(wrap_handler or _same)(decider),
        decider=decider,
        outbox=write_tables.outbox,
        decided=write_tables.decided_commands,
        max_records=max_records,
        on_claim=decider.forget,
    )
    return ConsumerRole(consumer, producer, engine.dispose)


def build_lodging(
    settings: Settings, *, max_records: int = 500, call_partner: bool = True
) -> ConsumerRole:
    """The lodging decider, and beside it the process manager calling the partner for the
    partitions it owns (`call_partner=False` leaves it out, for tests of the decider)."""
    topics = topics_of(settings)
    engine = make_engine(settings.db.write_url, pool_size=6)
    producer = producer_of(settings)
    companions: list[PartnerCalls] = []

    def decided() -> None:
        for companion in companions:
            companion.manager.wake()

    decider = LodgingDecider(topics, engine, producer, decided=decided)
    consumer = _decider_consumer(
        settings,
        "lodging",
        sources=lodging_sources(topics),
        command_topic=topics.lodging_commands,
        engine=engine,
        producer=producer,
        handler=decider,
        decider=decider,
        outbox=lodging_tables.outbox,
        decided=lodging_tables.decided_commands,
        max_records=max_records,
        fetch_max_wait_ms=LODGING_FETCH_WAIT_MS,
    )
    if call_partner:
        partner = PartnerClient(
            settings.partner_base_url,
            settings.lodging_call_timeout_seconds,
            CircuitBreaker(
                settings.lodging_circuit_failures, settings.lodging_circuit_open_seconds
            ),
        )

        def owned() -> set[int]:
            return {tp.partition for tp in consumer.owned if tp.topic == topics.lodging_commands}

        manager = LodgingManager(
            engine,
            producer,
            topics,
            partner,
            owned,
            concurrency=settings.lodging_concurrency,
            give_up_seconds=settings.lodging_give_up_seconds,
        )
        companions.append(PartnerCalls(manager, partner))
    return ConsumerRole(consumer, producer, engine.dispose, tuple(companions))


def build_account_decider(settings: Settings, *, max_records: int = 500) -> ConsumerRole:
    """Sign-ups, verifications, passwords and roles, one e-mail identity per partition."""
    topics = topics_of(settings)
    engine = make_engine(settings.db.write_url, pool_size=2)
    producer = producer_of(settings)
    decider = AccountDecider(topics, engine, producer)
    consumer = _decider_consumer(
        settings,
        "accounts",
        sources=(topics.account_commands,),
        command_topic=topics.account_commands,
        engine=engine,
        producer=producer,
        handler=decider,
        decider=decider,
        outbox=account_tables.outbox,
        decided=account_tables.decided_commands,
        max_records=max_records,
        fetch_max_wait_ms=LODGING_FETCH_WAIT_MS,
    )
    return ConsumerRole(consumer, producer, engine.dispose)


def build_bridge(settings: Settings, *, max_records: int = 500) -> ConsumerRole:
    """The partner's event feed in, lodging commands out; positions in the write database."""
    topics = topics_of(settings)
    engine = make_engine(settings.db.write_url, pool_size=2)
    producer = producer_of(settings)
    consumer = ExactlyOnceConsumer(
        ConsumerConfig(
            group=group_name(settings, BRIDGE),
            topics=(topics.partner_lodging_events,),
            role="bridge",
            dead_letter_topic=topics.dead_letter,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            max_records=max_records,
            fetch_max_wait_ms=LODGING_FETCH_WAIT_MS,
        ),
        engine=engine,
        positions=write_tables.consumer_positions,
        handler=PartnerBridge(topics, producer),
        producer=producer,
    )
    return ConsumerRole(consumer, producer, engine.dispose)


class _Idles(Protocol):
    async def idle(self) -> None: ...


def _decider_consumer(
    settings: Settings,
    name: str,
    *,
    sources: tuple[str, ...],
    command_topic: str,
    engine: AsyncEngine,
    producer: AIOKafkaProducer,
    handler: BatchHandler,
    decider: _Idles,
    outbox: Table,
    decided: Table,
    max_records: int,
    fetch_max_wait_ms: int | None = None,
    on_claim: Callable[[set[TopicPartition]], None] | None = None,
) -> ExactlyOnceConsumer:
    """What every decider runs on: its positions in the write database, its outbox relayed
    on takeover, its decided-command records purged when idle."""
    relay = OutboxRelay(engine, outbox, producer)
    retention = _dedup_retention(
        settings, engine, [Purge(decided, decided.c.decided_at)], command_topic=command_topic
    )

    async def when_idle() -> None:
        await decider.idle()
        await retention.when_idle()

    async def publish_leftovers(assigned: set[TopicPartition]) -> None:
        """A command partition taken over first publishes what its last owner decided but
        did not publish, in decision order, so its events stay in order on the topic;
        whatever this process remembered of it from an earlier ownership is dropped."""
        if on_claim is not None:
            on_claim(assigned)
        partitions = {tp.partition for tp in assigned if tp.topic == command_topic}
        if partitions:
            await relay.drain(grace=timedelta(0), partitions=partitions)

    config = ConsumerConfig(
        group=decider_group(settings, name),
        topics=sources,
        role=f"decider.{name}",
        dead_letter_topic=topics_of(settings).dead_letter,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        max_records=max_records,
    )
    if fetch_max_wait_ms is not None:
        config = replace(config, fetch_max_wait_ms=fetch_max_wait_ms)
    return ExactlyOnceConsumer(
        config,
        engine=engine,
        positions=write_tables.consumer_positions,
        handler=handler,
        producer=producer,
        on_assigned=publish_leftovers,
        on_idle=when_idle,
    )


def _same(handler: BatchHandler) -> BatchHandler:
    return handler


def decider_group(settings: Settings, name: str = "registration") -> str:
    return group_name(settings, f"decider.{name}")


def _dedup_retention(
    settings: Settings, engine: AsyncEngine, purges: list[Purge], *, command_topic: str
) -> DedupRetention:
    return DedupRetention(
        engine,
        purges,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        command_topic=command_topic,
        keep=timedelta(hours=settings.dedup_retention_hours),
    )


def projector_handler(settings: Settings, name: str) -> tuple[BatchHandler, tuple[str, ...]]:
    """A projector's handler and the topics it reads, in the order their batches apply: the
    live role and a replay into other tables (projections.replay) run this same code."""
    topics = topics_of(settings)
    if name == "website":
        return WebsiteProjector(topics, decider_group(settings)), website_sources(topics)
    if name == "lodging":
        return LodgingProjector(topics), lodging_read_sources(topics)
    if name == "accounts":
        return AccountsProjector(), (topics.account_events,)
    if name == "orders":
        return OrdersProjector(), (topics.registration_events,)
    if name == "reporting":
        return EventArchiver(settings.reporting_pseudonym_key), topics.event_topics()
    raise ValueError(f"unknown projector {name!r}; known: {', '.join(PROJECTORS)}")


def build_projector(
    settings: Settings, name: str, *, max_records: int = 1000, group: str | None = None
) -> ConsumerRole:
    """`group` overrides the consumer group, to replay into other databases side by side."""
    topics = topics_of(settings)
    handler, sources = projector_handler(settings, name)
    positions: Table
    on_idle = None
    if name == "website":
        engine = make_engine(settings.db.read_url, pool_size=4)
        positions = read_tables.consumer_positions
        on_idle = _dedup_retention(
            settings,
            engine,
            [
                Purge(read_tables.applied_events, read_tables.applied_events.c.applied_at),
                Purge(read_tables.command_outcomes, read_tables.command_outcomes.c.recorded_at),
            ],
            command_topic=topics.registration_commands,
        ).when_idle
    elif name == "lodging":
        engine = make_engine(settings.db.read_url, pool_size=4)
        positions = read_tables.consumer_positions
        on_idle = _dedup_retention(
            settings,
            engine,
            [
                Purge(lodging_read.applied_events, lodging_read.applied_events.c.applied_at),
                Purge(lodging_read.command_outcomes, lodging_read.command_outcomes.c.recorded_at),
            ],
            command_topic=topics.lodging_commands,
        ).when_idle
    elif name == "accounts":
        engine = make_engine(settings.db.read_url, pool_size=2)
        positions = read_tables.consumer_positions
        on_idle = _dedup_retention(
            settings,
            engine,
            [
                Purge(account_read.applied_events, account_read.applied_events.c.applied_at),
                Purge(account_read.command_outcomes, account_read.command_outcomes.c.recorded_at),
            ],
            command_topic=topics.account_commands,
        ).when_idle
    elif name == "orders":
        engine = make_engine(settings.db.read_url, pool_size=2)
        positions = read_tables.consumer_positions
        on_idle = _dedup_retention(
            settings,
            engine,
            [Purge(orders_read.applied_events, orders_read.applied_events.c.applied_at)],
            command_topic=topics.registration_commands,
        ).when_idle
    else:
        engine = make_engine(settings.db.reporting_url, pool_size=4)
        positions = reporting_tables.consumer_positions
    producer = producer_of(settings)
    consumer = ExactlyOnceConsumer(
        ConsumerConfig(
            group=group or group_name(settings, f"projector.{name}"),
            topics=sources,
            role="" if group else f"projector.{name}",
            dead_letter_topic=topics.dead_letter,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            max_records=max_records,
            **(
                {"fetch_max_wait_ms": LODGING_FETCH_WAIT_MS}
                if name in ("lodging", "accounts", "orders")
                else {}
            ),
        ),
        engine=engine,
        positions=positions,
        handler=handler,
        producer=producer,
        on_idle=on_idle,
    )
    return ConsumerRole(consumer, producer, engine.dispose)


@contextlib.asynccontextmanager
async def mailer_role(settings: Settings) -> AsyncIterator[Mailer]:
    """The dev mail sink: mails the deciders decided to send, as files in a folder; a mail
    that confirms a registration with its ticket (when ticket keys are set)."""
    engine = make_engine(settings.db.write_url, pool_size=2)
    keys = settings.ticket_signing_keys
    try:
        yield Mailer(
            engine,
            settings.mail_folder,
            tickets=MailTickets(keys, settings.site_url) if keys else None,
        )
    finally:
        await engine.dispose()


@dataclass
class Relays:
    """One relay per decider outbox, run together."""

    relays: tuple[OutboxRelay, ...]

    async def run(self) -> None:
        await asyncio.gather(*(relay.run() for relay in self.relays))

    def stop(self) -> None:
        for relay in self.relays:
            relay.stop()


@contextlib.asynccontextmanager
async def relay_role(settings: Settings) -> AsyncIterator[Relays]:
    engine = make_engine(settings.db.write_url, pool_size=2)
    producer = producer_of(settings)
    await producer.start()
    try:
        yield Relays(
            (
                OutboxRelay(engine, write_tables.outbox, producer),
                OutboxRelay(engine, lodging_tables.outbox, producer),
                OutboxRelay(engine, account_tables.outbox, producer),
            )
        )
    finally:
        await producer.stop()
        await engine.dispose()


async def serve(build: Callable[[], ConsumerRole]) -> None:
    """Build a consumer role inside the running loop and run it until signalled."""
    role = build()
    await run_until_signalled(role.run, role.stop)


async def run_until_signalled(run: Callable[[], Awaitable[None]], stop: Callable[[], None]) -> None:
    """Run a role; SIGINT or SIGTERM asks it to stop and waits for it to finish cleanly."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    await run()
