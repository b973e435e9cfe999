"""Waiting for decisions: one polling loop per gateway process answers every waiting request
with a single query per tick, however many requests are waiting."""

from __future__ import annotations

import asyncio

import structlog

from gateway.reads import Outcome, ReadModels

log = structlog.get_logger(__name__)


class DecisionWaiter:
    def __init__(self, reads: ReadModels, *, interval: float = 0.01, chunk: int = 1000) -> None:
        self._reads = reads
        self._interval = interval
        self._chunk = chunk
        self._waiting: dict[str, list[asyncio.Future[Outcome]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="decision-waiter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def wait(self, command_id: str, timeout: float) -> Outcome | None:
        """The outcome of a command once it is readable, or None if it took longer."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(command_id, []).append(future)
        self._wake.set()
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiting.get(command_id)
            if waiters is not None:
                if future in waiters:
                    waiters.remove(future)
                if not waiters:
                    del self._waiting[command_id]

    async def _run(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self._poll()
            except Exception:
                log.exception("decision_poll_failed")
            await asyncio.sleep(self._interval)

    async def _poll(self) -> None:
        ids = list(self._waiting)
        for start in range(0, len(ids), self._chunk):
            found = await self._reads.outcomes(ids[start : start + self._chunk])
            for command_id, outcome in found.items():
                for future in self._waiting.pop(command_id, []):
                    if not future.done():
                        future.set_result(outcome)
