"""Which request under an idempotency key a registration answers for (`GET ?command_id=`)."""

from __future__ import annotations

import uuid

from gateway.deps import request_command_id
from gateway.registrations import _made_by
from gateway.views import RegistrationView

REGISTRATION = uuid.UUID("7d4f54a6-3c1f-4b55-9a51-2f1f0a1d6a01")


def known(fingerprint: str) -> tuple[RegistrationView, str]:
    view = RegistrationView.model_construct(registration_id=REGISTRATION, status="confirmed")
    return view, fingerprint


def test_the_request_that_made_it_is_answered_with_it() -> None:
    assert _made_by(known("a" * 64), request_command_id(REGISTRATION, "a" * 64))


def test_a_request_without_a_key_names_the_registration_itself() -> None:
    assert _made_by(known("a" * 64), REGISTRATION)


def test_another_body_under_the_same_key_is_not_answered_with_it() -> None:
    # Its own outcome (the key reused) is still to come: the route answers 202 until then.
    assert not _made_by(known("a" * 64), request_command_id(REGISTRATION, "b" * 64))


def test_a_registration_without_a_request_hash_answers_every_command() -> None:
    assert _made_by(known(""), uuid.uuid4())
