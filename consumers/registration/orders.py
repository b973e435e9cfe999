"""The rules of what a convention sells and how its orders are paid: the catalogue (price
tiers, quotas, options, promo codes, the order policy), orders after registration (options
added and given back, promo codes applied), payments and refunds, holds that expire, and
waitlists whose first in line is offered any stock that frees.

Pure like `consumers.registration.decider`, which hands it every command it does not decide
itself. Money that arrives for an order no longer payable is refunded, never kept: a payment
racing its hold's expiry ends paid or refunded, decided in the order the commands arrive.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta

from consumers.registration.pricing import Refusal, discounted, price, terms, usable_promo
from consumers.registration.state import (
    Convention,
    ConventionStatus,
    EntryStatus,
    Order,
    OrderStatus,
    Registration,
    Situation,
    WaitEntry,
    evolve_convention,
    hold_end,
    share,
)
from schemas.catalogue import OptionChoice, OrderLine, stock_key
from schemas.identity import email_key
from schemas.orders import (
    AcceptOffer,
    AddOptions,
    ApplyPromoCode,
    BadgeQuotaSet,
    CatalogueChangeRejected,
    CreatePromoCode,
    DefineOption,
    DefinePriceTiers,
    ExpireOffer,
    ExpireOrder,
    JoinWaitlist,
    LeaveWaitlist,
    OptionDefined,
    OptionRemoved,
    OptionsOrdered,
    OrderExpired,
    OrderPaid,
    OrderPolicySet,
    OrderRejected,
    PaymentDeclined,
    PriceTiersDefined,
    PromoCodeApplied,
    PromoCodeCreated,
    RecordPayment,
    RecordRefund,
    RefundCompleted,
    RefundIssued,
    RefundReason,
    RemoveOption,
    SetBadgeQuota,
    SetOrderPolicy,
    WaitlistJoined,
    WaitlistLeft,
    WaitlistOfferAccepted,
    WaitlistOfferExpired,
    WaitlistOfferMade,
    WaitlistRejected,
)
from schemas.registration import (
    AttendeeRegistered,
    Command,
    Event,
    OrderPlaced,
    OrderTerms,
    RegistrationCancelled,
    RejectionReason,
)

CatalogueCommand = (
    DefinePriceTiers | SetBadgeQuota | DefineOption | CreatePromoCode | SetOrderPolicy
)


def decide(situation: Situation, command: Command) -> list[Event]:
    match command:
        case RecordPayment():
            return _record_payment(situation, command)
        case ExpireOrder():
            return _expire_order(situation, command)
        case AddOptions():
            return _add_options(situation, command)
        case RemoveOption():
            return _remove_option(situation, command)
        case ApplyPromoCode():
            return _apply_promo_code(situation, command)
        case RecordRefund():
            return _record_refund(situation, command)
        case JoinWaitlist():
            return _join_waitlist(situation, command)
        case LeaveWaitlist():
            return _leave_waitlist(situation, command)
        case AcceptOffer():
            return _accept_offer(situation, command)
        case ExpireOffer():
            return _expire_offer(situation, command)
        case (
            DefinePriceTiers() | SetBadgeQuota() | DefineOption() | CreatePromoCode()
        ) | SetOrderPolicy():
            return _catalogue(situation, command)
        case _:
            raise TypeError(f"the registration decider does not handle {type(command).__name__}")


# Payments, refunds and holds.


def refund(
    registration: Registration,
    order: Order,
    amount: int,
    reason: RefundReason,
    index: int = 0,
    payment_id: str | None = None,
) -> RefundIssued:
    """A refund decided: its id follows from the registration's refunds so far, so the
    same decision made again names the same refund (the provider's idempotency key)."""
    number = len(registration.refunds) + index
    return RefundIssued(
        convention_id=registration.convention_id,
        registration_id=registration.registration_id,
        order_id=order.order_id,
        refund_id=uuid.uuid5(registration.registration_id, f"refund-{number}"),
        payment_id=payment_id or order.payment_id or "",
        amount_cents=amount,
        currency=order.terms.currency,
        reason=reason,
    )


def _order_of(
    situation: Situation, registration_id: uuid.UUID, order_id: uuid.UUID
) -> tuple[Registration, Order] | None:
    registration = situation.registration
    if registration is None or registration.registration_id != registration_id:
        return None
    order = registration.order(order_id)
    return None if order is None else (registration, order)


def _record_payment(situation: Situation, command: RecordPayment) -> list[Event]:
    found = _order_of(situation, command.registration_id, command.order_id)
    if found is None:
        return [_order_rejected(command, "RecordPayment", RejectionReason.UNKNOWN_ORDER)]
    registration, order = found
    if command.payment_id in order.settled or command.payment_id == order.payment_id:
        return []
    if not command.succeeded:
        if order.status is not OrderStatus.PENDING_PAYMENT:
            return []
        return [
            PaymentDeclined(
                convention_id=command.convention_id,
                registration_id=command.registration_id,
                order_id=command.order_id,
                payment_id=command.payment_id,
            )
        ]
    if order.status is OrderStatus.PENDING_PAYMENT:
        if (
            command.amount_cents == order.terms.total_cents
            and command.currency == order.terms.currency
        ):
            return [
                OrderPaid(
                    convention_id=command.convention_id,
                    registration_id=command.registration_id,
                    order_id=command.order_id,
                    payment_id=command.payment_id,
                    amount_cents=command.amount_cents,
                    currency=command.currency,
                    confirms_registration=order.first,
                )
            ]
        reason = RefundReason.AMOUNT_MISMATCH
    elif order.status is OrderStatus.PAID:
        reason = RefundReason.DUPLICATE_PAYMENT
    else:
        reason = RefundReason.LATE_PAYMENT
    returned = refund(registration, order, command.amount_cents, reason, 0, command.payment_id)
    return [returned.model_copy(update={"currency": command.currency})]


def _record_refund(situation: Situation, command: RecordRefund) -> list[Event]:
    registration = situation.registration
    known = (
        None
        if registration is None
        else next((r for r in registration.refunds if r.refund_id == command.refund_id), None)
    )
    if known is None:
        return [
            OrderRejected(
                convention_id=command.convention_id,
                registration_id=command.registration_id,
                order_id=None,
                command="RecordRefund",
                reason=RejectionReason.UNKNOWN_ORDER,
                subject=str(command.refund_id),
            )
        ]
    if known.completed:
        return []
    return [
        RefundCompleted(
            convention_id=command.convention_id,
            registration_id=command.registration_id,
            refund_id=command.refund_id,
        )
    ]


def _expire_order(situation: Situation, command: ExpireOrder) -> list[Event]:
    """Only an order still unpaid whose hold is over by the command's time: the clock may
    ask again and again (each time a new command), and is answered once."""
    found = _order_of(situation, command.registration_id, command.order_id)
    if found is None:
        return []
    _, order = found
    if order.status is not OrderStatus.PENDING_PAYMENT:
        return []
    if order.hold_until is None or situation.now < order.hold_until:
        return []
    return [
        OrderExpired(
            convention_id=command.convention_id,
            registration_id=command.registration_id,
            order_id=command.order_id,
            lines=order.terms.lines,
            expires_registration=order.first,
            promo_code=order.terms.promo_code,
        )
    ]


# Orders after registration.


def _order_rejected(
    command: RecordPayment | AddOptions | RemoveOption | ApplyPromoCode,
    name: str,
    reason: RejectionReason,
    subject: str = "",
) -> OrderRejected:
    return OrderRejected(
        convention_id=command.convention_id,
        registration_id=command.registration_id,
        order_id=getattr(command, "order_id", None),
        command=name,
        reason=reason,
        subject=subject,
    )


def _active_registration(
    situation: Situation, registration_id: uuid.UUID
) -> Registration | RejectionReason:
    registration = situation.registration
    if registration is None or registration.registration_id != registration_id:
        return RejectionReason.UNKNOWN_REGISTRATION
    if registration.convention_id != (
        situation.convention.convention_id if situation.convention else None
    ):
        return RejectionReason.UNKNOWN_REGISTRATION
    if not registration.active:
        return RejectionReason.NOT_ACTIVE
    return registration


def _add_options(situation: Situation, command: AddOptions) -> list[Event]:
    registration = _active_registration(situation, command.registration_id)
    convention = situation.convention
    if isinstance(registration, Registration):
        known = registration.order(command.order_id)
        if known is not None:
            if known.request_hash == command.request_hash:
                return []
            return [_order_rejected(command, "AddOptions", RejectionReason.IDEMPOTENCY_KEY_REUSED)]
    if not isinstance(registration, Registration) or convention is None:
        reason = registration if isinstance(registration, RejectionReason) else None
        return [_order_rejected(command, "AddOptions", reason or RejectionReason.NOT_OPEN)]
    if convention.status is not ConventionStatus.OPEN:
        return [_order_rejected(command, "AddOptions", RejectionReason.NOT_OPEN)]
    priced = price(
        convention,
        command.order_id,
        badge_type=registration.badge_type,
        seat=False,
        choices=command.options,
        promo_code=command.promo_code,
        now=situation.now,
        holder=registration,
    )
    if isinstance(priced, Refusal):
        return [_order_rejected(command, "AddOptions", priced.reason, priced.subject)]
    return [
        _options_ordered(
            convention, registration.registration_id, priced, situation, command.request_hash
        )
    ]


def _options_ordered(
    convention: Convention,
    registration_id: uuid.UUID,
    order: OrderTerms,
    situation: Situation,
    request_hash: str,
) -> OptionsOrdered:
    return OptionsOrdered(
        convention_id=convention.convention_id,
        registration_id=registration_id,
        order=order,
        request_hash=request_hash,
        hold_until=None
        if order.total_cents == 0
        else hold_end(situation.now, convention.policy.hold_minutes),
    )


def _remove_option(situation: Situation, command: RemoveOption) -> list[Event]:
    """Units come off the paid orders holding them, newest first; each order gives back its
    share of what was paid for them, by the convention's refund rule."""
    registration = _active_registration(situation, command.registration_id)
    if isinstance(registration, RejectionReason) or situation.convention is None:
        reason = registration if isinstance(registration, RejectionReason) else None
        return [_order_rejected(command, "RemoveOption", reason or RejectionReason.NOT_OPEN)]
    portions: list[tuple[Order, OrderLine, int]] = []
    wanted = command.quantity
    for order in reversed(registration.orders):
        if order.status is not OrderStatus.PAID:
            continue
        for line in order.terms.lines:
            if wanted and (line.kind, line.code, line.variant) == (
                "option",
                command.code,
                command.variant,
            ):
                units = min(wanted, line.quantity)
                wanted -= units
                portions.append((order, line, units))
    if wanted:
        return [
            _order_rejected(command, "RemoveOption", RejectionReason.NOT_REMOVABLE, command.code)
        ]
    percent = situation.convention.policy.refund_percent
    events: list[Event] = []
    refunds = 0
    for order, line, units in portions:
        given = line.model_copy(
            update={
                "quantity": units,
                "discount_cents": line.discount_cents * units // line.quantity,
                "total_cents": share(line, units),
            }
        )
        events.append(
            OptionRemoved(
                convention_id=command.convention_id,
                registration_id=command.registration_id,
                order_id=order.order_id,
                line=given,
            )
        )
        amount = given.total_cents * percent // 100
        if amount > 0 and order.payment_id is not None:
            events.append(refund(registration, order, amount, RefundReason.OPTION_REMOVED, refunds))
            refunds += 1
    return events


def _apply_promo_code(situation: Situation, command: ApplyPromoCode) -> list[Event]:
    found = _order_of(situation, command.registration_id, command.order_id)
    convention = situation.convention
    if found is None or convention is None:
        return [_order_rejected(command, "ApplyPromoCode", RejectionReason.UNKNOWN_ORDER)]
    _, order = found
    if order.status is not OrderStatus.PENDING_PAYMENT:
        return [_order_rejected(command, "ApplyPromoCode", RejectionReason.NOT_PENDING_PAYMENT)]
    if order.terms.promo_code is not None:
        return [
            _order_rejected(
                command,
                "ApplyPromoCode",
                RejectionReason.CODE_ALREADY_APPLIED,
                order.terms.promo_code,
            )
        ]
    promo = usable_promo(convention, command.promo_code, situation.now)
    if isinstance(promo, Refusal):
        return [_order_rejected(command, "ApplyPromoCode", promo.reason, promo.subject)]
    lines = discounted(order.terms.lines, promo)
    if isinstance(lines, Refusal):
        return [_order_rejected(command, "ApplyPromoCode", lines.reason, lines.subject)]
    repriced = terms(order.order_id, lines, order.terms.currency, promo)
    events: list[Event] = [
        PromoCodeApplied(
            convention_id=command.convention_id,
            registration_id=command.registration_id,
            order=repriced,
        )
    ]
    if repriced.total_cents == 0:
        events.append(
            OrderPaid(
                convention_id=command.convention_id,
                registration_id=command.registration_id,
                order_id=order.order_id,
                payment_id=None,
                amount_cents=0,
                currency=repriced.currency,
                confirms_registration=order.first,
            )
        )
    return events


# The catalogue.


def _catalogue(situation: Situation, command: CatalogueCommand) -> list[Event]:
    convention = situation.convention
    subject = _subject(command)
    reason = (
        RejectionReason.UNKNOWN_CONVENTION
        if convention is None
        else _catalogue_refusal(convention, command)
    )
    if reason is not None or convention is None:
        return [
            CatalogueChangeRejected(
                convention_id=command.convention_id,
                command=command.message_type,
                subject=subject,
                reason=reason or RejectionReason.UNKNOWN_CONVENTION,
            )
        ]
    cid = command.convention_id
    match command:
        case DefinePriceTiers():
            return [
                PriceTiersDefined(
                    convention_id=cid, badge_type=command.badge_type, tiers=command.tiers
                )
            ]
        case SetBadgeQuota():
            return [
                BadgeQuotaSet(convention_id=cid, badge_type=command.badge_type, quota=command.quota)
            ]
        case DefineOption():
            return [OptionDefined(convention_id=cid, option=command.option)]
        case CreatePromoCode():
            return [PromoCodeCreated(convention_id=cid, promo=command.promo)]
        case SetOrderPolicy():
            return [OrderPolicySet(convention_id=cid, policy=command.policy)]


def _subject(command: CatalogueCommand) -> str:
    match command:
        case DefinePriceTiers() | SetBadgeQuota():
            return command.badge_type
        case DefineOption():
            return command.option.code
        case CreatePromoCode():
            return command.promo.code
        case SetOrderPolicy():
            return ""


def _catalogue_refusal(convention: Convention, command: CatalogueCommand) -> RejectionReason | None:
    match command:
        case DefinePriceTiers():
            if convention.badge(command.badge_type) is None:
                return RejectionReason.UNKNOWN_BADGE_TYPE
        case SetBadgeQuota():
            badge = convention.badge(command.badge_type)
            if badge is None:
                return RejectionReason.UNKNOWN_BADGE_TYPE
            if command.quota < badge.taken:
                return RejectionReason.QUOTA_BELOW_TAKEN
        case DefineOption():
            spec = command.option
            if any(convention.badge(code) is None for code in spec.badge_types):
                return RejectionReason.UNKNOWN_BADGE_TYPE
            known = convention.option(spec.code)
            if known is not None:
                codes = {v.code for v in spec.variants}
                if any(v.code not in codes for v in known.variants):
                    return RejectionReason.NOT_REMOVABLE
                if spec.quota is not None and spec.quota < known.taken:
                    return RejectionReason.QUOTA_BELOW_TAKEN
                for variant in spec.variants:
                    before = known.variant(variant.code)
                    if before and variant.quota is not None and variant.quota < before.taken:
                        return RejectionReason.QUOTA_BELOW_TAKEN
        case CreatePromoCode():
            promo = command.promo
            if convention.promo(promo.code) is not None:
                return RejectionReason.CODE_EXISTS
            if any(convention.badge(code) is None for code in promo.badge_types):
                return RejectionReason.UNKNOWN_BADGE_TYPE
            if any(convention.option(code) is None for code in promo.options):
                return RejectionReason.UNKNOWN_OPTION
        case SetOrderPolicy():
            sold = any(b.taken for b in convention.badge_types) or any(
                o.taken for o in convention.options
            )
            if sold and command.policy.currency != convention.policy.currency:
                return RejectionReason.CURRENCY_MISMATCH
    return None


# Waitlists.


def _waitlist_rejected(
    command: JoinWaitlist | LeaveWaitlist | AcceptOffer, reason: RejectionReason
) -> WaitlistRejected:
    return WaitlistRejected(
        convention_id=command.convention_id,
        entry_id=command.entry_id,
        command=command.message_type,
        reason=reason,
    )


def remaining(convention: Convention, stock: str) -> int | None:
    """Units of a stock still to be had: None for no limit."""
    kind, _, rest = stock.partition(":")
    code, _, variant = rest.partition("/")
    if kind == "badge":
        badge = convention.badge(code)
        return 0 if badge is None else badge.remaining
    option = convention.option(code)
    return 0 if option is None else option.remaining(variant or None)


def _join_waitlist(situation: Situation, command: JoinWaitlist) -> list[Event]:
    convention = situation.convention
    if convention is None or convention.status is not ConventionStatus.OPEN:
        return [_waitlist_rejected(command, RejectionReason.NOT_OPEN)]
    if convention.entry(command.entry_id) is not None:
        return []
    stock = stock_key(command.kind, command.code, command.variant)
    line = convention.line(stock)
    if command.kind == "badge":
        if convention.badge(command.code) is None:
            return [_waitlist_rejected(command, RejectionReason.UNKNOWN_BADGE_TYPE)]
        holder = situation.email_holder
        if holder is not None and holder.active:
            return [_waitlist_rejected(command, RejectionReason.ALREADY_REGISTERED)]
        key = email_key(command.email)
        if any(email_key(e.email) == key for e in line):
            return [_waitlist_rejected(command, RejectionReason.ALREADY_WAITING)]
        quantity = 1
    else:
        registration = _active_registration(situation, command.registration_id or uuid.UUID(int=0))
        if isinstance(registration, RejectionReason):
            return [_waitlist_rejected(command, registration)]
        refusal = _option_refusal(convention, registration, command)
        if refusal is not None:
            return [_waitlist_rejected(command, refusal)]
        if any(e.registration_id == registration.registration_id for e in line):
            return [_waitlist_rejected(command, RejectionReason.ALREADY_WAITING)]
        quantity = command.quantity
    left = remaining(convention, stock)
    if left is None or (left >= quantity and not line):
        return [_waitlist_rejected(command, RejectionReason.NOT_SOLD_OUT)]
    return [
        WaitlistJoined(
            convention_id=command.convention_id,
            entry_id=command.entry_id,
            kind=command.kind,
            code=command.code,
            variant=command.variant,
            quantity=quantity,
            email=command.email,
            name=command.name,
            account_id=command.account_id,
            registration_id=command.registration_id if command.kind == "option" else None,
            position=len(line) + 1,
            seq=convention.next_seq,
            stock=stock,
        )
    ]


def _option_refusal(
    convention: Convention, registration: Registration, command: JoinWaitlist
) -> RejectionReason | None:
    option = convention.option(command.code)
    if option is None:
        return RejectionReason.UNKNOWN_OPTION
    if option.spec.badge_types and registration.badge_type not in option.spec.badge_types:
        return RejectionReason.OPTION_NOT_FOR_BADGE
    if (option.variants and option.variant(command.variant) is None) or (
        not option.variants and command.variant is not None
    ):
        return RejectionReason.UNKNOWN_VARIANT
    if (
        registration.option_units(command.code) + command.quantity
        > option.spec.max_per_registration
    ):
        return RejectionReason.LIMIT_REACHED
    return None


def _leave_waitlist(situation: Situation, command: LeaveWaitlist) -> list[Event]:
    convention = situation.convention
    entry = None if convention is None else convention.entry(command.entry_id)
    if entry is None:
        return [_waitlist_rejected(command, RejectionReason.UNKNOWN_ENTRY)]
    if not entry.active:
        return [_waitlist_rejected(command, RejectionReason.NOT_ACTIVE)]
    return [
        WaitlistLeft(
            convention_id=command.convention_id,
            entry_id=command.entry_id,
            stock=entry.stock,
            released=entry.quantity if entry.status is EntryStatus.OFFERED else 0,
        )
    ]


def _expire_offer(situation: Situation, command: ExpireOffer) -> list[Event]:
    convention = situation.convention
    entry = None if convention is None else convention.entry(command.entry_id)
    if entry is None or entry.status is not EntryStatus.OFFERED:
        return []
    if entry.offer_expires_at is None or situation.now < entry.offer_expires_at:
        return []
    return [
        WaitlistOfferExpired(
            convention_id=command.convention_id,
            entry_id=command.entry_id,
            stock=entry.stock,
            released=entry.quantity,
        )
    ]


def _accept_offer(situation: Situation, command: AcceptOffer) -> list[Event]:
    """The offer's held units are released to the order placed from it, in one decision, so
    nobody else can take them between; if that order cannot be placed (a promo code used
    up, an option sold out), nothing happens and the offer stands."""
    convention = situation.convention
    entry = None if convention is None else convention.entry(command.entry_id)
    if convention is None or entry is None:
        return [_waitlist_rejected(command, RejectionReason.UNKNOWN_ENTRY)]
    if entry.status is EntryStatus.ACCEPTED:
        return []
    if entry.status is EntryStatus.WAITING:
        return [_waitlist_rejected(command, RejectionReason.NO_OFFER)]
    if entry.status is not EntryStatus.OFFERED or (
        entry.offer_expires_at is not None and situation.now >= entry.offer_expires_at
    ):
        return [_waitlist_rejected(command, RejectionReason.OFFER_EXPIRED)]
    accepted = WaitlistOfferAccepted(
        convention_id=command.convention_id,
        entry_id=entry.entry_id,
        registration_id=command.registration_id
        if entry.kind == "badge"
        else entry.registration_id or command.registration_id,
        stock=entry.stock,
        released=entry.quantity,
    )
    freed = evolve_convention(convention, accepted) or convention
    if entry.kind == "badge":
        return _accepted_seat(situation, command, entry, accepted, freed)
    return _accepted_options(situation, command, entry, accepted, freed)


def _accepted_seat(
    situation: Situation,
    command: AcceptOffer,
    entry: WaitEntry,
    accepted: WaitlistOfferAccepted,
    freed: Convention,
) -> list[Event]:
    holder = situation.email_holder
    if holder is not None and holder.active:
        return [_waitlist_rejected(command, RejectionReason.ALREADY_REGISTERED)]
    priced = price(
        freed,
        command.registration_id,
        badge_type=entry.code,
        seat=True,
        choices=command.options,
        promo_code=command.promo_code,
        now=situation.now,
    )
    if isinstance(priced, Refusal):
        return [_waitlist_rejected(command, priced.reason)]
    fields = {
        "convention_id": command.convention_id,
        "registration_id": command.registration_id,
        "email": entry.email,
        "name": entry.name,
        "badge_type": entry.code,
        "request_hash": command.request_hash,
        "account_id": entry.account_id,
        "order": priced,
    }
    if priced.total_cents == 0:
        return [accepted, AttendeeRegistered(**fields)]
    hold_until = hold_end(situation.now, freed.policy.hold_minutes)
    return [accepted, OrderPlaced(**fields, hold_until=hold_until)]


def _accepted_options(
    situation: Situation,
    command: AcceptOffer,
    entry: WaitEntry,
    accepted: WaitlistOfferAccepted,
    freed: Convention,
) -> list[Event]:
    registration = situation.registration
    if registration is None or not registration.active:
        return [_waitlist_rejected(command, RejectionReason.NOT_ACTIVE)]
    choice = OptionChoice(code=entry.code, variant=entry.variant, quantity=entry.quantity)
    priced = price(
        freed,
        uuid.uuid5(entry.entry_id, "order"),
        badge_type=registration.badge_type,
        seat=False,
        choices=(choice, *command.options),
        promo_code=command.promo_code,
        now=situation.now,
        holder=registration,
    )
    if isinstance(priced, Refusal):
        return [_waitlist_rejected(command, priced.reason)]
    return [
        accepted,
        _options_ordered(
            freed, registration.registration_id, priced, situation, command.request_hash
        ),
    ]


FREEING = (
    OrderExpired,
    RegistrationCancelled,
    OptionRemoved,
    BadgeQuotaSet,
    OptionDefined,
    WaitlistOfferExpired,
    WaitlistLeft,
)
"""Events after which stock may be free for whoever waits for it."""


def offers_after(situation: Situation, events: Sequence[Event]) -> list[Event]:
    """Offers to the first in line of every stock with free units once `events` are
    applied. The line is kept in order: nobody is offered before everyone ahead of them."""
    if situation.convention is None or not any(isinstance(e, FREEING) for e in events):
        return []
    convention: Convention = situation.convention
    for event in events:
        convention = evolve_convention(convention, event) or convention
    expires_at = situation.now + timedelta(minutes=convention.policy.offer_minutes)
    made: list[Event] = []
    for stock in sorted({e.stock for e in convention.waitlist if e.status is EntryStatus.WAITING}):
        for entry in convention.line(stock):
            if entry.status is EntryStatus.OFFERED:
                continue
            left = remaining(convention, stock)
            if left is not None and left < entry.quantity:
                break
            offer = WaitlistOfferMade(
                convention_id=convention.convention_id,
                entry_id=entry.entry_id,
                stock=stock,
                quantity=entry.quantity,
                expires_at=expires_at,
            )
            made.append(offer)
            convention = evolve_convention(convention, offer) or convention
    return made
