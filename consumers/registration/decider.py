"""The registration decider: pure domain rules, no I/O, no clock, no random ids.

`decide(situation, command)` returns the events the command leads to; an empty list means the
command was already decided (a redelivery or a retried idempotency key), or asks for nothing
any more (an order the clock would expire that was paid meanwhile). Time is the command's
own (`Situation.now`), so deciding again gives the same events. The rules of what a
convention sells and how its orders are paid are in `consumers.registration.orders`.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from consumers.registration import orders
from consumers.registration.pricing import Refusal, price
from consumers.registration.state import (
    CheckIn,
    Convention,
    ConventionStatus,
    OrderStatus,
    Registration,
    RegistrationStatus,
    Situation,
    hold_end,
    utc,
)
from schemas.checkin import (
    AttendeeCheckedIn,
    CheckInAttendee,
    CheckInRefusal,
    CheckInRefused,
    CheckInSuperseded,
)
from schemas.identity import email_key
from schemas.orders import RefundReason
from schemas.registration import (
    AttendeeRegistered,
    CancellationRejected,
    CancelRegistration,
    CloseConvention,
    Command,
    ConventionClosed,
    ConventionCommandRejected,
    ConventionCreated,
    ConventionOpened,
    CreateConvention,
    Event,
    OpenConvention,
    OrderPlaced,
    OrderTerms,
    RegisterAttendee,
    RegistrationCancelled,
    RegistrationRejected,
    RegistrationRequestRefused,
    RegistrationTransferred,
    RejectionReason,
    TransferRegistration,
    TransferRejected,
)


def convention_is_open(convention: Convention | None) -> RejectionReason | None:
    if convention is None or convention.status is not ConventionStatus.OPEN:
        return RejectionReason.NOT_OPEN
    return None


def badge_type_exists(convention: Convention, code: str) -> RejectionReason | None:
    return None if convention.badge(code) is not None else RejectionReason.UNKNOWN_BADGE_TYPE


def seat_available(convention: Convention, code: str) -> RejectionReason | None:
    badge = convention.badge(code)
    if badge is None or badge.taken >= badge.quota:
        return RejectionReason.SOLD_OUT
    return None


def email_not_registered(holder: Registration | None, email: str) -> RejectionReason | None:
    if holder is not None and holder.active and holder.email_key == email_key(email):
        return RejectionReason.ALREADY_REGISTERED
    return None


def same_request(registration: Registration, request_hash: str) -> RejectionReason | None:
    """A registration's idempotency key, sent again, must come with the same request."""
    if registration.request_hash != request_hash:
        return RejectionReason.IDEMPOTENCY_KEY_REUSED
    return None


def registration_is_cancellable(
    registration: Registration | None, convention_id: uuid.UUID
) -> RejectionReason | None:
    """A registration holding its seat, paid or not, can be cancelled."""
    if registration is None or registration.convention_id != convention_id:
        return RejectionReason.UNKNOWN_REGISTRATION
    if not registration.active:
        return RejectionReason.NOT_CANCELLABLE
    return None


def transition_allowed(
    convention: Convention | None, target: ConventionStatus
) -> RejectionReason | None:
    if convention is None:
        return RejectionReason.UNKNOWN_CONVENTION
    allowed = {
        ConventionStatus.OPEN: ConventionStatus.DRAFT,
        ConventionStatus.CLOSED: ConventionStatus.OPEN,
    }
    if allowed.get(target) is not convention.status:
        return RejectionReason.INVALID_TRANSITION
    return None


def decide(situation: Situation, command: Command) -> list[Event]:
    events = _decide(situation, command)
    return events + orders.offers_after(situation, events)


def _decide(situation: Situation, command: Command) -> list[Event]:
    match command:
        case RegisterAttendee():
            return _register(situation, command)
        case CancelRegistration():
            return _cancel(situation, command)
        case TransferRegistration():
            return _transfer(situation, command)
        case CheckInAttendee():
            return _check_in(situation, command)
        case CreateConvention():
            return _create(situation, command)
        case OpenConvention():
            reason = transition_allowed(situation.convention, ConventionStatus.OPEN)
            if reason is not None:
                return [_convention_rejected(command, reason)]
            return [ConventionOpened(convention_id=command.convention_id)]
        case CloseConvention():
            reason = transition_allowed(situation.convention, ConventionStatus.CLOSED)
            if reason is not None:
                return [_convention_rejected(command, reason)]
            return [ConventionClosed(convention_id=command.convention_id)]
        case _:
            return orders.decide(situation, command)


def registration_is_transferable(
    registration: Registration | None, convention_id: uuid.UUID
) -> RejectionReason | None:
    if registration is None or registration.convention_id != convention_id:
        return RejectionReason.UNKNOWN_REGISTRATION
    if registration.status is not RegistrationStatus.CONFIRMED:
        return RejectionReason.NOT_TRANSFERABLE
    return None


def _transfer(situation: Situation, command: TransferRegistration) -> list[Event]:
    """The new holder must not hold another seat of the convention: one e-mail, one active
    registration, whoever holds it."""
    registration = situation.registration
    reason = registration_is_transferable(registration, command.convention_id)
    holder = situation.email_holder
    if reason is None and holder is not None and holder.registration_id != command.registration_id:
        reason = email_not_registered(holder, command.email)
    if reason is not None or registration is None:
        return [
            TransferRejected(
                convention_id=command.convention_id,
                registration_id=command.registration_id,
                reason=reason or RejectionReason.UNKNOWN_REGISTRATION,
            )
        ]
    return [
        RegistrationTransferred(
            convention_id=command.convention_id,
            registration_id=command.registration_id,
            badge_type=registration.badge_type,
            email=command.email,
            name=command.name,
            account_id=command.to_account_id,
        )
    ]


def _register(situation: Situation, command: RegisterAttendee) -> list[Event]:
    if situation.registration is not None:
        reason = same_request(situation.registration, command.request_hash)
        if reason is None:
            return []
        return [
            RegistrationRequestRefused(
                convention_id=command.convention_id,
                registration_id=command.registration_id,
                request_hash=command.request_hash,
                reason=reason,
            )
        ]
    convention = situation.convention
    refusal: Refusal | None = None
    reason = convention_is_open(convention)
    if reason is None and convention is not None:
        reason = (
            badge_type_exists(convention, command.badge_type)
            or email_not_registered(situation.email_holder, command.email)
            or seat_available(convention, command.badge_type)
        )
    if reason is None and convention is not None:
        priced = price(
            convention,
            command.registration_id,
            badge_type=command.badge_type,
            seat=True,
            choices=command.options,
            promo_code=command.promo_code,
            now=situation.now,
        )
        if isinstance(priced, Refusal):
            refusal = priced
        else:
            return [placed(convention, command, priced, situation)]
    return [
        RegistrationRejected(
            convention_id=command.convention_id,
            registration_id=command.registration_id,
            email=command.email,
            name=command.name,
            badge_type=command.badge_type,
            request_hash=command.request_hash,
            reason=refusal.reason if refusal else reason or RejectionReason.NOT_OPEN,
            account_id=command.account_id,
            subject=refusal.subject if refusal else "",
        )
    ]


def placed(
    convention: Convention,
    command: RegisterAttendee,
    order: OrderTerms,
    situation: Situation,
) -> AttendeeRegistered | OrderPlaced:
    """A registration priced: confirmed at once when there is nothing to pay, otherwise held
    until paid or until its hold runs out."""
    fields = {
        "convention_id": command.convention_id,
        "registration_id": command.registration_id,
        "email": command.email,
        "name": command.name,
        "badge_type": command.badge_type,
        "request_hash": command.request_hash,
        "account_id": command.account_id,
        "order": order,
    }
    if order.total_cents == 0:
        return AttendeeRegistered(**fields)
    return OrderPlaced(**fields, hold_until=hold_end(situation.now, convention.policy.hold_minutes))


def _cancel(situation: Situation, command: CancelRegistration) -> list[Event]:
    """The seat and every option unit held go back; what was paid comes back by the
    convention's refund rule, one refund per paid order."""
    registration = situation.registration
    reason = registration_is_cancellable(registration, command.convention_id)
    if reason is not None or registration is None or situation.convention is None:
        return [
            CancellationRejected(
                convention_id=command.convention_id,
                registration_id=command.registration_id,
                reason=reason or RejectionReason.UNKNOWN_REGISTRATION,
            )
        ]
    released = tuple(
        line
        for order in registration.orders
        if order.holds_stock
        for line in order.terms.lines
        if line.kind == "option"
    )
    events: list[Event] = [
        RegistrationCancelled(
            convention_id=command.convention_id,
            registration_id=command.registration_id,
            badge_type=registration.badge_type,
            options_released=released,
        )
    ]
    percent = situation.convention.policy.refund_percent
    refunds = [
        (order, order.value_cents * percent // 100)
        for order in registration.orders
        if order.status is OrderStatus.PAID and order.payment_id is not None
    ]
    events.extend(
        orders.refund(registration, order, amount, RefundReason.CANCELLED, index)
        for index, (order, amount) in enumerate((o, a) for o, a in refunds if a > 0)
    )
    return events


def registration_is_known(
    registration: Registration | None, convention_id: uuid.UUID
) -> CheckInRefusal | None:
    if registration is None or registration.convention_id != convention_id:
        return CheckInRefusal.UNKNOWN_REGISTRATION
    return None


def ticket_is_current(registration: Registration, serial: int) -> CheckInRefusal | None:
    """A cancellation revokes the ticket; a transfer voids the tickets issued before it."""
    if registration.status is RegistrationStatus.CANCELLED or (
        serial != registration.ticket_serial
    ):
        return CheckInRefusal.REVOKED
    return None


def registration_is_paid(registration: Registration) -> CheckInRefusal | None:
    """Confirmed: free at once, or paid (one pending payment, expired or rejected is not)."""
    if registration.status is not RegistrationStatus.CONFIRMED:
        return CheckInRefusal.NOT_PAID
    return None


def scan_already_decided(registration: Registration, scan: CheckIn) -> bool:
    """The scan the registration is checked in by, sent again: nothing new to decide."""
    return registration.check_in is not None and registration.check_in.scan_id == scan.scan_id


def scan_supersedes(registration: Registration, scan: CheckIn) -> bool:
    """An earlier scan than the one the registration was checked in by (stations that were
    offline): the earliest scan is the check-in, whatever order the scans arrive in."""
    return registration.check_in is not None and scan.precedes(registration.check_in)


def _check_in(situation: Situation, command: CheckInAttendee) -> list[Event]:
    registration = situation.registration
    reason = registration_is_known(registration, command.convention_id)
    if reason is None and registration is not None:
        reason = ticket_is_current(registration, command.ticket_serial) or registration_is_paid(
            registration
        )
    if reason is not None or registration is None:
        return [_check_in_refused(command, reason or CheckInRefusal.UNKNOWN_REGISTRATION)]
    scan = CheckIn(command.station, utc(command.scanned_at), command.scan_id)
    if scan_already_decided(registration, scan):
        return []
    checked_in = registration.check_in
    fields = {
        "convention_id": command.convention_id,
        "registration_id": command.registration_id,
        "badge_type": registration.badge_type,
        "name": registration.name,
        "station": scan.station,
        "scanned_at": scan.scanned_at,
        "scan_id": scan.scan_id,
    }
    if checked_in is None:
        return [AttendeeCheckedIn(**fields)]
    if scan_supersedes(registration, scan):
        return [
            CheckInSuperseded(
                **fields,
                superseded_station=checked_in.station,
                superseded_scanned_at=checked_in.scanned_at,
                superseded_scan_id=checked_in.scan_id,
            )
        ]
    return [
        _check_in_refused(
            command,
            CheckInRefusal.ALREADY_CHECKED_IN,
            checked_in_station=checked_in.station,
            checked_in_at=checked_in.scanned_at,
        )
    ]


def _check_in_refused(
    command: CheckInAttendee,
    reason: CheckInRefusal,
    *,
    checked_in_station: str | None = None,
    checked_in_at: datetime | None = None,
) -> CheckInRefused:
    return CheckInRefused(
        convention_id=command.convention_id,
        registration_id=command.registration_id,
        station=command.station,
        scanned_at=utc(command.scanned_at),
        scan_id=command.scan_id,
        reason=reason,
        checked_in_station=checked_in_station,
        checked_in_at=checked_in_at,
    )


def _create(situation: Situation, command: CreateConvention) -> list[Event]:
    if situation.convention is not None:
        return []
    return [
        ConventionCreated(
            convention_id=command.convention_id,
            name=command.name,
            starts_on=command.starts_on,
            ends_on=command.ends_on,
            badge_types=command.badge_types,
            request_hash=command.request_hash,
            allow_guests=command.allow_guests,
            policy=command.policy,
        )
    ]


def _convention_rejected(
    command: CreateConvention | OpenConvention | CloseConvention, reason: RejectionReason
) -> ConventionCommandRejected:
    return ConventionCommandRejected(
        convention_id=command.convention_id, command=command.message_type, reason=reason
    )
