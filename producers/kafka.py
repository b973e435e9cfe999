"""Kafka producing: one aiokafka producer per process, and topic creation.

Plain aiokafka is used here rather than FastStream's publisher because the decider and the
relay publish whole batches of ready-made records and must await every acknowledgement
before marking the outbox rows published.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from schemas.envelope import Envelope, Headers


@dataclass(frozen=True)
class OutgoingRecord:
    topic: str
    key: str
    value: bytes
    headers: Headers

    @classmethod
    def of(cls, topic: str, envelope: Envelope) -> OutgoingRecord:
        return cls(topic, envelope.key, envelope.encode(), envelope.headers())


def make_producer(bootstrap_servers: str, *, idempotence: bool = False) -> AIOKafkaProducer:
    """With `idempotence` (`BUTTERFLY_KAFKA_IDEMPOTENCE`, for a real Kafka cluster; the
    embedded broker refuses it) the broker drops a retried batch it already has and refuses
    one out of order, so a retry never duplicates nor reorders records within a partition."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        acks="all",
        enable_idempotence=idempotence,
        linger_ms=2,
        max_batch_size=256 * 1024,
        request_timeout_ms=15000,
    )


async def publish_all(producer: AIOKafkaProducer, records: Iterable[OutgoingRecord]) -> None:
    """Send every record, keeping their order per partition, and wait for every ack."""
    pending = [
        await producer.send(r.topic, value=r.value, key=r.key.encode(), headers=r.headers)
        for r in records
    ]
    if pending:
        await asyncio.gather(*pending)


async def ensure_topics(
    bootstrap_servers: str,
    *,
    topics: Sequence[str],
    kept_forever: Sequence[str],
    partitions: int,
    replication_factor: int = 1,
) -> list[str]:
    """Create any missing topic, with `replication_factor` copies of each partition; event
    topics keep their records forever. Returns the new ones."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        created = []
        for topic in missing:
            configs = (
                {"retention.ms": "-1", "retention.bytes": "-1"} if topic in kept_forever else {}
            )
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            num_partitions=partitions,
                            replication_factor=replication_factor,
                            topic_configs=configs,
                        )
                    ]
                )
                created.append(topic)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()
