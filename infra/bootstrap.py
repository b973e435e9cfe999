"""The composition root: which handler serves which topics, with which engine and producer.

Every role (and every test) is built here from a `Settings`; nothing else wires components.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from aiokafka import AIOKafkaProducer, TopicPartition
from litestar import Litestar
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.registration import tables as write_tables
from consumers.registration.handler import RegistrationDecider
from gateway.app import create_app
from gateway.deps import Gateway
from gateway.reads import ReadModels
from gateway.waiting import DecisionStream, DecisionWaiter
from infra.db import make_engine
from infra.pipeline.exactly_once import BatchHandler, ConsumerConfig, ExactlyOnceConsumer
from infra.pipeline.health import ConsumerWatch, WatchedGroup
from infra.pipeline.retention import DedupRetention, Purge
from infra.settings import Settings
from producers.commands import CommandPublisher
from producers.kafka import make_producer
from producers.outbox import OutboxRelay
from projections.reporting import tables as reporting_tables
from projections.reporting.archive import EventArchiver
from projections.website import tables as read_tables
from projections.website.projector import WebsiteProjector
from schemas.topics import Topics

DECIDERS = ("registration",)
PROJECTORS = ("website", "reporting")


def topics_of(settings: Settings) -> Topics:
    return Topics(settings.topic_prefix)


def group_name(settings: Settings, role: str) -> str:
    return f"{settings.topic_prefix}{role}"


def website_sources(topics: Topics) -> tuple[str, ...]:
    """Events, commands (shown pending until decided), and the commands the decider
    dead-lettered (answered `invalid`)."""
    return (topics.registration_events, topics.registration_commands, topics.dead_letter)


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
        publisher=CommandPublisher(settings.kafka_bootstrap_servers),
        reads=reads,
        waiter=DecisionWaiter(
            reads, stream=stream, projector_group=group_name(settings, "projector.website")
        ),
        read_engine=read_engine,
        admin_token=settings.admin_token,
        decision_wait_seconds=settings.decision_wait_seconds,
        watch=build_consumer_watch(settings, read_engine),
    )
    return create_app(
        gateway,
        max_body_bytes=settings.http.max_body_bytes,
        max_in_flight=settings.max_in_flight,
        shed_latency_seconds=settings.shed_latency_ms / 1000,
        shed_floor=settings.shed_floor,
    )


@dataclass
class ConsumerRole:
    """A consumer-group member ready to run: `run()` until `stop()`."""

    consumer: ExactlyOnceConsumer
    producer: AIOKafkaProducer
    close: Callable[[], Awaitable[None]]

    async def run(self) -> None:
        await self.producer.start()
        try:
            await self.consumer.run()
        finally:
            await self.producer.stop()
            await self.close()

    def stop(self) -> None:
        self.consumer.stop()


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
    topics = topics_of(settings)
    engine = make_engine(settings.db.write_url, pool_size=4)
    producer = make_producer(settings.kafka_bootstrap_servers)
    relay = OutboxRelay(engine, write_tables.outbox, producer)
    decider = RegistrationDecider(topics, engine, producer)

    retention = _dedup_retention(
        settings,
        engine,
        [Purge(write_tables.decided_commands, write_tables.decided_commands.c.decided_at)],
    )

    async def when_idle() -> None:
        await decider.idle()
        await retention.when_idle()

    async def publish_leftovers(assigned: set[TopicPartition]) -> None:
        """A partition taken over first publishes what its last owner decided but did not
        publish, in decision order, so its events stay in order on the topic; whatever this
        process remembered of it from an earlier ownership is dropped."""
        decider.forget(assigned)
        await relay.drain(grace=timedelta(0), partitions={tp.partition for tp in assigned})

    consumer = ExactlyOnceConsumer(
        ConsumerConfig(
            group=decider_group(settings, name),
            topics=(topics.registration_commands,),
            dead_letter_topic=topics.dead_letter,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            max_records=max_records,
        ),
        engine=engine,
        positions=write_tables.consumer_positions,
        handler=(wrap_handler or _same)(decider),
        producer=producer,
        on_assigned=publish_leftovers,
        on_idle=when_idle,
    )
    return ConsumerRole(consumer, producer, engine.dispose)


def _same(handler: BatchHandler) -> BatchHandler:
    return handler


def decider_group(settings: Settings, name: str = "registration") -> str:
    return group_name(settings, f"decider.{name}")


def _dedup_retention(
    settings: Settings, engine: AsyncEngine, purges: list[Purge]
) -> DedupRetention:
    return DedupRetention(
        engine,
        purges,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        command_topic=topics_of(settings).registration_commands,
        keep=timedelta(hours=settings.dedup_retention_hours),
    )


def build_projector(
    settings: Settings, name: str, *, max_records: int = 1000, group: str | None = None
) -> ConsumerRole:
    """`group` overrides the consumer group, to replay into other databases side by side."""
    topics = topics_of(settings)
    handler: BatchHandler
    positions: Table
    sources: tuple[str, ...]
    on_idle = None
    if name == "website":
        engine = make_engine(settings.db.read_url, pool_size=4)
        handler = WebsiteProjector(topics, decider_group(settings))
        positions = read_tables.consumer_positions
        sources = website_sources(topics)
        on_idle = _dedup_retention(
            settings,
            engine,
            [
                Purge(read_tables.applied_events, read_tables.applied_events.c.applied_at),
                Purge(read_tables.command_outcomes, read_tables.command_outcomes.c.recorded_at),
            ],
        ).when_idle
    elif name == "reporting":
        engine = make_engine(settings.db.reporting_url, pool_size=4)
        handler = EventArchiver()
        positions = reporting_tables.consumer_positions
        sources = topics.event_topics()
    else:
        raise ValueError(f"unknown projector {name!r}; known: {', '.join(PROJECTORS)}")
    producer = make_producer(settings.kafka_bootstrap_servers)
    consumer = ExactlyOnceConsumer(
        ConsumerConfig(
            group=group or group_name(settings, f"projector.{name}"),
            topics=sources,
            dead_letter_topic=topics.dead_letter,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            max_records=max_records,
        ),
        engine=engine,
        positions=positions,
        handler=handler,
        producer=producer,
        on_idle=on_idle,
    )
    return ConsumerRole(consumer, producer, engine.dispose)


@contextlib.asynccontextmanager
async def relay_role(settings: Settings) -> AsyncIterator[OutboxRelay]:
    engine = make_engine(settings.db.write_url, pool_size=2)
    producer = make_producer(settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        yield OutboxRelay(engine, write_tables.outbox, producer)
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
