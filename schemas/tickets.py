"""Tickets: what a confirmed registration shows at the door, and how anyone holding the
public key checks it without asking the server.

A ticket is `BT1.<claims>.<signature>`: the claims are compact JSON, base64url without
padding; the signature is Ed25519 over the ASCII bytes `BT1.<claims>`. The claims name the
registration, its convention, its badge type, the key that signed (`kid`) and the ticket's
serial: a transfer gives the registration a new serial, so the ticket the previous holder
kept no longer admits anyone. A cancelled registration's ticket is refused by the decider
(it knows the registration is cancelled), and a station's downloaded ticket list leaves it
out.

Stations verify offline with the public keys (WebCrypto's Ed25519 in the browser); the
gateway verifies before it sends a check-in to be decided.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

PREFIX = "BT1"
MAX_TOKEN_LENGTH = 600


class TicketRefused(ValueError):
    """A token that is not a ticket of ours: `reason` is `malformed`, `unknown_key` or
    `bad_signature` (forged or tampered)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class TicketClaims:
    registration_id: uuid.UUID
    convention_id: uuid.UUID
    badge_type: str
    serial: int
    kid: str

    def as_json(self) -> dict[str, object]:
        return {
            "r": str(self.registration_id),
            "c": str(self.convention_id),
            "b": self.badge_type,
            "s": self.serial,
            "k": self.kid,
        }


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private: Ed25519PrivateKey

    @classmethod
    def from_seed(cls, kid: str, seed_b64: str) -> SigningKey:
        """A key from its 32-byte seed, base64 (standard or url-safe)."""
        try:
            seed = base64.b64decode(seed_b64 + "=" * (-len(seed_b64) % 4), altchars=b"-_")
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"ticket key {kid!r}: the seed is not base64") from exc
        if len(seed) != 32:
            raise ValueError(f"ticket key {kid!r}: the seed must be 32 bytes, not {len(seed)}")
        return cls(kid, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_raw(self) -> bytes:
        return self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_b64(self) -> str:
        """The raw 32-byte public key, base64url: what stations import (WebCrypto `raw`)."""
        return _b64(self.public_raw)


def new_seed() -> str:
    """A fresh random seed for `SigningKey.from_seed`, base64url."""
    key = Ed25519PrivateKey.generate()
    return _b64(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))


def parse_keys(setting: str) -> tuple[SigningKey, ...]:
    """`kid:seed,kid:seed…`: the first key signs new tickets; every key still verifies (so
    tickets signed before a key rotation keep admitting their holders)."""
    keys = []
    for item in setting.split(","):
        item = item.strip()
        if not item:
            continue
        kid, sep, seed = item.partition(":")
        if not sep or not kid or not seed:
            raise ValueError("ticket keys are written kid:seed, separated by commas")
        keys.append(SigningKey.from_seed(kid.strip(), seed.strip()))
    if len({key.kid for key in keys}) != len(keys):
        raise ValueError("ticket key ids must be unique")
    return tuple(keys)


def public_keys(keys: tuple[SigningKey, ...]) -> dict[str, bytes]:
    """What `verify` takes: every key's raw public key by its id."""
    return {key.kid: key.public_raw for key in keys}


def sign(claims: TicketClaims, key: SigningKey) -> str:
    if claims.kid != key.kid:
        raise ValueError("the claims name another key")
    body = _b64(json.dumps(claims.as_json(), separators=(",", ":"), sort_keys=True).encode())
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{_b64(key.private.sign(signed.encode('ascii')))}"


def issue(
    registration_id: uuid.UUID,
    convention_id: uuid.UUID,
    badge_type: str,
    serial: int,
    keys: tuple[SigningKey, ...],
) -> str:
    """A ticket signed with the signing key (the first of `keys`)."""
    if not keys:
        raise ValueError("no ticket key to sign with")
    claims = TicketClaims(registration_id, convention_id, badge_type, serial, keys[0].kid)
    return sign(claims, keys[0])


def verify(token: str, public_keys: dict[str, bytes]) -> TicketClaims:
    """The claims of a ticket signed by one of `public_keys` (kid → raw public key); raises
    `TicketRefused` for anything else."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or not token.isascii():
        raise TicketRefused("malformed", "This is not a Butterfly ticket.")
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise TicketRefused("malformed", "This is not a Butterfly ticket.")
    try:
        raw = json.loads(_unb64(parts[1]))
        signature = _unb64(parts[2])
        claims = TicketClaims(
            registration_id=uuid.UUID(str(raw["r"])),
            convention_id=uuid.UUID(str(raw["c"])),
            badge_type=str(raw["b"]),
            serial=int(raw["s"]),
            kid=str(raw["k"]),
        )
    except (ValueError, KeyError, TypeError, OverflowError, binascii.Error):
        # OverflowError: a serial such as 1e400 (an infinite float) is no integer.
        raise TicketRefused("malformed", "This ticket cannot be read.") from None
    if _b64(signature) != parts[2]:
        # Base64 leaves slack in its last character: one signature, one spelling, so one
        # ticket is one token (a scan's id derives from the token).
        raise TicketRefused("malformed", "This ticket cannot be read.")
    public = public_keys.get(claims.kid)
    if public is None:
        raise TicketRefused("unknown_key", "This ticket was signed with a key we do not know.")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(
            signature, f"{parts[0]}.{parts[1]}".encode("ascii")
        )
    except (InvalidSignature, ValueError):
        raise TicketRefused(
            "bad_signature", "This ticket's signature is wrong: forged or altered."
        ) from None
    return claims


if __name__ == "__main__":
    print(f"k{uuid.uuid4().hex[:8]}:{new_seed()}")
