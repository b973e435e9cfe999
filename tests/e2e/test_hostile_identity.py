"""Hostile e-mail identities through the running system: gateway, broker, decider, MariaDB
and projector, each its own process.

One crafted pair of addresses (`jose@…` then `josé@…`) once stopped the decider for good:
MariaDB's collation called them equal, Python did not. `schemas.identity.email_key` is now
the one definition of who an address is. These tests check that the whole pipeline agrees
with it, for addresses built to collide (case, full-width forms, NFC/NFD, ligatures, ß/ẞ,
final sigma, dotted and dotless I, Cherokee, Kelvin sign, astral letters, IDN domains,
surrounding white space) and for addresses that must be refused (control, zero-width and
bidi characters, lone surrogates, combining marks with nothing to combine with, local parts
or whole addresses that outgrow 64 / 254 characters once normalised, a full-width at-sign):

- every request is answered 201, 409 or 422 (400 only when the JSON body carries a lone
  surrogate: the body is then not valid Unicode text), never 5xx nor 202, and every 4xx is
  problem details;
- the gateway refuses an address (422, naming the field `email`) if and only if `email_key`
  raises `InvalidEmail`, or the raw string, white space included, is outside the body's
  3..320 length bounds; likewise a name iff `check_text`
  raises `InvalidText` or it is outside 1..200;
- a second address is refused as `already_registered` if and only if its `email_key` equals
  the first's, and confirmed otherwise, whether the two are sent one after the other (the
  decider finds the first in MariaDB) or at once (often one decider batch: it finds the first
  in memory; then exactly one of a colliding pair is confirmed);
- a confirmed registration shows back the validator's normalised address and trimmed name,
  after a round trip through MariaDB;
- afterwards the decider still decides, `/health` answers 200 and no request was
  dead-lettered.

How Hypothesis runs here: pytest-asyncio 1.x substitutes an `@given`-decorated coroutine
test (`AsyncHypothesisTest`) and runs each example's coroutine on the test's event loop,
which is the session loop the `stack` fixture lives on. So `@given` on an `async def` test
works as is, and Hypothesis generates, replays and shrinks as usual; no `find()` or
`st.data()` work-around is needed. Each example gets a fresh random domain label (from
`uuid4`, not from Hypothesis) so that examples never collide with each other on the one
shared open convention; the rendered addresses and answers are recorded with `note()`, so a
failure shows the exact strings sent.

Bodies are encoded with `json.dumps(ensure_ascii=True)` so that lone surrogates travel as
`\\udXXX` escapes instead of making the client's encoder fail; expectations are computed on
what the server decodes (`json.loads` of the same bytes).
"""

from __future__ import annotations

import asyncio
import json
import string
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, given, note, settings
from hypothesis import strategies as st

from schemas.identity import InvalidEmail, InvalidText, check_text, email_identity, email_key
from tests.e2e.conftest import Stack
from tests.e2e.test_registration_http import create_open_convention

pytestmark = pytest.mark.e2e

QUOTA = 100_000
ANSWERS = {201, 409, 422}

# --- what the server is expected to do -----------------------------------------------------


def _has_lone_surrogate(text: str) -> bool:
    return any(unicodedata.category(char) == "Cs" for char in text)


def expected_key(raw: str) -> str | None:
    """The identity key the gateway should accept the address under, or None if it must
    refuse it. The request body's own length bounds (3..320 as sent) come first; the identity
    checks 254 once trimmed and normalised. Any exception other than `InvalidEmail`
    propagates and fails the test, as it would be a 5xx at the gateway."""
    if not 3 <= len(raw) <= 320:
        return None
    try:
        return email_key(raw)
    except InvalidEmail:
        return None


def name_is_valid(name: str) -> bool:
    if not 1 <= len(name) <= 200:
        return False
    try:
        check_text(name)
    except InvalidText:
        return False
    return True


# --- strategies ----------------------------------------------------------------------------

FULL_WIDTH = str.maketrans({chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)})
LIGATURES = (
    ("ffi", "\ufb03"),
    ("ffl", "\ufb04"),
    ("ff", "\ufb00"),
    ("fi", "\ufb01"),
    ("fl", "\ufb02"),
    ("st", "\ufb06"),
)
UNLIGATE = str.maketrans({lig: plain for plain, lig in LIGATURES})
SPECIALS = (
    "éèêëàçñøåæœüö"  # precomposed accents
    "ßẞ"  # sharp s, small and capital
    "\ufb01\ufb03\ufb00\ufb06"  # ligatures fi, ffi, ff, st
    "σςΣ"  # sigma, final sigma, capital sigma
    "İı"  # dotted capital I, dotless small i
    "Ꭰᏸꭰ"  # Cherokee capital and small letters
    "ǅǄǆ"  # Latin titlecase digraph
    "\u212a\u212b\u00b5\u017f"  # Kelvin sign, Angstrom sign, micro sign, long s
    "①ℌ"  # circled digit, black-letter H
    "ｶﾞ"  # half-width katakana and voiced mark: NFKC composes them into one letter
    "\u0958"  # Devanagari QA: NFC decomposes it
    "\ufdfa"  # grows to 18 characters under NFKC
    "\U0001d41a\U0001d504\U00010400\U0001f600"  # astral: math bold a, fraktur A, Deseret, emoji
)
HOSTILE_CHARS = (
    "\u200b\u200c\u200d\u2060\ufeff"  # zero width
    "\x00\x07\x1f\x7f\x85"  # control
    "\u202e\u2066\u200f"  # bidirectional controls
    "\u2028\u2029\u3000\xa0 \t\n"  # separators and spaces
    '\uff20@"(),:;<>[\\]'  # full-width at-sign and specials of the address syntax
)
FRIENDLY = string.ascii_letters + string.digits + ".-_+" + SPECIALS
WHITESPACE = ("", " ", "\t", "\n", "\xa0", "\u3000", "\u2028", "\x1c")

local_chars = st.one_of(
    st.sampled_from(FRIENDLY),
    st.sampled_from(HOSTILE_CHARS),
    st.characters(),  # any code point but a surrogate
    st.characters(min_codepoint=0x300, max_codepoint=0x36F),  # combining marks
    st.characters(min_codepoint=0xFF01, max_codepoint=0xFF5E),  # full-width forms
    st.characters(categories=["Cs"]),  # lone surrogates
    st.characters(categories=["Cc"]),  # control characters
)

DOMAIN_CLASSES: tuple[tuple[str, ...], ...] = (
    ("bücher", "BÜCHER", "Bücher", "xn--bcher-kva", "XN--BCHER-KVA", "bu\u0308cher"),
    ("x", "X", "\uff58"),  # full-width x
    ("straße", "xn--strae-oqa", "strasse", "STRASSE"),
    ("σίσυφος", "ΣΊΣΥΦΟΣ", "σίσυφοσ"),
    ("mail",),
    # long enough that a local part of 62 to 64 characters crosses 254 for the whole address,
    # in Unicode or (longer) in punycode
    ("b" * 60 + ".c" * 30 + "." + "d" * 51, "B" * 60 + ".C" * 30 + "." + "D" * 51),
    ("ü" * 40 + "." + "c" * 60 + "." + "d" * 45, "Ü" * 40 + "." + "C" * 60 + "." + "d" * 45),
)
DOMAIN_LABELS = tuple(label for labels in DOMAIN_CLASSES for label in labels)


def _at(s: str, i: int) -> int:
    return i % (len(s) + 1)


def _replace_one(s: str, old: str, new: str) -> str:
    return s.replace(old, new, 1)


TRANSFORMS: dict[str, Callable[[str, int], str]] = {
    "upper": lambda s, i: s.upper(),
    "lower": lambda s, i: s.lower(),
    "casefold": lambda s, i: s.casefold(),
    "swapcase": lambda s, i: s.swapcase(),
    "full_width": lambda s, i: s.translate(FULL_WIDTH),
    "NFD": lambda s, i: unicodedata.normalize("NFD", s),
    "NFC": lambda s, i: unicodedata.normalize("NFC", s),
    "NFKC": lambda s, i: unicodedata.normalize("NFKC", s),
    "NFKD": lambda s, i: unicodedata.normalize("NFKD", s),
    "ligate": lambda s, i: _ligate(s),
    "unligate": lambda s, i: s.translate(UNLIGATE),
    "add_accent": lambda s, i: s[: _at(s, i)] + "\u0301" + s[_at(s, i) :],
    "strip_accents": lambda s, i: "".join(
        c for c in unicodedata.normalize("NFD", s) if not unicodedata.combining(c)
    ),
    "sharp_s": lambda s, i: _replace_one(s, "ß", "ss") if "ß" in s else s.replace("ss", "ß"),
    "capital_sharp_s": lambda s, i: s.replace("ß", "ẞ"),
    "final_sigma": lambda s, i: s.translate(str.maketrans("σςΣ", "ςΣσ")),
    "dotted_i": lambda s, i: s.replace("i", "İ").replace("I", "\u0131"),
    "zero_width": lambda s, i: s[: _at(s, i)] + "\u200b" + s[_at(s, i) :],
    "drop_char": lambda s, i: s[: _at(s, i)] + s[_at(s, i) + 1 :],
    "double": lambda s, i: s + s,
}
TRANSFORM_NAMES = sorted(TRANSFORMS)


def _ligate(s: str) -> str:
    for plain, lig in LIGATURES:
        s = s.replace(plain, lig)
    return s


@dataclass(frozen=True)
class Address:
    """An address whose domain ends in a per-example label, filled in by `render`."""

    before: str
    local: str
    label: str
    upper_suffix: bool
    after: str

    def render(self, tag: str) -> str:
        suffix = f"t{tag}.example"
        if self.upper_suffix:
            suffix = suffix.upper()
        return f"{self.before}{self.local}@{self.label}.{suffix}{self.after}"


@st.composite
def local_parts(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 5))
    if kind < 4:
        return draw(st.text(st.sampled_from(FRIENDLY), min_size=1, max_size=12))
    if kind < 5:  # around the 64 character limit, before or after folding
        char = draw(st.sampled_from("aß\ufb03\u01c5é\U0001d41a\u0958"))
        return char * draw(st.integers(18, 66))
    return draw(st.text(local_chars, min_size=1, max_size=24))


@st.composite
def address_pairs(draw: st.DrawFn) -> tuple[Address, Address]:
    """A first address and a second one: usually a transformed twin (to collide), sometimes
    an independent draw (to be distinct, or refused)."""
    local_a = draw(local_parts())
    label_a = draw(st.sampled_from(DOMAIN_LABELS))
    a = Address(
        before=draw(st.sampled_from(WHITESPACE)),
        local=local_a,
        label=label_a,
        upper_suffix=draw(st.booleans()),
        after=draw(st.sampled_from(WHITESPACE)),
    )
    if draw(st.integers(0, 4)) < 4:
        local_b = local_a
        steps = draw(
            st.lists(st.tuples(st.sampled_from(TRANSFORM_NAMES), st.integers(0, 30)), max_size=3)
        )
        for transform, position in steps:
            local_b = TRANSFORMS[transform](local_b, position)
        note(f"twin transforms: {steps}")
    else:
        local_b = draw(local_parts())
    siblings = next(labels for labels in DOMAIN_CLASSES if label_a in labels)
    label_b = draw(st.one_of(st.sampled_from(siblings), st.sampled_from(DOMAIN_LABELS)))
    b = Address(
        before=draw(st.sampled_from(WHITESPACE)),
        local=local_b,
        label=label_b,
        upper_suffix=draw(st.booleans()),
        after=draw(st.sampled_from(WHITESPACE)),
    )
    return a, b


@st.composite
def names(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 19))
    if kind < 17:
        return draw(st.text(st.sampled_from(string.ascii_letters + " éüßΣ"), min_size=1))
    if kind < 19:
        return draw(st.text(local_chars, max_size=20))
    return draw(
        st.sampled_from(
            ["", "   ", "evil\u202egnp", "a\x07b", "a\u2028b", "a\ud800b", "x" * 201, "\ufdfa"]
        )
    )


# --- talking to the stack ------------------------------------------------------------------

OBSERVED: Counter[str] = Counter()
"""What the property run saw, to show that collisions and refusals really happened."""


@dataclass(frozen=True)
class Sent:
    email: str
    name: str
    answer: httpx.Response


async def register(client: httpx.AsyncClient, url: str, email: str, name: str) -> Sent:
    content = json.dumps({"email": email, "name": name, "badge_type": "STD"}, ensure_ascii=True)
    received = json.loads(content)
    answer = await client.post(
        url, content=content.encode(), headers={"content-type": "application/json"}
    )
    if currently_in_test_context():
        note(f"POST {received!r} -> {answer.status_code} {answer.text}")
    return Sent(received["email"], received["name"], answer)


def assert_well_formed(answer: httpx.Response) -> dict[str, Any]:
    assert answer.status_code < 500, (answer.status_code, answer.text)
    assert answer.status_code != 202, f"no decision within the wait: {answer.text}"
    assert "Traceback" not in answer.text
    body: dict[str, Any] = answer.json()
    if 400 <= answer.status_code < 500:
        assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
        assert body["status"] == answer.status_code
        assert {"type", "title", "status"} <= set(body)
    return body


def assert_answer(sent: Sent, expected: int, *, conflict_with: str | None = None) -> None:
    """`expected` is 201, 409 (already registered), 422 (refused body) or 400 (a lone
    surrogate in the body)."""
    answer = sent.answer
    body = assert_well_formed(answer)
    assert answer.status_code in ANSWERS | {400}, (answer.status_code, answer.text)
    assert answer.status_code == expected, (
        f"expected {expected} for email={sent.email!r} name={sent.name!r}"
        + (f" after {conflict_with!r}" if conflict_with else "")
        + f": got {answer.status_code} {answer.text}"
    )
    if expected == 201:
        assert body["status"] == "confirmed", body
        assert body["email"] == email_identity(sent.email).address, body
        assert body["name"] == check_text(sent.name), body
    elif expected == 409:
        assert body["reason"] == "already_registered", body
        assert answer.headers["location"].startswith("/api/v1/registrations/")
    elif expected == 422:
        fields = {error.get("field") for error in body.get("errors", [])}
        if expected_key(sent.email) is None:
            assert "email" in fields, body
        if not name_is_valid(sent.name):
            assert "name" in fields, body


def expect_single(email: str, name: str) -> int:
    """The answer to a registration that meets no other registration of its address."""
    if _has_lone_surrogate(email) or _has_lone_surrogate(name):
        return 400
    return 201 if expected_key(email) is not None and name_is_valid(name) else 422


@pytest.fixture(scope="module")
async def convention_id(stack: Stack) -> str:
    return await create_open_convention(stack, QUOTA)


@pytest.fixture(scope="module")
async def dead_letters_before(stack: Stack) -> dict[str, int]:
    async with stack.client() as client:
        health = await client.get("/health")
    assert health.status_code == 200, health.text
    return dict(health.json()["dead_letters"])


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pair=address_pairs(), name_a=names(), name_b=names(), together=st.booleans())
async def test_the_pipeline_agrees_with_email_key(
    stack: Stack,
    convention_id: str,
    dead_letters_before: dict[str, int],
    pair: tuple[Address, Address],
    name_a: str,
    name_b: str,
    together: bool,
) -> None:
    """`together=False`: a is decided, then b meets a's registration loaded from MariaDB.
    `together=True`: both are sent at once, so they often share one decider batch and b
    meets a in the decider's memory; then exactly one of a colliding pair is confirmed."""
    tag = uuid.uuid4().hex[:8]
    first, second = (address.render(tag) for address in pair)
    url = f"/api/v1/conventions/{convention_id}/registrations"
    async with stack.client() as client:
        if together:
            a, b = await asyncio.gather(
                register(client, url, first, name_a), register(client, url, second, name_b)
            )
        else:
            a = await register(client, url, first, name_a)
            assert_answer(a, expect_single(a.email, a.name))
            b = await register(client, url, second, name_b)

    key_a, key_b = expected_key(a.email), expected_key(b.email)
    note(f"email_key: {key_a!r} / {key_b!r}")
    expected_a, expected_b = expect_single(a.email, a.name), expect_single(b.email, b.name)
    if expected_a == expected_b == 201 and key_a == key_b:
        if together and a.answer.status_code == 409:
            expected_a = 409  # b was decided first
        else:
            expected_b = 409
    assert_answer(a, expected_a, conflict_with=b.email if expected_a == 409 else None)
    assert_answer(b, expected_b, conflict_with=a.email)

    outcome = {201: "distinct", 409: "collision", 422: "refused", 400: "surrogate"}
    event(f"second: {outcome[b.answer.status_code]}")
    OBSERVED[outcome[a.answer.status_code]] += 1
    OBSERVED[outcome[b.answer.status_code]] += 1


# --- the classes from the original report --------------------------------------------------

FIXED_CASES = [
    # (first, second, what the second gets); `{d}` is a fresh domain per case
    ("jose@{d}", "jos\u00e9@{d}", "distinct"),  # the original crash
    ("jose@{d}", "JOS\u00c9@{d}", "distinct"),
    ("\uff4a\uff4f\uff53\uff45@{d}", "jose@{d}", "conflict"),
    ("\ufb01@{d}", "fi@{d}", "conflict"),
    ("e\u0301@{d}", "\u00e9@{d}", "conflict"),  # NFD, then NFC
    ("Straße@{d}", "STRASSE@{d}", "conflict"),
    ("σοφός@{d}", "ΣΟΦΌΣ@{d}", "conflict"),
    ("\u212aelvin@{d}", "kelvin@{d}", "conflict"),
    ("\u0131@{d}", "i@{d}", "distinct"),  # dotless i
    ("ada@bücher.{d}", " ADA@XN--BCHER-KVA.{D} ", "conflict"),
    ("ada@straße.{d}", "ada@strasse.{d}", "distinct"),
    ("\ufb03" * 21 + "@{d}", "\ufb03" * 22 + "@{d}", "invalid"),  # 63, then 66 under NFKC
    ("a@{d}", "\ufdfa" * 4 + "@{d}", "invalid"),  # 72 characters (and spaces) under NFKC
    ("ß" * 32 + "@{d}", "SS" * 32 + "@{d}", "conflict"),  # 64 once case folded
    ("a@{d}", "ß" * 33 + "@{d}", "invalid"),  # 66 once case folded
    ("a@{d}", "a\uff20b@{d}", "invalid"),  # full-width at-sign in the local part
]


FIXED_IDS = [
    "jose-jose-acute",
    "jose-JOSE-ACUTE",
    "full-width-jose",
    "fi-ligature",
    "nfd-nfc",
    "sharp-s",
    "final-sigma",
    "kelvin-sign",
    "dotless-i",
    "idn-domain",
    "sharp-s-domain",
    "ffi-past-64",
    "fdfa-past-64",
    "sharp-s-64",
    "sharp-s-past-64",
    "full-width-at-sign",
]


@pytest.mark.parametrize(("first", "second", "expect"), FIXED_CASES, ids=FIXED_IDS)
async def test_the_reported_classes(
    stack: Stack, convention_id: str, first: str, second: str, expect: str
) -> None:
    domain = f"t{uuid.uuid4().hex[:8]}.example"

    def fill(template: str) -> str:
        return template.replace("{d}", domain).replace("{D}", domain.upper())

    url = f"/api/v1/conventions/{convention_id}/registrations"
    status = {"distinct": 201, "conflict": 409, "invalid": 422}[expect]
    async with stack.client() as client:
        a = await register(client, url, fill(first), "First")
        assert_answer(a, 201)
        b = await register(client, url, fill(second), "Second")
        assert_answer(b, status, conflict_with=a.email)
        after = await register(client, url, f"after@{domain}", "After")
        assert_answer(after, 201)
    assert (email_key(a.email) == expected_key(b.email)) == (expect == "conflict")


# --- afterwards ------------------------------------------------------------------------------


async def test_the_decider_still_decides_afterwards(
    stack: Stack, convention_id: str, dead_letters_before: dict[str, int]
) -> None:
    tag = uuid.uuid4().hex[:8]
    async with stack.client() as client:
        answer = await client.post(
            f"/api/v1/conventions/{convention_id}/registrations",
            json={"email": f"plain@t{tag}.example", "name": "Plain", "badge_type": "STD"},
        )
        assert answer.status_code == 201, answer.text
        health = await client.get("/health")
    assert health.status_code == 200, health.text
    assert health.json()["dead_letters"] == dead_letters_before, "requests were set aside"
    if OBSERVED:  # the property test ran in this session: pairs did collide, and not always
        # (refusals are frequent too, but not certain in 60 examples; the fixed cases have them)
        assert {"distinct", "collision"} <= set(OBSERVED), OBSERVED
