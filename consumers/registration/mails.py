"""The mails a registration decision sends: confirmed, awaiting payment, paid, expired,
refunded, cancelled, a waitlist offer. One per event, its `mail_id` the event's id, written
to the mail outbox in the decision's transaction: a decision made again (a redelivery) mails
nothing twice, and the mailer delivers each row once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from consumers.registration.state import Convention, Registration
from schemas.orders import (
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    RefundIssued,
    WaitlistOfferMade,
)
from schemas.registration import (
    AttendeeRegistered,
    Event,
    OrderPlaced,
    OrderTerms,
    RegistrationCancelled,
)


@dataclass(frozen=True)
class Mail:
    to_address: str
    subject: str
    body: str


def money(cents: int, currency: str) -> str:
    return f"{cents // 100}.{cents % 100:02d} {currency}"


def _order_text(order: OrderTerms) -> str:
    lines = [
        f"  {line.quantity} x {line.name}: {money(line.total_cents, order.currency)}"
        for line in order.lines
    ]
    if order.discount_cents:
        lines.append(
            f"  Promo code {order.promo_code}: -{money(order.discount_cents, order.currency)}"
        )
    lines.append(f"  Total: {money(order.total_cents, order.currency)}")
    return "\n".join(lines)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def mail_for(
    event: Event, convention: Convention | None, registration: Registration | None
) -> Mail | None:
    """The mail an event sends, or None for one that matters to nobody's inbox."""
    name = convention.name if convention is not None else "the convention"
    writer = _WRITERS.get(type(event))
    if writer is None:
        return None
    return writer(event, name, registration)


def _confirmed(event: Event, name: str, _: Registration | None) -> Mail | None:
    assert isinstance(event, AttendeeRegistered)
    order = f"\n\nYour order:\n{_order_text(event.order)}" if event.order else ""
    return Mail(
        event.email,
        f"You are registered for {name}",
        f"Hello {event.name},\n\nYour registration for {name} ({event.badge_type}) is "
        f"confirmed.{order}\n\nRegistration: {event.registration_id}\n",
    )


def _placed(event: Event, name: str, _: Registration | None) -> Mail | None:
    assert isinstance(event, OrderPlaced)
    return Mail(
        event.email,
        f"Complete your payment for {name}",
        f"Hello {event.name},\n\nYour place at {name} ({event.badge_type}) is held for you "
        f"until {_when(event.hold_until)}. Pay by then to confirm it; after that it is "
        f"released.\n\nYour order:\n{_order_text(event.order)}\n\n"
        f"Registration: {event.registration_id}\n",
    )


def _options(event: Event, name: str, registration: Registration | None) -> Mail | None:
    assert isinstance(event, OptionsOrdered)
    if registration is None or not registration.email:
        return None
    due = (
        "They are yours."
        if event.hold_until is None
        else f"They are held for you until {_when(event.hold_until)}: pay by then."
    )
    return Mail(
        registration.email,
        f"Your options for {name}",
        f"Hello {registration.name},\n\nYou ordered:\n{_order_text(event.order)}\n\n{due}\n",
    )


def _paid(event: Event, name: str, registration: Registration | None) -> Mail | None:
    assert isinstance(event, OrderPaid)
    if registration is None or not registration.email:
        return None
    confirmed = " Your registration is confirmed." if event.confirms_registration else ""
    return Mail(
        registration.email,
        f"Payment received for {name}",
        f"Hello {registration.name},\n\nWe received "
        f"{money(event.amount_cents, event.currency)} for your order {event.order_id}."
        f"{confirmed}\n",
    )


def _expired(event: Event, name: str, registration: Registration | None) -> Mail | None:
    assert isinstance(event, OrderExpired)
    if registration is None or not registration.email:
        return None
    what = "your registration" if event.expires_registration else "your options"
    return Mail(
        registration.email,
        f"Your order for {name} expired",
        f"Hello {registration.name},\n\nThe payment for {what} did not arrive in time, so "
        f"the order {event.order_id} has expired and what it held has been released.\n",
    )


def _refunded(event: Event, name: str, registration: Registration | None) -> Mail | None:
    assert isinstance(event, RefundIssued)
    if registration is None or not registration.email:
        return None
    return Mail(
        registration.email,
        f"Refund from {name}",
        f"Hello {registration.name},\n\nWe are refunding "
        f"{money(event.amount_cents, event.currency)} ({event.reason.value.replace('_', ' ')})"
        f" for your order {event.order_id}. It reaches you the way you paid.\n",
    )


def _cancelled(event: Event, name: str, registration: Registration | None) -> Mail | None:
    assert isinstance(event, RegistrationCancelled)
    if registration is None or not registration.email:
        return None
    return Mail(
        registration.email,
        f"Your registration for {name} is cancelled",
        f"Hello {registration.name},\n\nYour registration {event.registration_id} for "
        f"{name} is cancelled.\n",
    )


_WRITERS: dict[type[Event], Callable[[Event, str, Registration | None], Mail | None]] = {
    AttendeeRegistered: _confirmed,
    OrderPlaced: _placed,
    OptionsOrdered: _options,
    OrderPaid: _paid,
    OrderExpired: _expired,
    RefundIssued: _refunded,
    RegistrationCancelled: _cancelled,
}


def offer_mail(event: WaitlistOfferMade, convention: Convention | None) -> Mail | None:
    entry = None if convention is None else convention.entry(event.entry_id)
    if entry is None or convention is None:
        return None
    return Mail(
        entry.email,
        f"A place for you at {convention.name}",
        f"Hello {entry.name},\n\nWhat you waited for ({event.stock.split(':', 1)[1]}) is free "
        f"and held for you until {_when(event.expires_at)}. Accept the offer by then; after "
        f"that it passes to the next in line.\n\nWaitlist entry: {event.entry_id}\n",
    )
