"""The rival the bench measures Butterfly against: a plain synchronous registration app.

What a user would pick instead of an event pipeline: one Litestar process, one MariaDB
transaction per registration, the badge row locked with `SELECT ... FOR UPDATE`. It answers the
same POST as Butterfly's gateway (201 with the registration, 409 problem+json with the reason,
422 for a bad body) so the bench's client sends it the same rush.

It lives under tests/perf only: the bench creates its database, starts it
(`python -m tests.perf.rival`, port and database URL in RIVAL_PORT and RIVAL_DATABASE_URL)
and drops the database afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
    text,
    update,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Run as a script, only tests/perf is on sys.path: the repository root makes schemas importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from schemas.identity import InvalidEmail, InvalidText, check_text, email_key

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://butterfly.example/problems/"
REGISTRATION_PREFIX = "/api/v1/registrations/"
POOL_SIZE = 16

metadata = MetaData()
conventions = Table(
    "conventions",
    metadata,
    Column("convention_id", String(36), primary_key=True),
    Column("name", String(200), nullable=False),
)
badge_types = Table(
    "badge_types",
    metadata,
    Column("convention_id", String(36), nullable=False),
    Column("code", String(32), nullable=False),
    Column("quota", Integer, nullable=False),
    Column("sold", Integer, nullable=False, server_default=text("0")),
    PrimaryKeyConstraint("convention_id", "code"),
)
registrations = Table(
    "registrations",
    metadata,
    Column("registration_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("email_key", String(320, collation="utf8mb4_bin"), nullable=False),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False),
    Column("badge_type", String(32), nullable=False),
    Column("created_at", DateTime, nullable=False, server_default=func.now()),
    UniqueConstraint("convention_id", "email_key", name="uq_registration_email"),
)
"""Confirmed registrations only: the unique key is the one-seat-per-e-mail rule."""
rejections = Table(
    "rejections",
    metadata,
    Column("registration_id", String(36), primary_key=True),
    Column("convention_id", String(36), nullable=False),
    Column("email", String(320), nullable=False),
    Column("reason", String(40), nullable=False),
)
"""Rejected registrations, kept so that a retry with the same key gets the same answer."""


class RegistrationIn(msgspec.Struct, forbid_unknown_fields=False):
    email: str
    name: str
    badge_type: str


def make_engine(url: URL | str, *, pool_size: int = POOL_SIZE) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=120,
        pool_recycle=1800,
        isolation_level="READ COMMITTED",
    )


# Set-up and inspection, called by the bench directly.


async def create_database(server_url: URL, name: str) -> URL:
    """Create the database and its tables; returns its URL."""
    server = create_async_engine(server_url.set(database=None))
    try:
        async with server.begin() as conn:
            await conn.execute(
                text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
    finally:
        await server.dispose()
    url = server_url.set(database=name)
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(metadata.create_all)
    finally:
        await engine.dispose()
    return url


async def drop_database(server_url: URL, name: str) -> None:
    server = create_async_engine(server_url.set(database=None))
    try:
        async with server.begin() as conn:
            await conn.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
    finally:
        await server.dispose()


async def create_convention(url: URL, name: str, badge: str, quota: int) -> str:
    convention_id = str(uuid.uuid4())
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(conventions.insert().values(convention_id=convention_id, name=name))
            await conn.execute(
                badge_types.insert().values(
                    convention_id=convention_id, code=badge, quota=quota, sold=0
                )
            )
    finally:
        await engine.dispose()
    return convention_id


async def listing(url: URL, convention_id: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Every registration of the convention (confirmed and rejected, like Butterfly's admin
    listing) and its badge type's sold and remaining seats."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            r, j, b = registrations.c, rejections.c, badge_types.c
            rows = [
                {"registration_id": rid, "email": email, "status": "confirmed"}
                for rid, email in await conn.execute(
                    select(r.registration_id, r.email).where(r.convention_id == convention_id)
                )
            ] + [
                {"registration_id": rid, "email": email, "status": "rejected"}
                for rid, email in await conn.execute(
                    select(j.registration_id, j.email).where(j.convention_id == convention_id)
                )
            ]
            sold, quota = (
                await conn.execute(select(b.sold, b.quota).where(b.convention_id == convention_id))
            ).one()
            return rows, {"sold": int(sold), "remaining": int(quota) - int(sold)}
    finally:
        await engine.dispose()


# The app.


def _json(
    body: Mapping[str, Any], status: int, headers: dict[str, str], media: str
) -> Response[bytes]:
    return Response(
        msgspec.json.encode(body), status_code=status, media_type=media, headers=headers
    )


def _problem(
    request: Request[Any, Any, Any],
    status: int,
    kind: str,
    title: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[bytes]:
    body = {"type": PROBLEM_BASE + kind, "title": title, "status": status}
    body["instance"] = request.url.path
    body.update(extra)
    return _json(body, status, headers or {}, PROBLEM_JSON)


def _decision(
    request: Request[Any, Any, Any],
    registration_id: str,
    convention_id: str,
    reason: str | None,
    data: RegistrationIn,
) -> Response[bytes]:
    headers = {"Location": REGISTRATION_PREFIX + registration_id}
    if reason is not None:
        return _problem(
            request,
            409,
            "registration-rejected",
            "Registration rejected",
            headers,
            reason=reason,
            registration_id=registration_id,
        )
    body = {
        "registration_id": registration_id,
        "convention_id": convention_id,
        "status": "confirmed",
        "email": data.email,
        "name": data.name,
        "badge_type": data.badge_type,
    }
    return _json(body, 201, headers, "application/json")


def build_app(database_url: URL | str) -> Litestar:
    engine = make_engine(make_url(database_url))
    decoder = msgspec.json.Decoder(RegistrationIn)
    b, r, j = badge_types.c, registrations.c, rejections.c

    @get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @post("/api/v1/conventions/{convention_id:uuid}/registrations")
    async def register(
        request: Request[Any, Any, Any], convention_id: uuid.UUID
    ) -> Response[bytes]:
        try:
            data = decoder.decode(await request.body())
            key = email_key(data.email)
            name = check_text(data.name)
        except (msgspec.DecodeError, InvalidEmail, InvalidText) as exc:
            return _problem(request, 422, "validation-error", "Invalid request", detail=str(exc))
        cid = str(convention_id)
        idempotency_key = request.headers.get("idempotency-key")
        registration_id = str(
            uuid.uuid5(convention_id, idempotency_key) if idempotency_key else uuid.uuid4()
        )
        async with engine.begin() as conn:
            seats = (
                await conn.execute(
                    select(b.sold, b.quota)
                    .where(b.convention_id == cid, b.code == data.badge_type)
                    .with_for_update()
                )
            ).first()
            if seats is None:
                return _problem(request, 404, "not-found", "No such convention or badge type")
            # Under the badge row's lock, every decision of this badge type is serialised:
            # a retry with the same key finds its earlier answer.
            if (
                await conn.execute(
                    select(r.registration_id).where(r.registration_id == registration_id)
                )
            ).first() is not None:
                return _decision(request, registration_id, cid, None, data)
            earlier = (
                await conn.execute(select(j.reason).where(j.registration_id == registration_id))
            ).first()
            if earlier is not None:
                return _decision(request, registration_id, cid, earlier.reason, data)
            reason: str | None = None
            if seats.sold >= seats.quota:
                reason = "sold_out"
            elif (
                await conn.execute(
                    select(r.registration_id).where(r.convention_id == cid, r.email_key == key)
                )
            ).first() is not None:
                reason = "already_registered"
            if reason is None:
                await conn.execute(
                    registrations.insert().values(
                        registration_id=registration_id,
                        convention_id=cid,
                        email_key=key,
                        email=data.email,
                        name=name,
                        badge_type=data.badge_type,
                    )
                )
                await conn.execute(
                    update(badge_types)
                    .where(b.convention_id == cid, b.code == data.badge_type)
                    .values(sold=b.sold + 1)
                )
            else:
                await conn.execute(
                    rejections.insert().values(
                        registration_id=registration_id,
                        convention_id=cid,
                        email=data.email,
                        reason=reason,
                    )
                )
        return _decision(request, registration_id, cid, reason, data)

    async def dispose() -> None:
        await engine.dispose()

    return Litestar([health, register], on_shutdown=[dispose], openapi_config=None)


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("RIVAL_PORT", "0")))
    parser.add_argument("--database-url", default=os.environ.get("RIVAL_DATABASE_URL", ""))
    args = parser.parse_args()
    if not args.port or not args.database_url:
        parser.error("set --port and --database-url (or RIVAL_PORT and RIVAL_DATABASE_URL)")
    uvicorn.run(
        build_app(args.database_url),
        host=args.host,
        port=args.port,
        access_log=False,
        log_level="warning",
        backlog=4096,
    )


if __name__ == "__main__":
    main()
