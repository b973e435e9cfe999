"""Queries against the order read models (`projections.orders.tables`): what the catalogue,
order and waitlist routes answer from, and what they check a write against before publishing
it. The orders projector is not the website projector: a route that answers with what a
decision changed here waits for this read model to show it (`until_shown`)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.order_views import (
    OrderLineView,
    OrderView,
    PolicyView,
    PromoCodeView,
    RefundView,
    RegistrationDetail,
    StockLine,
    WaitlistEntryView,
    WaitlistsView,
)
from gateway.reads import decode_cursor, encode_cursor
from gateway.views import RegistrationView
from projections.orders import tables as t
from schemas.registration import AttendeeRegistered, OrderPlaced

T = TypeVar("T")

PENDING_PAYMENT = "pending_payment"
IN_LINE = ("waiting", "offered")
"""Entry statuses that hold a place in line."""
SHOWN_WITHIN_SECONDS = 3.0
"""How long a write waits for the orders projector to show what was decided; past that it
answers with what the read model holds."""


def registration_location(registration_id: uuid.UUID) -> str:
    return f"/api/v1/registrations/{registration_id}"


def order_location(registration_id: uuid.UUID, order_id: uuid.UUID) -> str:
    return f"{registration_location(registration_id)}/orders/{order_id}"


def pay_location(registration_id: uuid.UUID, order_id: uuid.UUID) -> str:
    """Where the owner starts paying an order (`POST`, `gateway.payments`)."""
    return f"{order_location(registration_id, order_id)}/payments"


def entry_location(entry_id: uuid.UUID) -> str:
    return f"/api/v1/waitlist/{entry_id}"


async def until_shown(
    probe: Callable[[], Awaitable[T]],
    shown: Callable[[T], bool],
    *,
    within: float = SHOWN_WITHIN_SECONDS,
) -> T:
    """Ask `probe` until `shown` holds of its answer, or `within` seconds have passed; the
    last answer either way."""
    deadline = time.monotonic() + within
    delay = 0.01
    value = await probe()
    while not shown(value) and time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
        value = await probe()
    return value


def decided_detail(
    event: AttendeeRegistered | OrderPlaced, view: RegistrationView
) -> RegistrationView:
    """A registration with the order its decision recorded, as the event says, shown as the
    orders read model will show it: the answer needs no wait for the orders projector."""
    order = event.order
    if order is None:
        return view
    at = view.created_at
    held = isinstance(event, OrderPlaced)
    registration_id = event.registration_id
    links = {"self": order_location(registration_id, order.order_id)}
    if held:
        links["pay"] = pay_location(registration_id, order.order_id)
    placed = OrderView(
        order_id=order.order_id,
        registration_id=registration_id,
        convention_id=event.convention_id,
        status=PENDING_PAYMENT if held else "paid",
        first=True,
        lines=[
            OrderLineView(**line.model_dump(exclude={"kind"}), kind=line.kind, removed=0)
            for line in order.lines
        ],
        subtotal_cents=order.subtotal_cents,
        discount_cents=order.discount_cents,
        total_cents=order.total_cents,
        paid_cents=0,
        refunded_cents=0,
        currency=order.currency,
        promo_code=order.promo_code,
        hold_until=event.hold_until if isinstance(event, OrderPlaced) else None,
        created_at=at,
        updated_at=at,
        links=links,
    )
    return RegistrationDetail(
        **view.model_dump(),
        orders=[placed],
        amount_due_cents=order.total_cents if held else 0,
    )


ORDER_SHOWING = {
    PENDING_PAYMENT: PENDING_PAYMENT,
    "confirmed": "paid",
    "expired": "expired",
    "cancelled": "cancelled",
}
"""The status a registration's first order has once the orders read model shows what the
registration's own status says."""


def shows_registration(view: RegistrationView, detail: RegistrationDetail) -> bool:
    """Whether the orders shown have caught up with the registration: its first order is
    there, in the status the registration's says (trivially for one with no order)."""
    wanted = ORDER_SHOWING.get(view.status)
    if not view.has_order or wanted is None:
        return True
    first = next((order for order in detail.orders if order.first), None)
    return first is not None and first.status == wanted


class OrderReads:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def _all(self, query: Any) -> list[Any]:
        async with self._engine.connect() as conn:
            return list((await conn.execute(query)).all())

    async def _first(self, query: Any) -> Any:
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first()

    # --- the catalogue ------------------------------------------------------------------------

    async def policy(self, convention_id: uuid.UUID) -> PolicyView | None:
        row = await self._first(
            select(t.order_policies).where(t.order_policies.c.convention_id == str(convention_id))
        )
        if row is None:
            return None
        return PolicyView(
            convention_id=convention_id,
            currency=row.currency,
            hold_minutes=row.hold_minutes,
            offer_minutes=row.offer_minutes,
            refund_percent=row.refund_percent,
        )

    async def promo_codes(
        self, convention_id: uuid.UUID, code: str | None = None
    ) -> list[PromoCodeView]:
        p = t.promo_codes.c
        where = [p.convention_id == str(convention_id)]
        if code is not None:
            where.append(p.code == code)
        rows = await self._all(select(t.promo_codes).where(*where).order_by(p.created_at, p.code))
        return [_promo_code_view(row) for row in rows]

    # --- orders -------------------------------------------------------------------------------

    async def orders_of(self, registration_id: uuid.UUID) -> list[OrderView]:
        """A registration's orders, oldest first."""
        o = t.orders.c
        return await self._orders(
            o.registration_id == str(registration_id), order_by=(o.created_at, o.order_id)
        )

    async def order(self, order_id: uuid.UUID) -> OrderView | None:
        found = await self._orders(t.orders.c.order_id == str(order_id))
        return found[0] if found else None

    async def orders_page(
        self, convention_id: uuid.UUID, *, status: str | None, cursor: str | None, limit: int
    ) -> tuple[list[OrderView], str | None]:
        """A convention's orders, oldest first, by keyset cursor (`ix_orders_convention`
        when filtered by status)."""
        o = t.orders.c
        conditions: list[Any] = [o.convention_id == str(convention_id)]
        if status is not None:
            conditions.append(o.status == status)
        if cursor:
            created, order_id = decode_cursor(cursor)
            conditions.append(
                or_(o.created_at > created, and_(o.created_at == created, o.order_id > order_id))
            )
        found = await self._orders(
            and_(*conditions), order_by=(o.created_at, o.order_id), limit=limit + 1
        )
        page = found[:limit]
        next_cursor = (
            encode_cursor(page[-1].created_at, str(page[-1].order_id))
            if len(found) > limit
            else None
        )
        return page, next_cursor

    async def _orders(
        self, where: Any, *, order_by: Sequence[Any] = (), limit: int | None = None
    ) -> list[OrderView]:
        query = select(t.orders).where(where).order_by(*order_by)
        if limit is not None:
            query = query.limit(limit)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
            if not rows:
                return []
            lines: dict[str, list[OrderLineView]] = {}
            ol = t.order_lines.c
            for line in await conn.execute(
                select(t.order_lines)
                .where(ol.order_id.in_([row.order_id for row in rows]))
                .order_by(ol.order_id, ol.line_no)
            ):
                lines.setdefault(line.order_id, []).append(
                    OrderLineView(
                        kind=line.kind,
                        code=line.code,
                        variant=line.variant,
                        name=line.name,
                        quantity=line.quantity,
                        removed=line.removed,
                        unit_price_cents=line.unit_price_cents,
                        tier=line.tier,
                        discount_cents=line.discount_cents,
                        total_cents=line.total_cents,
                    )
                )
        return [_order_view(row, lines.get(row.order_id, [])) for row in rows]

    async def refunds_of(self, registration_id: uuid.UUID) -> list[RefundView]:
        r = t.refunds.c
        rows = await self._all(
            select(t.refunds)
            .where(r.registration_id == str(registration_id))
            .order_by(r.issued_at, r.refund_id)
        )
        return [
            RefundView(
                refund_id=uuid.UUID(row.refund_id),
                order_id=uuid.UUID(row.order_id),
                payment_id=row.payment_id,
                amount_cents=row.amount_cents,
                currency=row.currency,
                reason=row.reason,
                status=row.status,
                issued_at=_utc(row.issued_at),
                completed_at=_utc_or_none(row.completed_at),
            )
            for row in rows
        ]

    async def detail(self, view: RegistrationView) -> RegistrationDetail:
        orders, refunds = await asyncio.gather(
            self.orders_of(view.registration_id), self.refunds_of(view.registration_id)
        )
        return RegistrationDetail(
            **view.model_dump(),
            orders=orders,
            refunds=refunds,
            amount_due_cents=sum(
                max(order.total_cents - order.paid_cents, 0)
                for order in orders
                if order.status == PENDING_PAYMENT
            ),
        )

    # --- waitlists ----------------------------------------------------------------------------

    async def entry(self, entry_id: uuid.UUID) -> WaitlistEntryView | None:
        w = t.waitlist_entries.c
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(select(t.waitlist_entries).where(w.entry_id == str(entry_id)))
            ).first()
            return None if row is None else _entry_view(row, await _position(conn, row))

    async def entries_of(
        self, account_id: uuid.UUID, verified_email_key: str | None, *, limit: int = 200
    ) -> list[WaitlistEntryView]:
        """An account's waitlist entries, newest first: those it joined logged in, and the
        guest entries of its e-mail identity once verified (as with registrations)."""
        w = t.waitlist_entries.c
        owned: Any = w.account_id == str(account_id)
        if verified_email_key is not None:
            owned = or_(owned, and_(w.account_id.is_(None), w.email_key == verified_email_key))
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(t.waitlist_entries)
                    .where(owned)
                    .order_by(w.joined_at.desc(), w.entry_id)
                    .limit(limit)
                )
            ).all()
            return [_entry_view(row, await _position(conn, row)) for row in rows]

    async def waitlists(self, convention_id: uuid.UUID) -> WaitlistsView:
        """Every line of the convention, each in its order, with every entry it ever had;
        places count the entries waiting or offered."""
        w = t.waitlist_entries.c
        rows = await self._all(
            select(t.waitlist_entries)
            .where(w.convention_id == str(convention_id))
            .order_by(w.stock, w.seq)
        )
        lines: dict[str, StockLine] = {}
        for row in rows:
            line = lines.get(row.stock)
            if line is None:
                line = lines[row.stock] = StockLine(
                    stock=row.stock,
                    kind=row.kind,
                    code=row.code,
                    variant=row.variant,
                    waiting=0,
                    offered=0,
                    entries=[],
                )
            position = None
            if row.status in IN_LINE:
                line.waiting += row.status == "waiting"
                line.offered += row.status == "offered"
                position = line.waiting + line.offered
            line.entries.append(_entry_view(row, position))
        return WaitlistsView(convention_id=convention_id, stocks=list(lines.values()))


async def _position(conn: AsyncConnection, row: Any) -> int | None:
    """An entry's place in its line: the entries waiting or offered for the same stock that
    joined no later; None once it is out of the line."""
    if row.status not in IN_LINE:
        return None
    w = t.waitlist_entries.c
    found = await conn.execute(
        select(func.count()).where(
            w.convention_id == row.convention_id,
            w.stock == row.stock,
            w.status.in_(IN_LINE),
            w.seq <= row.seq,
        )
    )
    return int(found.scalar_one())


def _order_view(row: Any, lines: list[OrderLineView]) -> OrderView:
    registration_id, order_id = uuid.UUID(row.registration_id), uuid.UUID(row.order_id)
    links = {"self": order_location(registration_id, order_id)}
    if row.status == PENDING_PAYMENT:
        links["pay"] = pay_location(registration_id, order_id)
    return OrderView(
        order_id=order_id,
        registration_id=registration_id,
        convention_id=uuid.UUID(row.convention_id),
        status=row.status,
        first=bool(row.first),
        lines=lines,
        subtotal_cents=row.subtotal_cents,
        discount_cents=row.discount_cents,
        total_cents=row.total_cents,
        paid_cents=row.paid_cents,
        refunded_cents=row.refunded_cents,
        currency=row.currency,
        promo_code=row.promo_code,
        hold_until=_utc_or_none(row.hold_until),
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        links=links,
    )


def _promo_code_view(row: Any) -> PromoCodeView:
    return PromoCodeView(
        code=row.code,
        percent_off=row.percent_off,
        amount_off_cents=row.amount_off_cents,
        badge_types=json.loads(row.badge_types),
        options=json.loads(row.options),
        max_uses=row.max_uses,
        uses=row.uses,
        remaining_uses=None if row.max_uses is None else max(row.max_uses - row.uses, 0),
        valid_from=_utc_or_none(row.valid_from),
        valid_until=_utc_or_none(row.valid_until),
        created_at=_utc(row.created_at),
    )


def _entry_view(row: Any, position: int | None) -> WaitlistEntryView:
    entry_id = uuid.UUID(row.entry_id)
    links = {"self": entry_location(entry_id)}
    if row.status == "offered":
        links["accept"] = f"{entry_location(entry_id)}/accept"
    if row.accepted_registration_id is not None:
        links["registration"] = registration_location(uuid.UUID(row.accepted_registration_id))
    return WaitlistEntryView(
        entry_id=entry_id,
        convention_id=uuid.UUID(row.convention_id),
        kind=row.kind,
        code=row.code,
        variant=row.variant,
        stock=row.stock,
        quantity=row.quantity,
        email=row.email,
        name=row.name,
        account_id=_uuid_or_none(row.account_id),
        registration_id=_uuid_or_none(row.registration_id),
        status=row.status,
        position=position,
        offer_expires_at=_utc_or_none(row.offer_expires_at),
        accepted_registration_id=_uuid_or_none(row.accepted_registration_id),
        joined_at=_utc(row.joined_at),
        updated_at=_utc(row.updated_at),
        links=links,
    )


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(value)


def _utc(moment: datetime) -> datetime:
    """Read models store UTC without a zone; the API says so explicitly."""
    return moment.replace(tzinfo=UTC)


def _utc_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else _utc(moment)
