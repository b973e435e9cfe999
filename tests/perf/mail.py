"""The mail phase of `make bench`: the mails the earlier phases' decisions left for the
mailer, delivered.

The mailer runs at idle priority, so in a rush it takes only the CPU nothing else wants and
delivers the rest afterwards: a confirmation mail carries its ticket as a QR code, the most
expensive thing Butterfly does per registration. This phase waits until every mail is
delivered (so the phases after it start on a quiet machine) and measures how long that took
and what the mailer spent per mail: the figure to size the mailer by (docs/SCALING.md)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.accounts.tables import mail_outbox
from infra.db import make_engine
from tests.perf.common import line
from tests.perf.stack import CpuMeter, Stack, process_cpu, stack_processes

DRAIN_TIMEOUT = 600.0
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class MailFigures:
    waiting: int
    """Mails not yet delivered when the phase began."""
    drained_after: float | None
    """Seconds until none was left; None if some still were at the deadline."""
    delivered: int
    cpu_ms: float
    """The mailer's CPU milliseconds per mail it delivered in the phase."""


async def mail_phase(stack: Stack) -> MailFigures:
    engine = make_engine(stack.settings().db.write_url, pool_size=1)
    mailers = [(role, pid) for role, pid in stack_processes(stack) if role == "mailer"]
    meter = CpuMeter(mailers, process_cpu(mailers))
    started = time.perf_counter()
    try:
        waiting = left = await _unsent(engine)
        while left and time.perf_counter() - started < DRAIN_TIMEOUT:
            await asyncio.sleep(POLL_SECONDS)
            left = await _unsent(engine)
    finally:
        await engine.dispose()
    took = time.perf_counter() - started
    delivered = waiting - left
    cpu = sum(meter.spent().values())
    figures = MailFigures(
        waiting=waiting,
        drained_after=None if left else took,
        delivered=delivered,
        cpu_ms=cpu / delivered * 1000 if delivered else 0.0,
    )
    if not waiting:
        line("delivered", "no mail was waiting")
        return figures
    if left:
        line("delivered", f"{delivered} of {waiting} mails in {took:.1f} s; {left} still waiting")
    else:
        rate = f" ({delivered / took:,.0f} mails/s)" if took and delivered else ""
        line("delivered", f"all {waiting} waiting mails after {took:.1f} s{rate}")
    line("CPU ms/mail", f"{figures.cpu_ms:.2f} by the mailer (most of them confirmations)")
    return figures


async def _unsent(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).select_from(mail_outbox).where(mail_outbox.c.sent_at.is_(None))
        return int((await conn.execute(query)).scalar_one())
