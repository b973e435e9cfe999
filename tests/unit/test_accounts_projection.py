"""The pure parts of the accounts projector and the mailer: which records are set aside,
which rows each event queues, which command an outcome names, and what a mail file holds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiokafka.structs import ConsumerRecord

from consumers.accounts.mailer import Mail, as_message, latest_mail_to, write_atomically
from projections.accounts import projector as p
from projections.accounts.projector import (
    UnprojectableEvent,
    Writes,
    command_of,
    decode_events,
    project_event,
    scope_of,
)
from schemas.accounts import (
    AccountCommandRejected,
    AccountCreated,
    AccountMessage,
    AccountRejection,
    EmailVerified,
    PasswordChanged,
    PasswordResetMailed,
    Role,
    RoleGranted,
    RoleRevoked,
    SignUp,
    VerificationMailed,
    account_envelope,
)
from schemas.envelope import Envelope, UndecodableMessage

ACCOUNT = uuid.UUID("00000000-0000-4000-8000-000000000001")
CONVENTION = uuid.UUID("00000000-0000-4000-8000-0000000000c0")
COMMAND = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
AT = datetime(2027, 1, 10, 9, 0, 0, 123456, tzinfo=UTC)
KEY = "ada@example.org"


def envelope(message: AccountMessage, *, causation: uuid.UUID | None = COMMAND) -> Envelope:
    return account_envelope(
        message,
        message_id=uuid.uuid4(),
        occurred_at=AT,
        correlation_id=uuid.uuid4(),
        causation_id=causation,
        email_key=KEY,
        actor="admin:root",
    )


def record(value: bytes, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic="t.accounts.events",
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=KEY.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(KEY),
        serialized_value_size=len(value),
        headers=[],
    )


def created(**changes: Any) -> AccountCreated:
    values: dict[str, Any] = {
        "account_id": ACCOUNT,
        "email": "Ada@Example.org",
        "email_key": KEY,
        "name": "Ada",
    }
    return AccountCreated(**(values | changes))


def queued(*messages: AccountMessage, causation: uuid.UUID | None = COMMAND) -> Writes:
    writes = Writes()
    for message in messages:
        e = envelope(message, causation=causation)
        _, event = decode_events([record(e.encode())])[0][0]
        project_event(writes, e, event)
    return writes


def rows_of(writes: Writes, statement: object) -> list[dict[str, Any]]:
    return [row for s, rows in writes.steps if s is statement for row in rows]


def test_account_events_decode_and_anything_else_is_set_aside() -> None:
    good = envelope(created())
    command = envelope(
        SignUp(
            account_id=ACCOUNT,
            email="ada@example.org",
            name="Ada",
            password_hash="$argon2id$v=19$m=65536,t=3,p=4$abcdefgh",
            verification_token="t" * 32,
        )
    )
    too_long = envelope(created(name="x" * 201))
    records = [
        record(good.encode(), 0),
        record(b"\x00 not json", 1),
        record(command.encode(), 2),
        record(too_long.encode(), 3),
    ]
    events, dead = decode_events(records)
    assert [e.message_id for e, _ in events] == [good.message_id]
    assert [d.record.offset for d in dead] == [1, 2, 3]
    assert isinstance(dead[0].error, UndecodableMessage)
    assert "command" in str(dead[1].error)
    assert isinstance(dead[2].error, UnprojectableEvent)


def test_account_created_makes_an_unverified_account_with_every_session_good() -> None:
    writes = queued(created())
    assert rows_of(writes, p._INSERT_ACCOUNT) == [
        {
            "account_id": str(ACCOUNT),
            "email": "Ada@Example.org",
            "email_key": KEY,
            "name": "Ada",
            "verified": False,
            "sessions_valid_after": None,
            "last_mailed_at": None,
            "created_at": AT.replace(tzinfo=None),
        }
    ]
    assert rows_of(writes, p._INSERT_ACCEPTED)[0]["command"] == "SignUp"
    assert len(rows_of(writes, p._INSERT_APPLIED)) == 1


def test_verification_password_and_mails_update_the_account() -> None:
    writes = queued(
        VerificationMailed(account_id=ACCOUNT),
        EmailVerified(account_id=ACCOUNT, email_key=KEY),
        PasswordChanged(account_id=ACCOUNT, reset=True),
        PasswordResetMailed(account_id=ACCOUNT),
    )
    naive = AT.replace(tzinfo=None)
    assert rows_of(writes, p._VERIFY) == [{"b_id": str(ACCOUNT)}]
    assert rows_of(writes, p._END_SESSIONS) == [{"b_id": str(ACCOUNT), "b_at": naive}]
    assert rows_of(writes, p._MAILED) == [{"b_id": str(ACCOUNT), "b_at": naive}] * 2


def test_role_changes_keep_the_current_roles_and_an_audit_trail() -> None:
    grant = RoleGranted(account_id=ACCOUNT, role=Role.STAFF, convention_id=CONVENTION)
    revoke = RoleRevoked(account_id=ACCOUNT, role=Role.ADMIN)
    writes = queued(grant, revoke)
    assert rows_of(writes, p._GRANT) == [
        {
            "account_id": str(ACCOUNT),
            "role": "staff",
            "scope": str(CONVENTION),
            "granted_at": AT.replace(tzinfo=None),
        }
    ]
    assert rows_of(writes, p._REVOKE) == [
        {"b_account_id": str(ACCOUNT), "b_role": "admin", "b_scope": ""}
    ]
    audit = rows_of(writes, p._AUDIT)
    assert [(a["role"], a["scope"], a["granted"], a["actor"]) for a in audit] == [
        ("staff", str(CONVENTION), True, "admin:root"),
        ("admin", "", False, "admin:root"),
    ]


def test_a_rejection_is_an_outcome_of_the_command_that_caused_it() -> None:
    rejected = AccountCommandRejected(
        account_id=ACCOUNT, command="SignUp", reason=AccountRejection.EMAIL_TAKEN
    )
    writes = queued(rejected)
    assert rows_of(writes, p._UPSERT_REJECTED) == [
        {
            "command_id": str(COMMAND),
            "account_id": str(ACCOUNT),
            "command": "SignUp",
            "outcome": "rejected",
            "reason": "email_taken",
            "recorded_at": AT.replace(tzinfo=None),
        }
    ]
    assert rows_of(queued(rejected, causation=None), p._UPSERT_REJECTED) == []


def test_command_names_and_scopes() -> None:
    assert command_of(created()) == "SignUp"
    assert command_of(VerificationMailed(account_id=ACCOUNT)) == "ResendVerification"
    assert command_of(PasswordChanged(account_id=ACCOUNT)) == "ChangePassword"
    assert command_of(PasswordChanged(account_id=ACCOUNT, reset=True)) == "ResetPassword"
    assert command_of(RoleRevoked(account_id=ACCOUNT, role=Role.ANALYST)) == "RevokeRole"
    assert scope_of(None) == ""
    assert scope_of(CONVENTION) == str(CONVENTION)


def mail(seq: int, to: str = "ada@example.org", subject: str = "Verify") -> Mail:
    return Mail(
        seq=seq,
        mail_id=str(uuid.UUID(int=seq)),
        to_address=to,
        subject=subject,
        body="Open https://butterfly.invalid/verify?token=abc\n",
        created_at=datetime(2027, 1, 10, 9, 0, 0),
    )


def test_a_mail_is_an_rfc_5322_message_whose_headers_cannot_be_injected() -> None:
    message = as_message(mail(7, subject="Hello\r\nBcc: victim@example.org"))
    parsed = BytesParser(policy=policy.default).parsebytes(message.as_bytes())
    assert parsed["From"] == "Butterfly <no-reply@butterfly.invalid>"
    assert parsed["To"] == "ada@example.org"
    assert parsed["Subject"] == "Hello Bcc: victim@example.org"
    assert parsed["Bcc"] is None
    assert parsed["Message-ID"] == f"<{uuid.UUID(int=7)}@butterfly.invalid>"
    assert parsed["Date"].datetime == datetime(2027, 1, 10, 9, 0, 0, tzinfo=UTC)
    assert mail(7).file_name == f"00000007-{uuid.UUID(int=7)}.eml"


def test_latest_mail_to_finds_the_newest_mail_of_an_identity(tmp_path: Path) -> None:
    for item in (mail(1, subject="first"), mail(2, to="bob@example.org"), mail(3, subject="last")):
        write_atomically(tmp_path, item.file_name, as_message(item).as_bytes())
    found = latest_mail_to(tmp_path, "ADA@example.org")
    assert found is not None
    assert found["Subject"] == "last"
    assert latest_mail_to(tmp_path, "nobody@example.org") is None
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        mail(n).file_name for n in (1, 2, 3)
    ]


def test_a_mailed_code_stays_on_one_line_in_the_file() -> None:
    code = f"{uuid.uuid4()}.{'A' * 43}="
    mail = Mail(
        seq=1,
        mail_id=str(uuid.uuid4()),
        to_address="ada@example.org",
        subject="Confirm",
        body=f"Hello,\n\n    {code}\n",
        created_at=datetime(2027, 1, 1),
    )
    raw = bytes(as_message(mail)).decode()
    assert f"    {code}" in raw.splitlines()
