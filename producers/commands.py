"""The command publisher the gateway uses: FastStream's Kafka broker, one per process."""

from __future__ import annotations

import structlog
from faststream.kafka import KafkaBroker

from schemas.envelope import HEADER_CORRELATION_ID, HEADER_SCHEMA_VERSION, HEADER_TYPE, Envelope

log = structlog.get_logger(__name__)


class CommandPublisher:
    def __init__(self, bootstrap_servers: str) -> None:
        self._broker = KafkaBroker(
            bootstrap_servers,
            linger_ms=2,
            acks="all",
            enable_idempotence=False,
            request_timeout_ms=10_000,
            logger=None,
        )

    async def start(self) -> None:
        await self._broker.connect()

    async def stop(self) -> None:
        await self._broker.stop()

    async def ping(self, timeout: float) -> bool:
        return await self._broker.ping(timeout)

    async def publish(self, topic: str, envelope: Envelope) -> None:
        await self._broker.publish(
            envelope.encode(),
            topic,
            key=envelope.key.encode(),
            headers={
                HEADER_TYPE: envelope.type,
                HEADER_SCHEMA_VERSION: str(envelope.schema_version),
                HEADER_CORRELATION_ID: str(envelope.correlation_id),
                "content-type": "application/json",
            },
            correlation_id=str(envelope.correlation_id),
        )
        log.info("command_published", type=envelope.type, command_id=str(envelope.message_id))
