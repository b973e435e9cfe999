"""Queries against the website read models; the gateway's only source of truth for reads."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.problems import Problem
from gateway.views import (
    BadgeTypeView,
    ConventionView,
    OptionView,
    RegistrationView,
    TierView,
    VariantView,
)
from projections.orders import tables as o
from projections.website import tables as t
from schemas.registration import SET_ASIDE, RejectionReason


def encode_cursor(created_at: datetime, item_id: str) -> str:
    raw = json.dumps([created_at.isoformat(), item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, item_id = json.loads(raw)
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is not None:
            moment = moment.astimezone(UTC).replace(tzinfo=None)
        return moment, str(uuid.UUID(item_id))
    except (ValueError, TypeError) as exc:
        raise Problem(
            400, "invalid-cursor", "Invalid cursor", "The cursor is not one this API gave out."
        ) from exc


class ReadModels:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._known_conventions: dict[uuid.UUID, bool] = {}

    async def convention_exists(self, convention_id: uuid.UUID) -> bool:
        return await self.guests_allowed(convention_id) is not None

    async def guests_allowed(self, convention_id: uuid.UUID) -> bool | None:
        """Whether the convention takes registrations without an account; None when there
        is no such convention. Conventions are never deleted and the setting never changes,
        so a found answer is cached for good."""
        known = self._known_conventions.get(convention_id)
        if known is not None:
            return known
        async with self._engine.connect() as conn:
            found = (
                await conn.execute(
                    select(t.conventions.c.allow_guests).where(
                        t.conventions.c.convention_id == str(convention_id)
                    )
                )
            ).first()
        if found is None:
            return None
        self._known_conventions[convention_id] = bool(found.allow_guests)
        return bool(found.allow_guests)

    async def convention(self, convention_id: uuid.UUID) -> ConventionView | None:
        views = await self._conventions(t.conventions.c.convention_id == str(convention_id))
        return views[0] if views else None

    async def conventions(
        self, *, include_drafts: bool, cursor: str | None, limit: int
    ) -> tuple[list[ConventionView], str | None]:
        c = t.conventions.c
        conditions: list[Any] = []
        if not include_drafts:
            conditions.append(c.status != "draft")
        if cursor:
            created, cid = decode_cursor(cursor)
            conditions.append(
                or_(c.created_at > created, and_(c.created_at == created, c.convention_id > cid))
            )
        views = await self._conventions(and_(True, *conditions), limit=limit + 1)
        page = views[:limit]
        next_cursor = (
            encode_cursor(page[-1].created_at, str(page[-1].convention_id))
            if len(views) > limit
            else None
        )
        return page, next_cursor

    async def _conventions(self, where: Any, limit: int | None = None) -> list[ConventionView]:
        c = t.conventions.c
        query = select(t.conventions).where(where).order_by(c.created_at, c.convention_id)
        if limit is not None:
            query = query.limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return []
            ids = [row.convention_id for row in rows]
            catalogue = await _catalogue(conn, ids)
            badges: dict[str, list[BadgeTypeView]] = {}
            for b in await conn.execute(
                select(t.badge_types)
                .where(t.badge_types.c.convention_id.in_(ids))
                .order_by(t.badge_types.c.convention_id, t.badge_types.c.position)
            ):
                badges.setdefault(b.convention_id, []).append(
                    _badge_type_view(b, catalogue.tiers.get((b.convention_id, b.code), []))
                )
        return [
            ConventionView(
                convention_id=uuid.UUID(row.convention_id),
                name=row.name,
                starts_on=row.starts_on,
                ends_on=row.ends_on,
                status=row.status,
                badge_types=badges.get(row.convention_id, []),
                created_at=_utc(row.created_at),
                updated_at=_utc(row.updated_at),
                allow_guests=bool(row.allow_guests),
                currency=catalogue.currencies.get(row.convention_id, DEFAULT_CURRENCY),
                options=catalogue.options.get(row.convention_id, []),
            )
            for row in rows
        ]

    async def convention_hash(self, convention_id: uuid.UUID) -> str | None:
        async with self._engine.connect() as conn:
            value = (
                await conn.execute(
                    select(t.conventions.c.request_hash).where(
                        t.conventions.c.convention_id == str(convention_id)
                    )
                )
            ).scalar_one_or_none()
        return None if value is None else str(value)

    async def registration(self, registration_id: uuid.UUID) -> tuple[RegistrationView, str] | None:
        """The registration and the hash of the request that made it."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(t.registrations).where(
                        t.registrations.c.registration_id == str(registration_id)
                    )
                )
            ).first()
        return None if row is None else (_registration_view(row), row.request_hash)

    async def owner_key(self, registration_id: uuid.UUID) -> str | None:
        """The e-mail identity a registration belongs to (for a guest registration)."""
        async with self._engine.connect() as conn:
            return (
                await conn.execute(
                    select(t.registrations.c.email_key).where(
                        t.registrations.c.registration_id == str(registration_id)
                    )
                )
            ).scalar_one_or_none()

    async def registrations_of(
        self, account_id: uuid.UUID, verified_email_key: str | None, *, limit: int = 200
    ) -> list[RegistrationView]:
        """An account's registrations: those it made logged in, and the guest registrations
        of its e-mail identity once it is verified (signing up claims them), newest first."""
        r = t.registrations.c
        owned: Any = r.account_id == str(account_id)
        if verified_email_key is not None:
            owned = or_(owned, and_(r.account_id.is_(None), r.email_key == verified_email_key))
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.registrations)
                    .where(owned)
                    .order_by(r.created_at.desc(), r.registration_id)
                    .limit(limit)
                )
            ).all()
        return [_registration_view(row) for row in rows]

    async def registrations(
        self, convention_id: uuid.UUID, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[RegistrationView], str | None]:
        return await self.search_registrations(
            convention_id, RegistrationFilter(status=status or None), cursor=cursor, limit=limit
        )

    async def search_registrations(
        self,
        convention_id: uuid.UUID,
        where: RegistrationFilter,
        *,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[RegistrationView], str | None]:
        """A convention's registrations matching `where`, oldest first, by keyset cursor.

        An e-mail identity is looked up through `ix_registrations_email_key`; status alone
        through `ix_registrations_listing`. A name substring or a badge type is checked row
        by row over the convention's registrations (`ix_registrations_by_convention`): a
        scan bounded by one convention, which the admin listing can afford."""
        r = t.registrations.c
        conditions: list[Any] = [r.convention_id == str(convention_id)]
        if where.email_key is not None:
            conditions.append(r.email_key == where.email_key)
        if where.name is not None:
            # `name` is utf8mb4_unicode_ci, so LIKE ignores case; autoescape makes `%`, `_`
            # (and its escape character `/`) match themselves.
            conditions.append(r.name.contains(where.name, autoescape=True))
        if where.status is not None:
            conditions.append(r.status == where.status)
        if where.badge_type is not None:
            conditions.append(r.badge_type == where.badge_type)
        if cursor:
            created, rid = decode_cursor(cursor)
            conditions.append(
                or_(r.created_at > created, and_(r.created_at == created, r.registration_id > rid))
            )
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.registrations)
                    .where(*conditions)
                    .order_by(r.created_at, r.registration_id)
                    .limit(limit + 1)
                )
            ).all()
        items = [_registration_view(row) for row in rows[:limit]]
        next_cursor = (
            encode_cursor(items[-1].created_at, str(items[-1].registration_id))
            if len(rows) > limit
            else None
        )
        return items, next_cursor

    async def positions(self, group: str) -> dict[tuple[str, int], int]:
        """How far a consumer group of the read model has applied each partition: the next
        offset of every (topic, partition) it stored."""
        p = t.consumer_positions.c
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(p.topic, p.partition_no, p.next_offset).where(p.group_name == group)
            )
            return {(row.topic, row.partition_no): row.next_offset for row in rows}

    async def outcomes(self, command_ids: Sequence[str]) -> dict[str, Outcome]:
        """How these commands ended, each with the registration it decided, if any: one
        query for every request waiting in this process."""
        o, reg = t.command_outcomes, t.registrations
        query = (
            select(o.c.command_id, o.c.outcome, o.c.reason.label("outcome_reason"), reg)
            .select_from(o.outerjoin(reg, reg.c.registration_id == o.c.subject_id))
            .where(o.c.command_id.in_(command_ids))
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {
            row.command_id: Outcome(
                row.outcome,
                row.outcome_reason,
                None
                if row.registration_id is None
                else (_registration_view(row), row.request_hash),
            )
            for row in rows
        }


@dataclass(frozen=True)
class RegistrationFilter:
    """What the admin listing may narrow registrations to; None matches everything."""

    email_key: str | None = None
    """An e-mail identity (`schemas.identity.email_key`), compared byte for byte."""
    name: str | None = None
    """A substring of the name, whatever its case."""
    status: str | None = None
    badge_type: str | None = None


@dataclass(frozen=True)
class Outcome:
    """A decided command; `registration` is the registration it decided, if any, with the
    fingerprint of the request that made it."""

    outcome: str
    reason: str | None
    registration: tuple[RegistrationView, str] | None = None

    @property
    def accepted(self) -> bool:
        return self.outcome == "accepted"

    @property
    def answers_registration(self) -> bool:
        """Whether the registration shows this command's decision (a refusal of a reused
        idempotency key leaves the registration as the first request made it)."""
        return self.reason not in (RejectionReason.IDEMPOTENCY_KEY_REUSED, SET_ASIDE)


DEFAULT_CURRENCY = "EUR"
"""The currency of a convention whose order policy is not projected (yet): the contract's
default policy."""


@dataclass
class _Catalogue:
    """What conventions sell beyond their badge types' seats, as the orders projector shows it."""

    currencies: dict[str, str] = field(default_factory=dict)
    tiers: dict[tuple[str, str], list[TierView]] = field(default_factory=dict)
    options: dict[str, list[OptionView]] = field(default_factory=dict)


async def _catalogue(conn: AsyncConnection, convention_ids: list[str]) -> _Catalogue:
    found = _Catalogue()
    policy = o.order_policies.c
    for row in await conn.execute(
        select(policy.convention_id, policy.currency).where(
            policy.convention_id.in_(convention_ids)
        )
    ):
        found.currencies[row.convention_id] = row.currency
    tier = o.price_tiers.c
    for row in await conn.execute(
        select(o.price_tiers)
        .where(tier.convention_id.in_(convention_ids))
        .order_by(tier.convention_id, tier.badge_type, tier.position)
    ):
        found.tiers.setdefault((row.convention_id, row.badge_type), []).append(
            TierView(
                name=row.name,
                price_cents=row.price_cents,
                until=None if row.until is None else _utc(row.until),
                size=row.size,
                sold=row.sold,
                remaining=None if row.size is None else max(row.size - row.sold, 0),
            )
        )
    variant = o.option_variants.c
    variants: dict[tuple[str, str], list[Any]] = {}
    for row in await conn.execute(
        select(o.option_variants)
        .where(variant.convention_id.in_(convention_ids))
        .order_by(variant.convention_id, variant.option_code, variant.position)
    ):
        variants.setdefault((row.convention_id, row.option_code), []).append(row)
    option = o.options.c
    for row in await conn.execute(
        select(o.options)
        .where(option.convention_id.in_(convention_ids))
        .order_by(option.convention_id, option.position)
    ):
        found.options.setdefault(row.convention_id, []).append(
            _option_view(row, variants.get((row.convention_id, row.code), []))
        )
    return found


def _left(quota: int | None, taken: int) -> int | None:
    return None if quota is None else max(quota - taken, 0)


def _option_view(row: Any, variants: list[Any]) -> OptionView:
    remaining = _left(row.quota, row.taken)
    return OptionView(
        code=row.code,
        name=row.name,
        price_cents=row.price_cents,
        quota=row.quota,
        sold=row.taken,
        remaining=remaining,
        max_per_registration=row.max_per_registration,
        badge_types=json.loads(row.badge_types),
        variants=[
            VariantView(
                code=v.code,
                name=v.name,
                quota=v.quota,
                taken=v.taken,
                remaining=_least(_left(v.quota, v.taken), remaining),
            )
            for v in variants
        ],
    )


def _least(*bounds: int | None) -> int | None:
    known = [bound for bound in bounds if bound is not None]
    return min(known) if known else None


def _badge_type_view(row: Any, tiers: list[TierView]) -> BadgeTypeView:
    """A badge type at the price in force now (see `schemas.catalogue.PriceTier`)."""
    now = datetime.now(UTC)
    current = next(
        (
            tier
            for tier in tiers
            if (tier.until is None or tier.until > now)
            and (tier.size is None or tier.sold < tier.size)
        ),
        None,
    )
    return BadgeTypeView(
        code=row.code,
        name=row.name,
        price_cents=row.price_cents if current is None else current.price_cents,
        quota=row.quota,
        sold=row.sold,
        remaining=max(row.quota - row.sold, 0),
        tier=None if current is None else current.name,
        remaining_at_price=None if current is None else current.remaining,
        tiers=tiers,
    )


def _registration_view(row: Any) -> RegistrationView:
    return RegistrationView(
        registration_id=uuid.UUID(row.registration_id),
        convention_id=uuid.UUID(row.convention_id),
        email=row.email,
        name=row.name,
        badge_type=row.badge_type,
        status=row.status,
        reason=row.reason,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        account_id=None if row.account_id is None else uuid.UUID(row.account_id),
        subject=row.reason_subject,
    ).with_order_recorded(bool(row.has_order))


def _utc(moment: datetime) -> datetime:
    """Read models store UTC without a zone; the API says so explicitly."""
    return moment.replace(tzinfo=UTC)
