"""What a phase runs against: Butterfly's stack (through its admin API and read database) or
the rival app (tests/perf/rival.py) in a process and a database of its own."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.perf.common import (
    BADGE,
    DECIDED,
    REGISTRATION_PREFIX,
    REPO,
    BenchError,
    eventually,
    line,
)
from tests.perf.loadgen import Answer
from tests.perf.stack import HEALTH_INTERVAL, Processes, Stack, stack_processes

SETTLE_TIMEOUT = 60.0
LISTING_PAGE = 500
RIVAL_START_TIMEOUT = 30.0
RIVAL_STOP_TIMEOUT = 10.0


async def create_open_convention(
    admin: httpx.AsyncClient, name: str, quota: int, price_cents: int = 0
) -> str:
    """A free badge type unless `price_cents`: then every registration is an order held
    for its payment."""
    body = {
        "name": name,
        "starts_on": "2027-01-01",
        "ends_on": "2027-01-03",
        "badge_types": [
            {"code": BADGE, "name": "Standard", "price_cents": price_cents, "quota": quota}
        ],
    }
    response = await admin.post(
        "/api/v1/admin/conventions", json=body, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    if response.status_code not in (201, 202):
        raise BenchError(
            f"creating a convention answered {response.status_code}: {response.text[:300]}"
        )
    convention_id = str(response.json()["convention_id"])
    await eventually(
        lambda: admin.get(f"/api/v1/admin/conventions/{convention_id}"),
        lambda r: r.status_code == 200,
        within=30,
        what="the new convention",
    )
    response = await admin.post(
        f"/api/v1/admin/conventions/{convention_id}/open",
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    if response.status_code not in (200, 202):
        raise BenchError(
            f"opening the convention answered {response.status_code}: {response.text[:300]}"
        )
    await eventually(
        lambda: admin.get(f"/api/v1/conventions/{convention_id}"),
        lambda r: r.status_code == 200 and r.json()["status"] == "open",
        within=30,
        what="the convention to open",
    )
    return convention_id


async def badge(admin: httpx.AsyncClient, convention_id: str) -> dict[str, Any]:
    response = await admin.get(f"/api/v1/conventions/{convention_id}")
    response.raise_for_status()
    found: dict[str, Any] = response.json()["badge_types"][0]
    return found


async def pending_left(admin: httpx.AsyncClient, convention_id: str) -> bool:
    response = await admin.get(
        f"/api/v1/admin/conventions/{convention_id}/registrations",
        params={"status": "pending", "limit": 1},
    )
    response.raise_for_status()
    return bool(response.json()["items"])


async def all_registrations(admin: httpx.AsyncClient, convention_id: str) -> list[dict[str, Any]]:
    """Every registration of a convention, through the admin listing's cursor pages."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": LISTING_PAGE}
        if cursor:
            params["cursor"] = cursor
        response = await admin.get(
            f"/api/v1/admin/conventions/{convention_id}/registrations", params=params
        )
        response.raise_for_status()
        page = response.json()
        items.extend(page["items"])
        cursor = page["next"]
        if not cursor:
            return items


@dataclass(frozen=True)
class Target:
    """What a phase runs against: Butterfly's stack, or the rival app."""

    name: str
    base_url: str
    create: Callable[[str, int], Awaitable[str]]
    """Creates an open convention of one badge type: (name, quota) -> its id."""
    settle: Callable[[str, Sequence[Answer]], Awaitable[float | None]]
    """When every registration answered 202 was decided; None when every answer was a decision."""
    listing: Callable[[str], Awaitable[tuple[list[dict[str, Any]], dict[str, int]]]]
    """Every registration of a convention (registration_id, email, status) and its badge
    type's counts (sold, remaining)."""
    processes: Callable[[], Processes]
    """The server's processes: (role, pid)."""


def butterfly_target(stack: Stack, admin: httpx.AsyncClient, price_cents: int = 0) -> Target:
    async def listing(convention_id: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
        rows = await all_registrations(admin, convention_id)
        found = await badge(admin, convention_id)
        return rows, {"sold": int(found["sold"]), "remaining": int(found["remaining"])}

    return Target(
        name="Butterfly" if not price_cents else "Butterfly, priced",
        base_url=stack.base_url,
        create=lambda name, quota: create_open_convention(admin, name, quota, price_cents),
        settle=lambda convention_id, answers: settle(admin, convention_id, answers),
        listing=listing,
        processes=lambda: stack_processes(stack),
    )


async def settle(
    admin: httpx.AsyncClient, convention_id: str, answers: Sequence[Answer]
) -> float | None:
    """When every registration answered 202 is decided and no row is pending; None when
    every answer already carried its decision."""
    waiting = {a.registration_id for a in answers if a.status == 202}
    if not waiting and all(a.status in DECIDED for a in answers):
        return None

    async def decided(registration_id: str) -> bool:
        response = await admin.get(f"{REGISTRATION_PREFIX}{registration_id}")
        return response.status_code == 200 and response.json()["status"] != "pending"

    async def probe() -> float | None:
        for chunk in [sorted(waiting)[i : i + 50] for i in range(0, len(waiting), 50)]:
            done = await asyncio.gather(*(decided(rid) for rid in chunk))
            waiting.difference_update(rid for rid, ok in zip(chunk, done, strict=True) if ok)
        if waiting or await pending_left(admin, convention_id):
            return None
        return time.perf_counter()

    return await eventually(
        probe, lambda t: t is not None, within=SETTLE_TIMEOUT, what="every registration decided"
    )


@contextlib.asynccontextmanager
async def rival_target(stack: Stack) -> AsyncIterator[tuple[Target, str]]:
    """The rival app in a process of its own on a free port, with a database of its own on
    Butterfly's MariaDB server; both removed afterwards."""
    from infra.services import free_port
    from tests.perf import rival

    tag = secrets.token_hex(4)
    server_url = stack.settings().db.server_url()
    name = f"bench_rival_{tag}"
    url = await rival.create_database(server_url, name)
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_dir = stack.run_dir or Path(tempfile.mkdtemp(prefix=f"butterfly-rival-{tag}-"))
    log_path = log_dir / "rival.log"
    process: subprocess.Popen[bytes] | None = None
    try:
        process = _start_rival(port, url.render_as_string(hide_password=False), log_path)
        await _wait_rival(process, base_url, log_path)
        pid = process.pid

        async def create(convention: str, quota: int) -> str:
            return await rival.create_convention(url, convention, BADGE, quota)

        async def no_settling(convention_id: str, answers: Sequence[Answer]) -> float | None:
            return None

        target = Target(
            name="rival",
            base_url=base_url,
            create=create,
            settle=no_settling,
            listing=lambda convention_id: rival.listing(url, convention_id),
            processes=lambda: [("rival app", pid)],
        )
        yield (
            target,
            "a plain app: Litestar + SQLAlchemy/asyncmy in 1 uvicorn "
            "process, one MariaDB transaction per registration, the badge row locked "
            f"FOR UPDATE ({base_url}, database {name}); the Butterfly stack stays up, idle",
        )
    finally:
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=RIVAL_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        text = log_path.read_text(errors="replace").strip() if log_path.exists() else ""
        if text:
            line("rival log", f"{len(text.splitlines())} lines, the last:")
            for entry in text.splitlines()[-5:]:
                line("", entry[:160])
        try:
            await rival.drop_database(server_url, name)
        except Exception as exc:
            line("rival db", f"could not drop {name}: {exc!r}")
        if stack.run_dir is None:
            shutil.rmtree(log_dir, ignore_errors=True)


def _start_rival(port: int, database_url: str, log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.perf.rival"],
            cwd=REPO,
            env={**os.environ, "RIVAL_PORT": str(port), "RIVAL_DATABASE_URL": database_url},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def _wait_rival(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.perf_counter() + RIVAL_START_TIMEOUT
    async with httpx.AsyncClient(base_url=base_url, timeout=3) as client:
        while True:
            if process.poll() is not None:
                raise BenchError(
                    f"the rival exited with code {process.returncode} while starting:\n"
                    + log_path.read_text(errors="replace")[-3000:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health")).status_code == 200:
                    return
            if time.perf_counter() > deadline:
                raise BenchError(
                    f"the rival did not answer /health within {RIVAL_START_TIMEOUT:g} s"
                )
            await asyncio.sleep(HEALTH_INTERVAL)


class ReadModel:
    """Butterfly's website read database, queried directly: polled every 50 ms, the admin
    listing would cost the gateway more than the answer is worth."""

    def __init__(self, stack: Stack) -> None:
        from infra.db import make_engine

        self.engine = make_engine(stack.settings().db.read_url, pool_size=1)

    async def statuses(self, convention_id: str) -> Counter[str]:
        """How many registrations of the convention are in each status."""
        from sqlalchemy import func, select

        from projections.website.tables import registrations

        r = registrations.c
        query = (
            select(r.status, func.count())
            .where(r.convention_id == convention_id)
            .group_by(r.status)
        )
        async with self.engine.connect() as conn:
            return Counter({str(status): int(n) for status, n in await conn.execute(query)})

    async def decided(self, convention_id: str) -> set[str]:
        """The ids of the convention's registrations that are decided (not pending)."""
        from sqlalchemy import select

        from projections.website.tables import registrations

        r = registrations.c
        query = select(r.registration_id).where(
            r.convention_id == convention_id, r.status != "pending"
        )
        async with self.engine.connect() as conn:
            return {str(rid) for (rid,) in await conn.execute(query)}

    async def aclose(self) -> None:
        await self.engine.dispose()
