"""The account decider's rules, pure."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from consumers.accounts.decider import AccountState, apply, decide
from schemas.accounts import (
    AccountCommand,
    AccountEvent,
    ChangePassword,
    GrantRole,
    RequestPasswordReset,
    ResetPassword,
    RevokeRole,
    Role,
    SignUp,
    VerifyEmail,
)

AT = datetime(2027, 1, 1, 12, 0)
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA"
OTHER_HASH = HASH.replace("aGFz", "b3Ro")


def run(state: AccountState, command: AccountCommand, at: datetime = AT) -> list[str]:
    events: list[AccountEvent] = decide(state, command, at)
    apply(state, command, events, at)
    return [
        e.message_type if e.message_type != "AccountCommandRejected" else f"rejected:{e.reason}"  # type: ignore[attr-defined]
        for e in events
    ]


def token(account_id: uuid.UUID) -> str:
    return f"{account_id}.{uuid.uuid4().hex}"


def signed_up(state: AccountState, email: str = "Ada@Example.org") -> tuple[uuid.UUID, str]:
    account_id = uuid.uuid4()
    code = token(account_id)
    command = SignUp(
        account_id=account_id,
        email=email,
        name="Ada",
        password_hash=HASH,
        verification_token=code,
    )
    assert run(state, command) == ["AccountCreated", "VerificationMailed"]
    return account_id, code


def test_one_account_per_email_identity_and_a_retried_sign_up_changes_nothing() -> None:
    state = AccountState()
    account_id, code = signed_up(state)
    again = SignUp(
        account_id=account_id,
        email="ada@example.org",
        name="Ada",
        password_hash=HASH,
        verification_token=code,
    )
    assert run(state, again) == []
    other = SignUp(
        account_id=uuid.uuid4(),
        email="ADA@example.org",
        name="Eve",
        password_hash=HASH,
        verification_token=token(uuid.uuid4()),
    )
    assert run(state, other) == ["rejected:email_taken"]


def test_the_mailed_token_verifies_once_before_it_expires() -> None:
    state = AccountState()
    account_id, code = signed_up(state)
    assert run(state, VerifyEmail(account_id=account_id, token=token(account_id))) == [
        "rejected:invalid_token"
    ]
    assert run(state, VerifyEmail(account_id=account_id, token=code)) == ["EmailVerified"]
    assert state.accounts[account_id].verified
    assert run(state, VerifyEmail(account_id=account_id, token=code)) == [
        "rejected:already_verified"
    ]
    assert run(state, VerifyEmail(account_id=account_id, token=token(account_id))) == [
        "rejected:invalid_token"
    ]

    late_state = AccountState()
    late_id, late_code = signed_up(late_state, "late@example.org")
    late = AT + timedelta(days=8)
    assert run(late_state, VerifyEmail(account_id=late_id, token=late_code), late) == [
        "rejected:token_expired"
    ]


def test_a_password_reset_needs_its_token_and_changes_the_hash() -> None:
    state = AccountState()
    account_id, _ = signed_up(state)
    reset_code = token(account_id)
    assert run(state, RequestPasswordReset(account_id=account_id, reset_token=reset_code)) == [
        "PasswordResetMailed"
    ]
    assert run(
        state,
        ResetPassword(account_id=account_id, token=token(account_id), password_hash=OTHER_HASH),
    ) == ["rejected:invalid_token"]
    assert run(
        state, ResetPassword(account_id=account_id, token=reset_code, password_hash=OTHER_HASH)
    ) == ["PasswordChanged", "EmailVerified"]
    assert state.accounts[account_id].password_hash == OTHER_HASH
    assert run(
        state, ResetPassword(account_id=account_id, token=reset_code, password_hash=HASH)
    ) == ["rejected:invalid_token"]


def test_changing_the_password_is_an_event_without_the_hash() -> None:
    state = AccountState()
    account_id, _ = signed_up(state)
    events = decide(state, ChangePassword(account_id=account_id, password_hash=OTHER_HASH), AT)
    assert [e.message_type for e in events] == ["PasswordChanged"]
    assert "argon2" not in events[0].model_dump_json()


def test_roles_are_granted_once_scoped_as_their_kind_requires_and_revoked() -> None:
    state = AccountState()
    account_id, _ = signed_up(state)
    convention = uuid.uuid4()
    assert run(state, GrantRole(account_id=account_id, role=Role.STAFF)) == [
        "rejected:scope_required"
    ]
    assert run(
        state, GrantRole(account_id=account_id, role=Role.ADMIN, convention_id=convention)
    ) == ["rejected:scope_required"]
    staff = GrantRole(account_id=account_id, role=Role.STAFF, convention_id=convention)
    assert run(state, staff) == ["RoleGranted"]
    assert run(state, staff) == []
    revoke = RevokeRole(account_id=account_id, role=Role.STAFF, convention_id=convention)
    assert run(state, revoke) == ["RoleRevoked"]
    assert run(state, revoke) == []
    assert run(state, GrantRole(account_id=uuid.uuid4(), role=Role.ADMIN)) == [
        "rejected:unknown_account"
    ]
