"""The mailer: delivers the account decider's `mail_outbox` into a folder of `.eml` files.

There is no real SMTP in dev and tests: each mail becomes an RFC 5322 message file that a
developer opens in any mail client (or a test reads with `latest_mail_to`). A file is written
under a temporary name and renamed, so a reader never sees half of one; its name derives from
the row, so a crash between writing it and marking the row sent rewrites the same file, and a
mail is seen at most once. Rows are claimed with `SKIP LOCKED`, so mailers running side by
side never deliver the same row at the same time.

A mail that confirms a registration (its confirmation, or the payment that confirms it)
carries the registration's ticket: its QR code attached as a PNG and a link to the printable
ticket. The ticket is signed here, at delivery, so no key reaches the deciders (see
`MailTickets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from consumers.accounts.tables import mail_outbox
from consumers.registration import tables as registration_tables
from infra.metrics import MAILS_DELIVERED
from infra.pipeline.faults import is_transient
from infra.qr import qr_png
from producers.outbox import utcnow
from schemas.envelope import HEADER_TYPE, UndecodableMessage
from schemas.identity import InvalidEmail, email_key
from schemas.orders import OrderPaid
from schemas.registration import AttendeeRegistered
from schemas.registry import decode_message
from schemas.tickets import SigningKey, issue

log = structlog.get_logger(__name__)

SENDER = "Butterfly <no-reply@butterfly.invalid>"
MESSAGE_ID_DOMAIN = "butterfly.invalid"
WRITING = policy.SMTPUTF8
"""Lines end in CRLF as RFC 5322 says; headers are UTF-8, so an internationalised address
is written as it is, not refused."""


@dataclass(frozen=True)
class Mail:
    """A row of `mail_outbox`, as the mailer needs it."""

    seq: int
    mail_id: str
    to_address: str
    subject: str
    body: str
    created_at: datetime

    @classmethod
    def from_db(cls, row: Any) -> Mail:
        return cls(
            seq=int(row.seq),
            mail_id=row.mail_id,
            to_address=row.to_address,
            subject=row.subject,
            body=row.body,
            created_at=row.created_at,
        )

    @property
    def file_name(self) -> str:
        """Sorted by name is sorted by when the decider decided to send them."""
        return f"{self.seq:08d}-{self.mail_id}.eml"


def _one_line(text: str) -> str:
    """A header value on one line: a line break in a header would start another header."""
    return " ".join(text.split())


@dataclass(frozen=True)
class MailTicket:
    """The ticket a mail carries."""

    token: str
    url: str
    """Where the printable ticket is."""


TICKET_FILE = "ticket.png"


def as_message(mail: Mail, ticket: MailTicket | None = None) -> EmailMessage:
    """The mail as an RFC 5322 message, dated when it was decided (stored as naive UTC);
    with a ticket, its QR code attached and its link added to the text."""
    message = EmailMessage(policy=WRITING)
    message["From"] = SENDER
    message["To"] = _one_line(mail.to_address)
    message["Subject"] = _one_line(mail.subject)
    message["Date"] = format_datetime(mail.created_at.replace(tzinfo=UTC))
    message["Message-ID"] = f"<{mail.mail_id}@{MESSAGE_ID_DOMAIN}>"
    # 8bit, not quoted-printable: a code must stay on one line for whoever reads the file
    # as it is (the dev sink has no mail client in front of it).
    body = mail.body
    if ticket is not None:
        body = (
            f"{body.rstrip()}\n\nYour ticket: show the attached QR code ({TICKET_FILE}) at the "
            f"door, or print it: {ticket.url}\n"
        )
    message.set_content(body, cte="8bit")
    if ticket is not None:
        message.add_attachment(
            qr_png(ticket.token), maintype="image", subtype="png", filename=TICKET_FILE
        )
    return message


FIRST_SERIAL = 0
"""The serial of the ticket a confirmation mail carries: only a confirmed registration can be
transferred (which counts its serial up), so at its confirmation it has never moved. A mail
delivered after a transfer thus carries a ticket already revoked, as the mail's reader's
would be."""


class MailTickets:
    """Which mails carry a ticket, and the ticket. A registration mail's id is the id of the
    event that sent it (`consumers.registration.mails`); the registration decider's outbox, in
    this same database, holds that event (for a day after it is published), so the event says
    what the mail is about: `AttendeeRegistered` (confirmed at once) and `OrderPaid` that
    `confirms_registration` carry the ticket. A mail whose event is gone goes without one."""

    def __init__(self, keys: tuple[SigningKey, ...], site_url: str) -> None:
        if not keys:
            raise ValueError("mail tickets need a ticket key")
        self._keys = keys
        self._site_url = site_url.rstrip("/")

    def url(self, registration_id: uuid.UUID) -> str:
        return f"{self._site_url}/api/v1/registrations/{registration_id}/ticket.pdf"

    async def find(self, conn: AsyncConnection, mails: list[Mail]) -> dict[str, MailTicket]:
        """The ticket of each mail among `mails` that carries one, by mail id."""
        outbox = registration_tables.outbox.c
        rows = await conn.execute(
            select(outbox.event_id, outbox.headers, outbox.value).where(
                outbox.event_id.in_([mail.mail_id for mail in mails])
            )
        )
        confirmed: dict[str, tuple[uuid.UUID, uuid.UUID, str | None]] = {}
        for row in rows:
            found = _confirmation(row.headers, row.value)
            if found is not None:
                confirmed[row.event_id] = found
        badges = await self._badge_types(
            conn, {r for r, _, badge in confirmed.values() if badge is None}
        )
        tickets = {}
        for mail_id, (registration_id, convention_id, badge) in confirmed.items():
            badge_type = badge or badges.get(registration_id)
            if badge_type is None:
                continue
            token = issue(registration_id, convention_id, badge_type, FIRST_SERIAL, self._keys)
            tickets[mail_id] = MailTicket(token, self.url(registration_id))
        return tickets

    @staticmethod
    async def _badge_types(
        conn: AsyncConnection, registration_ids: set[uuid.UUID]
    ) -> dict[uuid.UUID, str]:
        if not registration_ids:
            return {}
        r = registration_tables.registrations.c
        rows = await conn.execute(
            select(r.registration_id, r.badge_type).where(
                r.registration_id.in_(sorted(str(i) for i in registration_ids))
            )
        )
        return {uuid.UUID(row.registration_id): row.badge_type for row in rows}


TICKET_EVENTS = frozenset({AttendeeRegistered.message_type, OrderPaid.message_type})


def _confirmation(headers: str, value: bytes) -> tuple[uuid.UUID, uuid.UUID, str | None] | None:
    """(registration, convention, badge type if the event says) of an event that confirms a
    registration; None for any other."""
    try:
        type_name = dict(json.loads(headers)).get(HEADER_TYPE)
        if type_name not in TICKET_EVENTS:
            return None
        _, event = decode_message(value, type_name)
    except (ValueError, TypeError, UndecodableMessage):
        return None
    match event:
        case AttendeeRegistered():
            return event.registration_id, event.convention_id, event.badge_type
        case OrderPaid(confirms_registration=True):
            return event.registration_id, event.convention_id, None
        case _:
            return None


def write_atomically(folder: Path, name: str, content: bytes) -> Path:
    """Write `content` to `folder/name` so that the name only ever shows a whole file."""
    target = folder / name
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target


def _identity(address: str) -> str:
    """Who an address is (`schemas.identity`); an address that is not valid is itself."""
    try:
        return email_key(address)
    except InvalidEmail:
        return address.strip()


def latest_mail_to(folder: Path, address: str) -> EmailMessage | None:
    """The newest delivered mail to the identity of `address`, if any (newest by name)."""
    wanted = _identity(address)
    for path in sorted(folder.glob("*.eml"), reverse=True):
        message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
        if not isinstance(message, EmailMessage):
            continue
        recipients = getattr(message["To"], "addresses", ())
        if any(_identity(recipient.addr_spec) == wanted for recipient in recipients):
            return message
    return None


class Mailer:
    """Delivers unsent `mail_outbox` rows, oldest first, in batches, until stopped."""

    def __init__(
        self,
        engine: AsyncEngine,
        folder: Path,
        *,
        poll_seconds: float = 0.5,
        batch_size: int = 100,
        tickets: MailTickets | None = None,
    ) -> None:
        self._engine = engine
        self._tickets = tickets
        self._folder = folder
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._undeliverable: set[int] = set()
        self._stopping = asyncio.Event()

    @property
    def folder(self) -> Path:
        return self._folder

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        self._folder.mkdir(parents=True, exist_ok=True)
        log.info("mailer_started", folder=str(self._folder), tickets=self._tickets is not None)
        while not self._stopping.is_set():
            try:
                delivered = await self.deliver_once()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("mailer_transient_fault", error=repr(exc))
                delivered = 0
            if delivered:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self._poll_seconds)
        log.info("mailer_stopped")

    async def deliver_once(self) -> int:
        """Deliver one batch; returns how many rows were marked sent."""
        self._folder.mkdir(parents=True, exist_ok=True)
        async with self._engine.begin() as conn:
            mails = await self._claim(conn)
            if not mails:
                return 0
            tickets = {} if self._tickets is None else await self._tickets.find(conn, mails)
            sent = await asyncio.to_thread(self._write_all, mails, tickets)
            if sent:
                await conn.execute(
                    update(mail_outbox).where(mail_outbox.c.seq.in_(sent)).values(sent_at=utcnow())
                )
        if sent:
            MAILS_DELIVERED.inc(len(sent))
            log.info("mails_delivered", count=len(sent), folder=str(self._folder))
        return len(sent)

    async def _claim(self, conn: AsyncConnection) -> list[Mail]:
        m = mail_outbox.c
        query = (
            select(m.seq, m.mail_id, m.to_address, m.subject, m.body, m.created_at)
            .where(m.sent_at.is_(None))
            .order_by(m.seq)
            .limit(self._batch_size)
            .with_for_update(skip_locked=True)
        )
        if self._undeliverable:
            query = query.where(m.seq.not_in(sorted(self._undeliverable)))
        return [Mail.from_db(row) for row in await conn.execute(query)]

    def _write_all(self, mails: list[Mail], tickets: dict[str, MailTicket]) -> list[int]:
        """Write each mail's file; returns the seqs written. A row that cannot become a
        message is logged and left unsent (visible in the table) for someone to look at,
        and this mailer passes over it instead of stalling behind it."""
        written = []
        for mail in mails:
            try:
                content = as_message(mail, tickets.get(mail.mail_id)).as_bytes()
            except (ValueError, TypeError, LookupError) as exc:
                self._undeliverable.add(mail.seq)
                log.error("mail_undeliverable", seq=mail.seq, mail_id=mail.mail_id, error=repr(exc))
                continue
            write_atomically(self._folder, mail.file_name, content)
            written.append(mail.seq)
        return written
