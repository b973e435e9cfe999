"""The phases after the load: the website read model rebuilt from the topics, and the peak
memory of every process of the stack."""

from __future__ import annotations

import asyncio
import secrets
from typing import TYPE_CHECKING

from tests.perf.common import errors, line, mismatch, section
from tests.perf.stack import Stack, peak_memory, stack_processes

if TYPE_CHECKING:
    from sqlalchemy.engine import URL


REBUILD_TIMEOUT = 120.0
ROLE_MEMORY_LIMIT = 300.0
"""MB of peak resident memory each Butterfly role must stay under."""
SERVICES = ("tansu broker", "mariadb")
"""Processes of the stack that are services, not Butterfly roles: shown, not held to the limit."""


async def read_model_counts(url: URL) -> dict[str, int]:
    from sqlalchemy import func, select

    from infra.db import make_engine
    from projections.website import tables as read_tables

    engine = make_engine(url, pool_size=1)
    try:
        async with engine.connect() as conn:
            r = read_tables.registrations.c
            counts = {
                f"registrations {status}": int(n)
                for status, n in await conn.execute(
                    select(r.status, func.count()).group_by(r.status)
                )
            }
            counts["seats sold"] = int(
                (
                    await conn.execute(
                        select(func.coalesce(func.sum(read_tables.badge_types.c.sold), 0))
                    )
                ).scalar_one()
            )
            counts["conventions"] = int(
                (
                    await conn.execute(select(func.count()).select_from(read_tables.conventions))
                ).scalar_one()
            )
            counts["command outcomes"] = int(
                (
                    await conn.execute(
                        select(func.count()).select_from(read_tables.command_outcomes)
                    )
                ).scalar_one()
            )
            counts["applied events"] = int(
                (
                    await conn.execute(select(func.count()).select_from(read_tables.applied_events))
                ).scalar_one()
            )
            return counts
    finally:
        await engine.dispose()


async def rebuild_phase(stack: Stack) -> float | None:
    """Rebuild the website read model into throwaway databases with the fast rebuild
    (`projections.rebuild.rebuild_website`); returns events/s, None when it did not run to
    its end."""
    from infra.migrate import drop_databases, migrate
    from infra.services import kafka_answers
    from projections.rebuild import rebuild_website

    section(
        "Rebuild: the website read model rebuilt from the topics into throwaway databases "
        "by projections.rebuild.rebuild_website (the running stack is not touched)"
    )
    if not await kafka_answers(stack.bootstrap):
        line("skipped", f"the broker at {stack.bootstrap} does not answer")
        return None
    settings = stack.settings(db_prefix=f"bench_rebuild_{secrets.token_hex(4)}")
    try:
        await migrate(settings)
        try:
            report = await asyncio.wait_for(rebuild_website(settings), REBUILD_TIMEOUT)
        except TimeoutError:
            mismatch(f"the rebuild did not finish within {REBUILD_TIMEOUT:g} s")
            return None
        except Exception as exc:
            # The rebuild is Butterfly's code under test: its failure is a finding, not the
            # end of the bench.
            errors(f"the rebuild failed: {type(exc).__name__}: {exc}"[:300])
            return None
        line(
            "rebuilt",
            f"{report.events} events + {report.records - report.events} other records "
            f"(commands, dead letters) into {report.rows} rows in {report.seconds:.2f} s = "
            f"{report.events_per_second:.0f} events/s, {report.records_per_second:.0f} records/s",
        )
        if report.set_aside:
            line("note", f"{report.set_aside} events set aside (the projector dead-letters them)")
        rebuilt = await read_model_counts(settings.db.read_url)
        live = await read_model_counts(stack.settings().db.read_url)
        if rebuilt == live:
            line(
                "check",
                "rebuilt read model == live read model "
                f"({', '.join(f'{k} {v}' for k, v in sorted(live.items()))}) (ok)",
            )
        else:
            mismatch(f"rebuilt read model {rebuilt} != live read model {live}")
        return report.events_per_second
    finally:
        await drop_databases(settings)


def memory_phase(stack: Stack) -> float | None:
    """Print every process's peak resident memory; returns the largest peak of a Butterfly
    role (services left out), None when no process was found."""
    section("Memory: peak resident set (VmHWM) of each process of the stack")
    found = stack_processes(stack)
    if not found:
        line("skipped", "no process of the stack found")
        return None
    total = 0.0
    largest = 0.0
    for role, pid in sorted(found):
        memory = peak_memory(pid)
        if memory is None:
            continue
        total += memory[0]
        if role not in SERVICES:
            largest = max(largest, memory[0])
        over = "  OVER the limit" if role not in SERVICES and memory[0] >= ROLE_MEMORY_LIMIT else ""
        line(role[:14], f"{memory[0]:7.1f} MB peak, {memory[1]:7.1f} MB now (pid {pid}){over}")
    line("sum of peaks", f"{total:7.1f} MB")
    if stack.process is None:
        line("note", "processes found by command line; another stack's may be among them")
    return largest
