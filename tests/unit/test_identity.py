"""Who an e-mail address is, and what free text may contain: `schemas.identity`, pure."""

from __future__ import annotations

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.identity import (
    MAX_LOCAL_PART_LENGTH,
    PLAIN_ADDRESS,
    InvalidEmail,
    InvalidText,
    check_text,
    email_identity,
    email_key,
    identity_hash,
)
from schemas.identity import _validate_plain as _validate_plain


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("Jose@Example.ORG", "jose@example.org"),
        ("JOSE@EXAMPLE.ORG", "jose@example.org"),
        ("\uff4a\uff4f\uff53\uff45@example.org", "jose@example.org"),  # full-width jose
        ("\ufb01x@example.org", "fix@example.org"),  # the ligature ﬁ
        ("jose\u0301@example.org", "jos\u00e9@example.org"),  # e + combining acute == é
        ("Jos\u00c9@example.org", "jos\u00e9@example.org"),
        ("stra\u00dfe@example.org", "strasse@example.org"),  # ß folds to ss
        ("STRA\u1e9eE@example.org", "strasse@example.org"),  # capital ẞ too
        ("a@b\u00fccher.example", "a@xn--bcher-kva.example"),
        ("a@B\u00dcCHER.example", "a@xn--bcher-kva.example"),
        ("a@XN--BCHER-KVA.example", "a@xn--bcher-kva.example"),
        ("  ada@example.org \t", "ada@example.org"),
    ],
)
def test_addresses_that_are_the_same_person_have_the_same_key(one: str, other: str) -> None:
    assert email_key(one) == email_key(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("jose@example.org", "jos\u00e9@example.org"),  # accents are not dropped
        ("ada@example.org", "ada@example.com"),
        ("ada@example.org", "ada.lovelace@example.org"),
        ("ada+con@example.org", "ada@example.org"),  # sub-addresses are distinct mailboxes
    ],
)
def test_different_addresses_have_different_keys(one: str, other: str) -> None:
    assert email_key(one) != email_key(other)


def test_the_key_is_the_folded_local_part_and_the_ascii_domain() -> None:
    assert email_key("  Stra\u00dfe@B\u00dcCHER.Example ") == "strasse@xn--bcher-kva.example"


def test_the_shown_address_keeps_what_the_person_typed_but_the_key_is_normal() -> None:
    identity = email_identity("\uff4a\uff4f\uff53\uff45@example.org")
    assert identity.key == "jose@example.org"
    assert email_key(identity.address) == identity.key


def test_a_local_part_that_grows_past_64_when_normalised_is_refused() -> None:
    # U+FDFA is one character that NFKC expands to 18: four of them fit before, not after.
    local = "\ufdfa" * 4
    assert len(local) <= MAX_LOCAL_PART_LENGTH
    with pytest.raises(InvalidEmail, match="too long"):
        email_key(f"{local}@example.org")


def test_a_local_part_that_normalises_into_a_second_at_sign_is_refused() -> None:
    # U+FF20 (full-width @) becomes "@" under NFKC: the key would hold two @.
    with pytest.raises(InvalidEmail):
        email_key("a\uff20b@example.org")


@pytest.mark.parametrize(
    "raw",
    [
        "a\x00b@example.org",
        "a\x07b@example.org",
        "a\nb@example.org",
        "ada@example.org\x00",
        "a\ud800b@example.org",  # a lone surrogate
        "a\u202eb@example.org",
        "",
        "   ",
        "no-at-sign",
        "@example.org",
        "ada@",
    ],
)
def test_addresses_that_are_not_addresses_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        email_key(raw)


def test_invalid_email_is_a_value_error() -> None:
    assert issubclass(InvalidEmail, ValueError)


@pytest.mark.parametrize(
    "raw",
    [
        "Jose@Example.org",
        "\uff4a\uff4f\uff53\uff45@example.org",
        "\ufb01@example.org",
        "jose\u0301@example.org",
        "stra\u00dfe@example.org",
        "a@B\u00dcCHER.example",
        "\u2126mega@example.org",  # the Ohm sign
        "\u017fam@example.org",  # the long s
    ],
)
def test_the_key_is_idempotent(raw: str) -> None:
    key = email_key(raw)
    assert email_key(key) == key


LOCAL_ALPHABET = (
    "aAzZ09.+-_"
    "\u00e9\u00c9e\u0301\u0308"  # é É, combining acute and diaeresis
    "\u00df\u1e9e\ufb01\ufb03"  # ß ẞ ﬁ ﬃ
    "\uff4a\uff2a"  # full-width j J
    "\u2126\u212a\u017f\u0130\u0131"  # Ohm, Kelvin, long s, dotted I, dotless i
    "\u03a3\u03c3\u03c2"  # capital, small and final sigma
    "\u01c4\u01c5\u00b5"  # DZ caron (upper and title case), micro
    "\u2160\u00aa\u212b\u00c5"  # roman one, ordinal a, Angstrom sign, A ring
)
DOMAINS = (
    "example.org",
    "EXAMPLE.ORG",
    "b\u00fccher.example",
    "B\u00dcCHER.example",
    "xn--bcher-kva.example",
    "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.org",  # full-width example
    "\u65e5\u672c.jp",
)


@st.composite
def addresses(draw: st.DrawFn) -> str:
    local = draw(st.text(alphabet=LOCAL_ALPHABET, min_size=1, max_size=16))
    padding = draw(st.sampled_from(["", " ", "\t", "  "]))
    return f"{padding}{local}@{draw(st.sampled_from(DOMAINS))}{padding}"


def _key_or_none(raw: str) -> str | None:
    try:
        return email_key(raw)
    except InvalidEmail:
        return None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(addresses())
def test_normalising_a_key_again_changes_nothing(raw: str) -> None:
    key = _key_or_none(raw)
    if key is None:
        return
    assert email_key(key) == key


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(addresses())
def test_the_shown_address_is_the_same_person(raw: str) -> None:
    key = _key_or_none(raw)
    if key is None:
        return
    assert email_key(email_identity(raw).address) == key


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_text_either_has_a_stable_key_or_is_refused(raw: str) -> None:
    key = _key_or_none(raw)
    if key is not None:
        assert email_key(key) == key


# check_text ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "char",
    [
        "\u202e",  # right-to-left override
        "\u2066",  # left-to-right isolate
        "\u200f",  # right-to-left mark
        "\u061c",  # Arabic letter mark
        "\x00",
        "\x07",
        "\x1b",
        "\x7f",
        "\n",
        "\u2028",  # line separator
        "\u2029",  # paragraph separator
        "\ud800",  # a lone surrogate
    ],
)
def test_free_text_refuses_controls_and_separators(char: str) -> None:
    with pytest.raises(InvalidText, match=f"U\\+{ord(char):04X}"):
        check_text(f"Ada{char}Lovelace")


@pytest.mark.parametrize(
    "name",
    [
        "Ada Lovelace",
        "Ada \U0001f98b Lovelace",  # emoji
        "\U0001f469\u200d\U0001f4bb",  # a ZWJ sequence is not a control
        "\u5c71\u7530\u592a\u90ce",  # CJK
        "\u0645\u062d\u0645\u062f",  # Arabic letters
        "\u05d3\u05d5\u05d3",  # Hebrew letters
        "Jos\u00e9 \u0645\u062d\u0645\u062f",  # mixed directions without controls
        "O'Brien-Smith",
    ],
)
def test_free_text_accepts_names_from_everywhere(name: str) -> None:
    assert check_text(name) == name


def test_free_text_is_trimmed() -> None:
    assert check_text("  \tAda Lovelace \u3000") == "Ada Lovelace"


@pytest.mark.parametrize("blank", ["", " ", "\t\n ", "\u3000"])
def test_blank_text_is_refused(blank: str) -> None:
    with pytest.raises(InvalidText, match="blank"):
        check_text(blank)


def test_invalid_text_is_a_value_error() -> None:
    assert issubclass(InvalidText, ValueError)


# identity_hash ------------------------------------------------------------------------------


def test_the_identity_hash_is_32_bytes_and_stable() -> None:
    digest = identity_hash("00000000-0000-0000-0000-0000000000c1", "ada@example.org")
    assert isinstance(digest, bytes)
    assert len(digest) == 32
    assert digest == identity_hash("00000000-0000-0000-0000-0000000000c1", "ada@example.org")


def test_the_identity_hash_respects_part_boundaries() -> None:
    assert identity_hash("a", "bc") != identity_hash("ab", "c")
    assert identity_hash("abc") != identity_hash("a", "bc")
    assert identity_hash("a", "") != identity_hash("a")


def test_the_identity_hash_of_different_keys_differs() -> None:
    assert identity_hash(email_key("jose@example.org")) != identity_hash(
        email_key("jos\u00e9@example.org")
    )
    assert identity_hash(email_key("JOSE@example.org")) == identity_hash(
        email_key("jose@example.org")
    )


@pytest.mark.parametrize("invisible", ["\u200b", "\ufeff", "\u206b", "\u200d\u200d", "\u0301"])
def test_text_with_nothing_visible_is_refused(invisible: str) -> None:
    with pytest.raises(InvalidText, match="visible"):
        check_text(invisible)


@pytest.mark.parametrize("hidden", ["\x1c", "\x1f", "\x85"])
def test_control_characters_at_the_edges_are_refused_not_trimmed(hidden: str) -> None:
    with pytest.raises(InvalidEmail):
        email_key(f"{hidden}ada@x.example")
    with pytest.raises(InvalidText):
        check_text(f"{hidden}Ada")


def test_an_address_with_blanks_around_it_counts_its_length_without_them() -> None:
    local, domain = "a" * 64, ".".join(["b" * 60, "c" * 60, "d" * 59, "example"])
    address = f"{local}@{domain}"
    assert len(address) <= 254
    assert email_key(f"  {address}  ") == email_key(address)


PLAIN_EDGES = [
    "ada@example.org",
    "Postmaster@Example.ORG",
    "ABUSE@example.org",
    "a.b.c@x.example",
    ".ada@example.org",
    "ada.@example.org",
    "a..b@example.org",
    "ada@localhost",
    "ada@example",
    "ada@example.test",
    "ada@example.invalid",
    "ada@example.local",
    "ada@123.456",
    "ada@-example.org",
    "ada@example-.org",
    "ada@exa_mple.org",
    "ada@example..org",
    "ada@.example.org",
    "ada@example.org.",
    "ada@xn--bcher-kva.example",
    "ada@xn--zz.example",
    "ada@example.o",
    "ada@example.123",
    "a" * 64 + "@example.org",
    "a" * 65 + "@example.org",
    "ada@" + "a" * 63 + ".org",
    "ada@" + "a" * 64 + ".org",
    "a" * 60 + "@" + ".".join(["b" * 60] * 3) + ".org",
    "a" * 64 + "@" + ".".join(["b" * 61] * 3) + ".org",
    "!#$%&'*+/=?^_`{|}~-@example.org",
]


def _full(address: str) -> tuple[str, str, str | None] | str:
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return checked.normalized, checked.ascii_domain, checked.ascii_email


def _plain(address: str) -> tuple[str, str, str | None] | str:
    """The fast path's answer, where it applies (elsewhere the validator itself answers)."""
    plain = PLAIN_ADDRESS.fullmatch(address)
    if plain is None:
        return _full(address)
    try:
        checked = _validate_plain(plain[1], plain[2])
    except EmailNotValidError as exc:
        return str(exc)
    return checked.normalized, checked.ascii_domain, checked.ascii_email


@pytest.mark.parametrize("address", PLAIN_EDGES)
def test_plain_addresses_are_validated_exactly_as_the_validator_does(address: str) -> None:
    assert _plain(address) == _full(address)


PLAIN_LOCAL = st.text("abcXYZ019.!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=70)
PLAIN_DOMAIN = st.text("abcxyz019.-", min_size=1, max_size=80)


@given(PLAIN_LOCAL, PLAIN_DOMAIN)
def test_any_plain_address_gets_the_validators_own_answer(local: str, domain: str) -> None:
    address = f"{local}@{domain}"
    assert _plain(address) == _full(address)
