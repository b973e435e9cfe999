"""The mailer on a migrated write database: every unsent `mail_outbox` row becomes one `.eml`
file, once, and is marked sent; a file left by a crash before the row was marked is
rewritten under the same name, never doubled. A mail that confirms a registration carries
its ticket, signed at delivery."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from consumers.accounts.mailer import Mailer, MailTickets, latest_mail_to
from consumers.accounts.tables import mail_outbox
from consumers.registration import tables as registration_tables
from infra.qr import qr_png
from infra.settings import Settings
from producers.kafka import OutgoingRecord
from producers.outbox import stage
from schemas.orders import OrderPaid
from schemas.registration import AttendeeRegistered, Event
from schemas.registry import wrap
from schemas.tickets import issue, parse_keys, public_keys, verify
from schemas.topics import Topics, registration_key
from tests.conftest import TEST_TICKET_KEYS, StackFactory
from tests.support import count, engine_for, eventually

pytestmark = pytest.mark.integration


def outbox_row(n: int) -> dict[str, Any]:
    return {
        "mail_id": str(uuid.uuid4()),
        "to_address": f"user{n}@example.org",
        "subject": f"Verify your address ({n})",
        "body": f"Hello {n}, open https://butterfly.invalid/verify?token=t{n}\n",
        "created_at": datetime(2027, 1, 10, 9, 0, n),
    }


async def unsent(settings: Settings) -> int:
    async with engine_for(settings.db.write_url) as engine:
        return await count(engine, mail_outbox, mail_outbox.c.sent_at.is_(None))


async def run_until_sent(settings: Settings, folder: Path) -> None:
    async with engine_for(settings.db.write_url) as engine:
        mailer = Mailer(engine, folder, poll_seconds=0.05)
        task = asyncio.create_task(mailer.run())
        try:
            await eventually(lambda: unsent(settings), lambda n: n == 0, what="every mail sent")
        finally:
            mailer.stop()
            await asyncio.wait_for(task, 10)


async def test_outbox_rows_become_mail_files_exactly_once(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    folder = tmp_path / "mail"
    rows = [outbox_row(n) for n in range(5)]
    async with engine_for(settings.db.write_url) as engine, engine.begin() as conn:
        await conn.execute(insert(mail_outbox), rows)
        seqs = {
            row.mail_id: row.seq
            for row in await conn.execute(select(mail_outbox.c.mail_id, mail_outbox.c.seq))
        }
    names = [f"{seqs[row['mail_id']]:08d}-{row['mail_id']}.eml" for row in rows]
    folder.mkdir()
    (folder / names[0]).write_bytes(b"written before a crash, row never marked sent")

    await run_until_sent(settings, folder)

    assert sorted(path.name for path in folder.iterdir()) == sorted(names)
    for row, name in zip(rows, names, strict=True):
        message = BytesParser(policy=policy.default).parsebytes((folder / name).read_bytes())
        assert message["To"] == row["to_address"]
        assert message["Subject"] == row["subject"]
        assert message["From"] == "Butterfly <no-reply@butterfly.invalid>"
        assert message["Message-ID"] == f"<{row['mail_id']}@butterfly.invalid>"
        assert message.get_content().splitlines() == row["body"].splitlines()
    found = latest_mail_to(folder, "USER3@example.org")
    assert found is not None
    assert found["Subject"] == rows[3]["subject"]

    written = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    later = outbox_row(9)
    async with engine_for(settings.db.write_url) as engine, engine.begin() as conn:
        await conn.execute(insert(mail_outbox), [later])
    await run_until_sent(settings, folder)
    again = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert len(again) == len(written) + 1
    assert {name: again[name] for name in written} == written
    newest = latest_mail_to(folder, later["to_address"])
    assert newest is not None
    assert newest["Subject"] == later["subject"]


# --- the ticket in the mail that confirms a registration ---------------------------------------

SITE = "https://door.example"


def event_record(settings: Settings, event: Event) -> tuple[str, OutgoingRecord]:
    """An event as the registration decider stages it in its outbox (the mail's id is its)."""
    envelope = wrap(
        event,
        message_id=uuid.uuid4(),
        occurred_at=datetime(2027, 1, 10, 9, 0),
        correlation_id=uuid.uuid4(),
        causation_id=uuid.uuid4(),
        key=registration_key(event.convention_id),
        actor="attendee",
    )
    topic = Topics(settings.topic_prefix).registration_events
    return str(envelope.message_id), OutgoingRecord.of(topic, envelope)


def mail_row(mail_id: str, address: str, subject: str) -> dict[str, Any]:
    return {
        "mail_id": mail_id,
        "to_address": address,
        "subject": subject,
        "body": "Hello,\n\nSomething happened.\n",
        "created_at": datetime(2027, 1, 10, 9, 0),
    }


def delivered(folder: Path, address: str) -> EmailMessage:
    found = latest_mail_to(folder, address)
    assert found is not None, address
    return found


async def test_a_mail_that_confirms_a_registration_carries_its_ticket(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    settings = await make_settings()
    keys = parse_keys(TEST_TICKET_KEYS)
    convention = uuid.uuid4()
    at_once, paid, options_paid = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    confirmed = AttendeeRegistered(
        convention_id=convention,
        registration_id=at_once,
        email="free@example.org",
        name="Free",
        badge_type="STD",
        request_hash="h",
    )
    payment = OrderPaid(
        convention_id=convention,
        registration_id=paid,
        order_id=uuid.uuid4(),
        payment_id="pay_1",
        amount_cents=2500,
        currency="EUR",
        confirms_registration=True,
    )
    later_options = payment.model_copy(
        update={"registration_id": options_paid, "confirms_registration": False}
    )
    staged = [event_record(settings, e) for e in (confirmed, payment, later_options)]
    mails = [
        mail_row(staged[0][0], "free@example.org", "You are registered for Door Con"),
        mail_row(staged[1][0], "paid@example.org", "Payment received for Door Con"),
        mail_row(staged[2][0], "options@example.org", "Payment received for Door Con"),
        mail_row(str(uuid.uuid4()), "verify@example.org", "Confirm your e-mail address"),
    ]
    async with engine_for(settings.db.write_url) as engine, engine.begin() as conn:
        await stage(conn, registration_tables.outbox, staged)
        await conn.execute(insert(mail_outbox), mails)
        await conn.execute(
            insert(registration_tables.registrations),
            [
                {
                    "registration_id": str(registration_id),
                    "convention_id": str(convention),
                    "email_key": f"{registration_id}@example.org",
                    "badge_type": "SUPPORTER",
                    "status": "confirmed",
                    "request_hash": "h",
                    "email_hash": hashlib.sha256(str(registration_id).encode()).digest(),
                }
                for registration_id in (paid, options_paid)
            ],
        )

    folder = tmp_path / "mail"
    async with engine_for(settings.db.write_url) as engine:
        mailer = Mailer(engine, folder, tickets=MailTickets(keys, SITE + "/"))
        while await mailer.deliver_once():
            pass

    for address, registration_id, badge_type in (
        ("free@example.org", at_once, "STD"),
        ("paid@example.org", paid, "SUPPORTER"),
    ):
        message = delivered(folder, address)
        [attachment] = list(message.iter_attachments())
        assert attachment.get_content_type() == "image/png"
        assert attachment.get_filename() == "ticket.png"
        token = issue(registration_id, convention, badge_type, 0, keys)
        assert attachment.get_content() == qr_png(token), "the ticket, signed at delivery"
        text = message.get_body(preferencelist=("plain",))
        assert text is not None
        assert f"{SITE}/api/v1/registrations/{registration_id}/ticket.pdf" in text.get_content()
        assert verify(token, public_keys(keys)).serial == 0
    for address in ("options@example.org", "verify@example.org"):
        message = delivered(folder, address)
        assert list(message.iter_attachments()) == [], "no ticket where nothing was confirmed"
        assert not message.is_multipart()
        assert "ticket" not in message.get_content()


async def test_two_mailers_share_the_outbox_each_mail_written_by_one(
    make_settings: StackFactory, tmp_path: Path
) -> None:
    """Each claims its rows with SKIP LOCKED (`BUTTERFLY_REPLICAS=mailer:2`): given folders
    of their own, no mail turns up in both, and none is missing."""
    settings = await make_settings()
    rows = [outbox_row(n) for n in range(60)]
    async with engine_for(settings.db.write_url) as engine:
        async with engine.begin() as conn:
            await conn.execute(insert(mail_outbox), rows)
        folders = (tmp_path / "first", tmp_path / "second")
        mailers = [Mailer(engine, folder, poll_seconds=0.05, batch_size=5) for folder in folders]
        tasks = [asyncio.create_task(mailer.run()) for mailer in mailers]
        try:
            await eventually(lambda: unsent(settings), lambda n: n == 0, what="every mail sent")
        finally:
            for mailer in mailers:
                mailer.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
    written = [{path.name.split("-", 1)[1] for path in folder.iterdir()} for folder in folders]
    assert not written[0] & written[1]
    assert written[0] | written[1] == {f"{row['mail_id']}.eml" for row in rows}
    assert all(written), "both mailers delivered"
