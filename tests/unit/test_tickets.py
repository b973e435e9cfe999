"""Tickets: what one signs, anyone holding the public keys verifies, and anything else is
refused with its reason: `malformed`, `unknown_key` or `bad_signature`."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid

import pytest

from schemas.tickets import (
    MAX_TOKEN_LENGTH,
    SigningKey,
    TicketClaims,
    TicketRefused,
    issue,
    new_seed,
    parse_keys,
    public_keys,
    sign,
    verify,
)

OLD = SigningKey.from_seed("old", new_seed())
NEW = SigningKey.from_seed("new", new_seed())
REGISTRATION = uuid.UUID("0b9f7a52-6d1e-4c53-9a4e-2b7c55c3b0a1")
CONVENTION = uuid.UUID("7c0e3b1d-1111-4c53-9a4e-2b7c55c3b0a1")


def claims(key: SigningKey = OLD, serial: int = 0) -> TicketClaims:
    return TicketClaims(REGISTRATION, CONVENTION, "STD", serial, key.kid)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def refusal(token: str, keys: dict[str, bytes] | None = None) -> str:
    with pytest.raises(TicketRefused) as refused:
        verify(token, public_keys((OLD,)) if keys is None else keys)
    return refused.value.reason


def test_a_signed_ticket_verifies_to_its_claims() -> None:
    token = sign(claims(serial=3), OLD)
    assert token.startswith("BT1.")
    assert verify(token, public_keys((OLD,))) == claims(serial=3)
    assert len(token) < MAX_TOKEN_LENGTH


def test_the_claims_are_compact_json_as_the_contract_spells_them() -> None:
    body = json.loads(unb64(sign(claims(), OLD).split(".")[1]))
    assert body == {"r": str(REGISTRATION), "c": str(CONVENTION), "b": "STD", "s": 0, "k": "old"}


def test_tampered_claims_are_a_bad_signature() -> None:
    prefix, body, signature = sign(claims(serial=0), OLD).split(".")
    edited = json.loads(unb64(body)) | {"s": 1}
    tampered = b64(json.dumps(edited, separators=(",", ":"), sort_keys=True).encode())
    assert refusal(f"{prefix}.{tampered}.{signature}") == "bad_signature"


def test_a_flipped_signature_byte_is_a_bad_signature() -> None:
    prefix, body, signature = sign(claims(), OLD).split(".")
    raw = bytearray(unb64(signature))
    raw[10] ^= 0x01
    assert refusal(f"{prefix}.{body}.{b64(bytes(raw))}") == "bad_signature"


def test_a_key_of_the_same_name_that_is_not_ours_is_a_bad_signature() -> None:
    foreign = SigningKey.from_seed("old", new_seed())
    assert refusal(sign(claims(foreign), foreign)) == "bad_signature"


def test_a_key_id_we_do_not_know_is_an_unknown_key() -> None:
    stranger = SigningKey.from_seed("stranger", new_seed())
    assert refusal(sign(claims(stranger), stranger)) == "unknown_key"


def unsigned(claims_json: str) -> str:
    return f"BT1.{b64(claims_json.encode())}.{b64(bytes(64))}"


GOOD_IDS = f'"r":"{REGISTRATION}","c":"{CONVENTION}"'


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "BT1",
        "BT1..",
        "BT2.e30.AAAA",
        "BT1.not base64!.AAAA",
        "BT1.é.AAAA",
        "BT1.a.b.c",
        unsigned("[1, 2]"),
        unsigned("not json"),
        unsigned('"a string"'),
        unsigned('{"r":"x","c":"y","b":"STD","s":0,"k":"old"}'),
        unsigned("{" + GOOD_IDS + ',"b":"STD","k":"old"}'),
        unsigned("{" + GOOD_IDS + ',"b":"STD","s":1e400,"k":"old"}'),
        unsigned("{" + GOOD_IDS + ',"b":"STD","s":"many","k":"old"}'),
        "x" * (MAX_TOKEN_LENGTH + 1),
    ],
    ids=lambda garbage: repr(garbage[:24]),
)
def test_garbage_is_malformed(garbage: str) -> None:
    assert refusal(garbage) == "malformed"


def test_an_oversize_token_is_malformed_even_when_signed() -> None:
    long_badge = TicketClaims(REGISTRATION, CONVENTION, "B" * MAX_TOKEN_LENGTH, 0, "old")
    assert refusal(sign(long_badge, OLD)) == "malformed"


def test_a_signature_spelled_another_way_is_malformed() -> None:
    """Base64's last character has slack bits: one ticket, one spelling."""
    prefix, body, signature = sign(claims(), OLD).split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(signature[-1])
    respelled = signature[:-1] + alphabet[last ^ 0x01]
    assert unb64(respelled) == unb64(signature)
    assert refusal(f"{prefix}.{body}.{respelled}") == "malformed"


def test_after_a_rotation_the_old_key_still_verifies_and_the_new_one_signs() -> None:
    new, old = (b64(key.private.private_bytes_raw()) for key in (NEW, OLD))
    setting = f"new:{new},old:{old}"
    keys = parse_keys(setting)
    assert [key.kid for key in keys] == ["new", "old"]
    mailed_before = sign(claims(OLD), OLD)
    issued_now = issue(REGISTRATION, CONVENTION, "STD", 0, keys)
    assert verify(issued_now, public_keys(keys)).kid == "new"
    assert verify(mailed_before, public_keys(keys)) == claims(OLD)
    assert refusal(issued_now, public_keys((OLD,))) == "unknown_key"


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("nocolon", "kid:seed"),
        ("a:" + b64(b"short"), "32 bytes"),
        ("a:!!!!", "32 bytes"),
        (f"a:{new_seed()},a:{new_seed()}", "unique"),
    ],
    ids=["no-colon", "short-seed", "not-base64", "same-kid-twice"],
)
def test_bad_key_settings_are_refused(setting: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        parse_keys(setting)


def test_no_keys_set_is_no_keys_and_nothing_signs() -> None:
    assert parse_keys("") == ()
    with pytest.raises(ValueError, match="no ticket key"):
        issue(REGISTRATION, CONVENTION, "STD", 0, ())


def test_the_module_prints_a_new_key() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "schemas.tickets"], capture_output=True, text=True, check=True
    ).stdout.strip()
    [key] = parse_keys(printed)
    assert len(key.public_raw) == 32
