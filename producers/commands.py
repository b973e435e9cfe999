"""The command publisher the gateway uses: one aiokafka producer per process.

Plain aiokafka rather than FastStream's publisher: on the registration path every request
publishes one command, and FastStream's per-publish wrapping (keyword handling, middleware
chain, header building) cost the gateway more CPU than the send itself. The records are the
same either way: the envelope as JSON, keyed by the convention, with the envelope's headers.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.envelope import Envelope

CONTENT_TYPE = ("content-type", b"application/json")


class CommandPublisher:
    def __init__(self, bootstrap_servers: str, *, idempotence: bool = False) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._idempotence = idempotence
        self._started: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect; aiokafka objects belong to the running loop, so they are made here."""
        self._started = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap_servers,
            acks="all",
            enable_idempotence=self._idempotence,
            linger_ms=2,
            max_batch_size=256 * 1024,
            request_timeout_ms=10_000,
        )
        await self._started.start()

    async def stop(self) -> None:
        if self._started is not None:
            await self._started.stop()
            self._started = None

    @property
    def _producer(self) -> AIOKafkaProducer:
        if self._started is None:
            raise RuntimeError("the command publisher is not started")
        return self._started

    async def ping(self, timeout: float) -> bool:
        """Whether the broker answers a metadata request within `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                await self._producer.client.fetch_all_metadata()
        except (TimeoutError, KafkaError, OSError):
            return False
        return True

    async def publish(self, topic: str, envelope: Envelope) -> None:
        """Send the command and wait for the broker's acknowledgement."""
        sent = await self._producer.send(
            topic,
            value=envelope.encode(),
            key=envelope.key.encode(),
            headers=[*envelope.headers(), CONTENT_TYPE],
        )
        await sent
