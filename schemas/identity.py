"""The one definition of who an e-mail address is, and what free text may contain.

Every layer (gateway, deciders, projectors, migrations) calls these functions; nothing else
compares addresses. Key columns store a hash of `email_key`, compared byte for byte, so Python
and MariaDB can never disagree about which two addresses are the same.
"""

from __future__ import annotations

import functools
import hashlib
import re
import unicodedata
from dataclasses import dataclass

import email_validator
from email_validator import EmailNotValidError, ValidatedEmail, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from email_validator.syntax import (
    validate_email_domain_name,
    validate_email_length,
    validate_email_local_part,
)

MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Embeddings, overrides, isolates and marks: they reorder how text around them is shown."""


ASCII_BLANKS = " \t\r\n"
"""What is trimmed before anything is checked: `str.strip()` would also drop control
characters (U+001C to U+001F, U+0085) that must be refused, not hidden."""


class InvalidEmail(ValueError):
    """An address that is not valid, or whose identity is not a valid address itself."""


class InvalidText(ValueError):
    """Free text with characters that have no place in a name or title."""


@dataclass(frozen=True)
class EmailIdentity:
    address: str
    """The address as it is shown back: the validator's normalised form (NFC, domain lower)."""
    key: str
    """The identity: NFKC then case folding of the local part, the domain in its IDNA form."""


def _fold(text: str) -> str:
    """NFKC, case folding, NFKC again: folding can leave text that NFKC would change."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


PLAIN_ADDRESS = re.compile(r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64})@([A-Za-z0-9.-]{1,253})")
"""ASCII, one @, no quotes, brackets or spaces: how nearly every address comes."""


@functools.lru_cache(maxsize=4096)
def _domain_name(domain: str) -> tuple[str, str]:
    """(domain, ascii_domain) as `validate_email` checks and normalises them; few domains
    serve most addresses, so each is checked once."""
    info = validate_email_domain_name(
        domain,
        test_environment=email_validator.TEST_ENVIRONMENT,
        globally_deliverable=email_validator.GLOBALLY_DELIVERABLE,
    )
    return info["domain"], info["ascii_domain"]


def _validate_plain(local: str, domain: str) -> ValidatedEmail:
    """`validate_email` of `local@domain` for a PLAIN_ADDRESS, step for step, without its
    character-by-character search for quotes, brackets and the @-sign (which only finds, for
    such an address, the one @) and with the domain checked once per domain."""
    info = validate_email_local_part(
        local,
        allow_smtputf8=email_validator.ALLOW_SMTPUTF8,
        allow_empty_local=email_validator.ALLOW_EMPTY_LOCAL,
        quoted_local_part=False,
        strict=email_validator.STRICT,
    )
    checked = ValidatedEmail()
    checked.original = f"{local}@{domain}"
    checked.display_name = None
    checked.smtputf8 = info["smtputf8"]
    checked.local_part = info["local_part"]
    checked.ascii_local_part = info["ascii_local_part"]
    if (
        checked.ascii_local_part is not None
        and checked.ascii_local_part.lower() in CASE_INSENSITIVE_MAILBOX_NAMES
        and checked.local_part is not None
    ):
        checked.ascii_local_part = checked.ascii_local_part.lower()
        checked.local_part = checked.local_part.lower()
    checked.domain, checked.ascii_domain = _domain_name(domain)
    checked.normalized = f"{checked.local_part}@{checked.domain}"
    checked.ascii_email = (
        f"{checked.ascii_local_part}@{checked.ascii_domain}"
        if checked.ascii_local_part and checked.ascii_domain
        else None
    )
    validate_email_length(checked)
    return checked


@functools.lru_cache(maxsize=65536)
def email_identity(raw: str) -> EmailIdentity:
    """Validate an address and derive its identity key; raises `InvalidEmail`. Pure, and
    asked several times per registration (gateway, decoding, deciding), so remembered."""
    address = raw.strip(ASCII_BLANKS)
    plain = PLAIN_ADDRESS.fullmatch(address)
    try:
        if plain is not None:
            checked = _validate_plain(plain[1], plain[2])
        else:
            checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from exc
    except UnicodeError as exc:
        raise InvalidEmail("not valid Unicode text") from exc
    domain = checked.ascii_domain.lower()
    if len(checked.normalized) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(f"the address is longer than {MAX_EMAIL_LENGTH} characters")
    if checked.local_part.isascii():
        # Lower case is the whole fold of ASCII, and keeps a valid address valid.
        return EmailIdentity(
            address=checked.normalized, key=f"{checked.local_part.lower()}@{domain}"
        )
    local = _fold(checked.local_part)
    key = f"{local}@{domain}"
    if len(local) > MAX_LOCAL_PART_LENGTH or len(key) > MAX_EMAIL_LENGTH:
        raise InvalidEmail(
            f"the address is too long once normalised ({len(key)} characters, at most "
            f"{MAX_EMAIL_LENGTH}, of which at most {MAX_LOCAL_PART_LENGTH} before the @)"
        )
    try:
        refolded = validate_email(key, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidEmail(f"the address does not normalise to a valid address: {exc}") from exc
    if f"{_fold(refolded.local_part)}@{refolded.ascii_domain.lower()}" != key:
        raise InvalidEmail("the address has no stable normal form")
    return EmailIdentity(address=checked.normalized, key=key)


def email_key(raw: str) -> str:
    """The identity key of an address; raises `InvalidEmail`."""
    return email_identity(raw).key


def identity_hash(*parts: str) -> bytes:
    """32 bytes naming an identity (e.g. convention id and e-mail key) in key columns."""
    return hashlib.sha256("\x00".join(parts).encode()).digest()


def check_text(value: str) -> str:
    """Free text (names, titles): trimmed, with a visible character, and free of control
    characters, lone surrogates, bidirectional controls and line separators; raises
    `InvalidText`."""
    value = value.strip(ASCII_BLANKS)
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Zl", "Zp") or char in BIDI_CONTROLS:
            raise InvalidText(
                f"character U+{ord(char):04X} at position {position} is not allowed "
                f"({_describe(category, char)})"
            )
    value = value.strip()
    if not value:
        raise InvalidText("must not be blank")
    if not any(unicodedata.category(char)[0] in "LNPS" for char in value):
        raise InvalidText("must contain a visible character")
    return value


def _describe(category: str, char: str) -> str:
    if char in BIDI_CONTROLS:
        return "a bidirectional control"
    return {
        "Cc": "a control character",
        "Cs": "a lone surrogate",
    }.get(category, "a line or paragraph separator")
