"""Check-in at the door end to end (`docs/CHECKIN.md`), through the gateway, the registration
decider and the website projector, each its own process:

- the rush at the gates: 250 confirmed registrations, 4 stations, 1,000 scans within a
  minute: tokens scanned at two stations, scans sent twice, an offline station syncing
  batches scanned earlier (and syncing them again). Every registration ends checked in
  exactly once, by its earliest scan; the summary, the listing and the station's ticket list
  agree; every other scan is answered 409 or shown superseded; nothing answers 5xx;
- refusals, each with its reason: forged, tampered, unknown key, garbage, another
  convention's ticket, a cancelled registration's, the ticket a transfer replaced, an unpaid
  registration's, a registration the convention does not have;
- who may: an attendee cannot check themself in (403); the ticket is its owner's, staff's
  and admins' (404 for another attendee), as JSON, SVG and PDF; the confirmation mail
  carries it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from schemas.tickets import (
    SigningKey,
    TicketClaims,
    issue,
    new_seed,
    parse_keys,
    public_keys,
    sign,
    verify,
)
from tests.conftest import TEST_TICKET_KEYS
from tests.e2e.conftest import Stack
from tests.e2e.test_accounts import (
    bearer,
    fresh_email,
    mail_to,
    problem_type,
    session_token,
    verified_account,
)
from tests.support import eventually

pytestmark = pytest.mark.e2e

KEYS = parse_keys(TEST_TICKET_KEYS)
STATIONS = ("gate-1", "gate-2", "gate-3", "gate-4")
ONLINE = STATIONS[:3]
OFFLINE = STATIONS[3]
RUSH = 250
IN_FLIGHT_PER_STATION = 6
SYNC_BATCH = 50


def staff_url(convention_id: str, tail: str = "") -> str:
    return f"/api/v1/staff/conventions/{convention_id}{tail}"


async def new_convention(stack: Stack, name: str, *, paid_quota: int = 0) -> str:
    badge_types = [{"code": "STD", "name": "Standard", "price_cents": 0, "quota": 400}]
    if paid_quota:
        badge_types.append(
            {"code": "PAID", "name": "Supporter", "price_cents": 2500, "quota": paid_quota}
        )
    async with stack.client() as client:
        created = await client.post(
            "/api/v1/admin/conventions",
            headers=stack.admin,
            json={
                "name": name,
                "starts_on": "2027-06-01",
                "ends_on": "2027-06-03",
                "badge_types": badge_types,
            },
        )
        assert created.status_code == 201, created.text
        convention_id = str(created.json()["convention_id"])
        opened = await client.post(
            f"/api/v1/admin/conventions/{convention_id}/open", headers=stack.admin
        )
        assert opened.status_code == 200, opened.text
    return convention_id


async def register(
    client: httpx.AsyncClient,
    convention_id: str,
    *,
    badge_type: str = "STD",
    email: str | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    made = await client.post(
        f"/api/v1/conventions/{convention_id}/registrations",
        headers=headers or {},
        json={
            "email": email or fresh_email("door"),
            "name": "Ada Lovelace",
            "badge_type": badge_type,
        },
    )
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def ticket_of(
    client: httpx.AsyncClient, registration_id: str, headers: dict[str, str]
) -> str:
    answer = await client.get(f"/api/v1/registrations/{registration_id}/ticket", headers=headers)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"])


async def staff_of(stack: Stack, convention_id: str, tag: str) -> dict[str, str]:
    email = fresh_email(tag)
    account_id = await verified_account(stack, email)
    async with stack.client() as client:
        granted = await client.post(
            f"/api/v1/admin/accounts/{account_id}/roles",
            headers=stack.admin,
            json={"role": "staff", "convention_id": convention_id},
        )
    assert granted.status_code == 200, granted.text
    return bearer(await session_token(stack, email))


async def all_scans(
    client: httpx.AsyncClient, convention_id: str, headers: dict[str, str]
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        page = await client.get(
            staff_url(convention_id, "/check-ins"), headers=headers, params=params
        )
        assert page.status_code == 200, page.text
        items.extend(page.json()["items"])
        cursor = page.json()["next"]
        if cursor is None:
            return items


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


# --- (a) the rush at the gates ----------------------------------------------------------------


@dataclass
class Sent:
    """One request a station sent: a single scan or a sync batch, and what it was answered."""

    bodies: list[dict[str, Any]]
    resend: bool = False
    answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)


def scan_body(token: str, station: str, at: datetime | None = None) -> dict[str, Any]:
    """A scan as a station sends it; one scanned online gets its time when it is sent."""
    body = {"token": token, "station": station, "scan_id": str(uuid.uuid4())}
    if at is not None:
        body["scanned_at"] = at.isoformat()
    return body


async def test_the_rush_at_the_gates_checks_everyone_in_exactly_once(stack: Stack) -> None:
    convention_id = await new_convention(stack, "Door Rush Con")
    staff = await staff_of(stack, convention_id, "door-staff")
    started = time.monotonic()

    gate = asyncio.Semaphore(25)
    async with stack.client() as client:

        async def one() -> tuple[str, str]:
            async with gate:
                registration_id = str((await register(client, convention_id))["registration_id"])
                return registration_id, await ticket_of(client, registration_id, staff)

        tickets = await asyncio.gather(*(one() for _ in range(RUSH)))
    registrations = [registration_id for registration_id, _ in tickets]
    tokens = [token for _, token in tickets]
    for registration_id, token in tickets:
        assert str(verify(token, public_keys(KEYS)).registration_id) == registration_id

    # What each station will send. Online stations scan as people arrive (their clock when
    # they send); gate-4 was offline ten minutes ago and syncs what it scanned then, twice.
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    queues: dict[str, list[Sent]] = {station: [] for station in STATIONS}
    first: list[Sent] = []
    for i, token in enumerate(tokens):  # 250 first scans
        sent = Sent([scan_body(token, ONLINE[i % 3])])
        queues[ONLINE[i % 3]].append(sent)
        first.append(sent)
    for i, token in enumerate(tokens[:150]):  # 150 tokens scanned at a second station
        queues[ONLINE[(i + 1) % 3]].append(Sent([scan_body(token, ONLINE[(i + 1) % 3])]))
    for i in range(50, 200):  # 150 scans sent twice (the answer was lost)
        queues[ONLINE[i % 3]].append(Sent(first[i].bodies, resend=True))
    offline = (
        [
            scan_body(token, OFFLINE, ten_minutes_ago + timedelta(seconds=i))
            for i, token in enumerate(tokens[100:250])
        ]
        + [  # the same ticket scanned twice at the offline station, 30 s later
            scan_body(token, OFFLINE, ten_minutes_ago + timedelta(seconds=i + 30))
            for i, token in enumerate(tokens[100:150])
        ]
    )
    offline.reverse()  # later scans reach the decider first
    batches = [offline[i : i + SYNC_BATCH] for i in range(0, len(offline), SYNC_BATCH)]
    queues[OFFLINE] += [Sent(batch) for batch in batches]  # 200 scans
    queues[OFFLINE] += [Sent(batch, resend=True) for batch in batches]  # 200 again
    for token in tokens[200:250]:  # 50 online scans once gate-4 is back
        queues[OFFLINE].append(Sent([scan_body(token, OFFLINE)]))
    for station in ONLINE:  # second scans and resends mixed in after the first scans
        head, tail = queues[station][: RUSH // 3 + 1], queues[station][RUSH // 3 + 1 :]
        queues[station] = head + tail[::2] + tail[1::2]
    scans_sent = sum(len(sent.bodies) for queue in queues.values() for sent in queue)
    assert scans_sent == 1000

    async def station(name: str, queue: list[Sent]) -> None:
        if name == OFFLINE:
            # Back online once the others have checked in some of the tickets gate-4 scanned
            # earlier: those of its scans must replace check-ins already made.

            async def checked_in_online() -> int:
                return sum(1 for sent in first[100:250] if sent.answers)

            await eventually(
                checked_in_online,
                lambda n: n >= 20,
                timeout=60,
                what="online check-ins of tickets gate-4 scanned offline",
            )
        in_flight = asyncio.Semaphore(IN_FLIGHT_PER_STATION)
        async with stack.client() as client:

            async def send(sent: Sent) -> None:
                async with in_flight:
                    if len(sent.bodies) == 1:
                        sent.bodies[0].setdefault("scanned_at", datetime.now(UTC).isoformat())
                        answer = await client.post(
                            staff_url(convention_id, "/check-ins"),
                            headers=staff,
                            json=sent.bodies[0],
                        )
                        sent.answers = [(answer.status_code, answer.json())]
                    else:
                        answer = await client.post(
                            staff_url(convention_id, "/check-ins/sync"),
                            headers=staff,
                            json={"scans": sent.bodies},
                        )
                        assert answer.status_code == 200, answer.text
                        sent.answers = [(r["status"], r) for r in answer.json()["results"]]

            await asyncio.gather(*(send(sent) for sent in queue))

    await asyncio.gather(*(station(name, queue) for name, queue in queues.items()))
    scanning = time.monotonic() - started

    every = [sent for queue in queues.values() for sent in queue]
    statuses = Counter(status for sent in every for status, _ in sent.answers)
    assert sum(statuses.values()) == 1000
    assert all(status < 500 for status in statuses), statuses
    assert set(statuses) <= {201, 202, 409}, statuses

    async with stack.client() as client:
        for sent in every:  # a scan still undecided at its answer: poll where it points
            for n, (status, body) in enumerate(sent.answers):
                if status == 202:
                    polled = await eventually(
                        lambda body=body: client.get(body["location"], headers=staff),
                        lambda answer: answer.status_code == 200,
                        what="the scan decided",
                    )
                    sent.answers[n] = (0, polled.json())
        rows = await all_scans(client, convention_id, staff)
        summary = await client.get(staff_url(convention_id, "/check-ins/summary"), headers=staff)
        listing = await client.get(staff_url(convention_id, "/tickets"), headers=staff)
    assert summary.status_code == 200, summary.text
    assert listing.status_code == 200, listing.text

    # Each scan decided once: one row per scan id sent, however often it was sent.
    bodies = {body["scan_id"]: body for sent in every for body in sent.bodies}
    assert sorted(row["scan_id"] for row in rows) == sorted(bodies)
    token_of = dict(zip(tokens, registrations, strict=True))
    expected_winner = {}
    for body in bodies.values():
        registration_id = token_of[body["token"]]
        rank = (moment(body["scanned_at"]), body["station"], body["scan_id"])
        if registration_id not in expected_winner or rank < expected_winner[registration_id]:
            expected_winner[registration_id] = rank
    by_registration: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_registration[row["registration_id"]].append(row)
    assert set(by_registration) == set(registrations)
    for registration_id, its_rows in by_registration.items():
        winners = [row for row in its_rows if row["outcome"] == "checked_in"]
        assert len(winners) == 1, its_rows
        assert winners[0]["scan_id"] == expected_winner[registration_id][2], its_rows
        for row in its_rows:
            if row is not winners[0]:
                assert row["outcome"] in ("superseded", "already_checked_in"), row
                assert row["winner_station"] == winners[0]["station"], row
                assert moment(row["winner_scanned_at"]) == moment(winners[0]["scanned_at"]), row

    # Every scan answered 201 is the check-in, or shown superseded; every 409 names the
    # check-in as it stood; a scan sent again is answered as it was decided.
    outcome_of = {row["scan_id"]: row["outcome"] for row in rows}
    answered: dict[str, list[int]] = defaultdict(list)
    for sent in every:
        for body, (status, answer) in zip(sent.bodies, sent.answers, strict=True):
            if status:
                answered[body["scan_id"]].append(status)
            if status == 201:
                assert outcome_of[body["scan_id"]] in ("checked_in", "superseded"), answer
                assert answer["registration_id"] == token_of[body["token"]]
                assert answer["badge_pdf_url"].endswith("/badge.pdf")
            elif status == 409:
                assert outcome_of[body["scan_id"]] in ("superseded", "already_checked_in")
                assert answer["checked_in_station"] in STATIONS, answer
                assert answer["checked_in_at"] is not None, answer
    for scan_id, seen in answered.items():
        if len(seen) > 1:
            assert len(set(seen)) == 1 or (
                set(seen) == {201, 409} and outcome_of[scan_id] == "superseded"
            ), (scan_id, seen)
    offline_winners = {
        token_of[body["token"]] for body in offline if outcome_of[body["scan_id"]] == "checked_in"
    }
    assert offline_winners == set(registrations[100:250]), "the offline station's earlier scans won"

    # The summary, the listing and the stations' ticket list agree.
    counted = summary.json()
    assert counted["registered"] == RUSH
    assert counted["checked_in"] == RUSH
    assert counted["by_badge_type"] == [
        {"badge_type": "STD", "registered": RUSH, "checked_in": RUSH}
    ]
    assert sum(hour["checked_in"] for hour in counted["by_hour"]) == RUSH
    conflicts = {
        (c["registration_id"], c["superseded_station"], moment(c["superseded_scanned_at"]))
        for c in counted["conflicts"]
    }
    superseded = {
        (row["registration_id"], row["station"], moment(row["scanned_at"]))
        for row in rows
        if row["outcome"] == "superseded"
    }
    assert conflicts == superseded
    assert len(superseded) > 0, "offline scans replaced check-ins the online stations made"
    station_list = listing.json()
    assert [k["kid"] for k in station_list["keys"]] == [KEYS[0].kid]
    assert (
        base64.urlsafe_b64decode(station_list["keys"][0]["public_key"] + "=") == KEYS[0].public_raw
    )
    winner_rows = {row["registration_id"]: row for row in rows if row["outcome"] == "checked_in"}
    assert len(station_list["tickets"]) == RUSH
    for entry in station_list["tickets"]:
        won = winner_rows[entry["registration_id"]]
        assert (entry["checked_in_station"], moment(entry["checked_in_at"])) == (
            won["station"],
            moment(won["scanned_at"]),
        )
        assert entry["serial"] == 0
    assert scanning < 60, f"the rush took {scanning:.1f} s"


# --- (b) refusals ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Desk:
    convention_id: str
    staff: dict[str, str]


@pytest.fixture(scope="module")
async def desk(stack: Stack) -> Desk:
    convention_id = await new_convention(stack, "Door Refusals Con", paid_quota=5)
    return Desk(convention_id, await staff_of(stack, convention_id, "refusal-staff"))


async def check_in(
    client: httpx.AsyncClient,
    desk: Desk,
    token: str,
    *,
    headers: dict[str, str] | None = None,
    convention_id: str | None = None,
) -> httpx.Response:
    return await client.post(
        staff_url(convention_id or desk.convention_id, "/check-ins"),
        headers=desk.staff if headers is None else headers,
        json={"token": token, "station": "desk-1"},
    )


def reason(answer: httpx.Response) -> str:
    assert answer.status_code == 422, answer.text
    assert problem_type(answer) == "ticket-refused", answer.text
    return str(answer.json()["reason"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_tickets_that_admit_nobody_are_refused_with_their_reason(
    stack: Stack, desk: Desk
) -> None:
    other_convention = await new_convention(stack, "Door Elsewhere Con")
    async with stack.client() as client:
        untouched = str((await register(client, desk.convention_id))["registration_id"])
        genuine = await ticket_of(client, untouched, desk.staff)
        claims = verify(genuine, public_keys(KEYS))

        foreign_key = SigningKey.from_seed(KEYS[0].kid, new_seed())
        assert reason(await check_in(client, desk, sign(claims, foreign_key))) == "bad_signature"
        rogue = SigningKey.from_seed("rogue", new_seed())
        rogue_claims = TicketClaims(claims.registration_id, claims.convention_id, "STD", 0, "rogue")
        assert reason(await check_in(client, desk, sign(rogue_claims, rogue))) == "unknown_key"
        prefix, body, signature = genuine.split(".")
        edited = json.loads(base64.urlsafe_b64decode(body + "==")) | {"b": "VIP"}
        tampered = b64(json.dumps(edited, separators=(",", ":"), sort_keys=True).encode())
        assert (
            reason(await check_in(client, desk, f"{prefix}.{tampered}.{signature}"))
            == "bad_signature"
        )
        assert reason(await check_in(client, desk, "hello, door")) == "malformed"
        assert reason(await check_in(client, desk, "BT1." + "A" * 1000)) == "malformed"

        elsewhere = str((await register(client, other_convention))["registration_id"])
        wrong = await ticket_of(client, elsewhere, stack.admin)
        refused = await check_in(client, desk, wrong)
        assert reason(refused) == "wrong_convention"

        cancelled = str((await register(client, desk.convention_id))["registration_id"])
        revoked = await ticket_of(client, cancelled, desk.staff)
        gone = await client.delete(f"/api/v1/registrations/{cancelled}", headers=stack.admin)
        assert gone.status_code == 200, gone.text
        assert reason(await check_in(client, desk, revoked)) == "revoked"
        no_ticket = await client.get(
            f"/api/v1/registrations/{cancelled}/ticket", headers=desk.staff
        )
        assert no_ticket.status_code == 409, no_ticket.text
        assert problem_type(no_ticket) == "no-ticket"

        given = str((await register(client, desk.convention_id))["registration_id"])
        before = await ticket_of(client, given, desk.staff)
        taker = fresh_email("door-taker")
        await verified_account(stack, taker)
        moved = await client.post(
            f"/api/v1/registrations/{given}/transfer", headers=stack.admin, json={"to_email": taker}
        )
        assert moved.status_code == 200, moved.text
        after = await ticket_of(client, given, desk.staff)
        assert (
            verify(after, public_keys(KEYS)).serial == verify(before, public_keys(KEYS)).serial + 1
        )
        assert reason(await check_in(client, desk, before)) == "revoked"
        admitted = await check_in(client, desk, after)
        assert admitted.status_code == 201, admitted.text

        unpaid = await register(client, desk.convention_id, badge_type="PAID")
        assert unpaid["status"] == "pending_payment"
        asked = await client.get(
            f"/api/v1/registrations/{unpaid['registration_id']}/ticket", headers=desk.staff
        )
        assert asked.status_code == 409, asked.text
        assert problem_type(asked) == "no-ticket"
        unpaid_token = issue(
            uuid.UUID(unpaid["registration_id"]), uuid.UUID(desk.convention_id), "PAID", 0, KEYS
        )
        assert reason(await check_in(client, desk, unpaid_token)) == "not_paid"

        stranger_id = uuid.uuid4()
        stranger = issue(stranger_id, uuid.UUID(desk.convention_id), "STD", 0, KEYS)
        assert reason(await check_in(client, desk, stranger)) == "unknown_registration"

        batch = await client.post(
            staff_url(desk.convention_id, "/check-ins/sync"),
            headers=desk.staff,
            json={
                "scans": [
                    {
                        "token": token,
                        "station": "desk-2",
                        "scanned_at": datetime.now(UTC).isoformat(),
                        "scan_id": str(uuid.uuid4()),
                    }
                    for token in ("garbage", genuine, revoked, wrong)
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        results = batch.json()["results"]
        for wrong_clock in (
            datetime(1990, 1, 1, tzinfo=UTC),
            datetime.now(UTC) + timedelta(days=1),
        ):
            skewed = await client.post(
                staff_url(desk.convention_id, "/check-ins"),
                headers=desk.staff,
                json={"token": genuine, "station": "desk-3", "scanned_at": wrong_clock.isoformat()},
            )
            assert reason(skewed) == "bad_scan_time", "a wrong clock never wins the check-in"
        assert [(r["status"], r.get("reason")) for r in results] == [
            (422, "malformed"),
            (201, None),
            (422, "revoked"),
            (422, "wrong_convention"),
        ], "one bad scan spoils no other"

        rows = await all_scans(client, desk.convention_id, desk.staff)
        published_elsewhere = await all_scans(client, other_convention, stack.admin)
    mine = {untouched, cancelled, given, unpaid["registration_id"], str(stranger_id)}
    decided = Counter(row["outcome"] for row in rows if row["registration_id"] in mine)
    assert decided == Counter(
        {"checked_in": 2, "revoked": 3, "not_paid": 1, "unknown_registration": 1}
    ), rows
    assert [row["outcome"] for row in rows if row["registration_id"] == untouched] == [
        "checked_in"
    ], "forged, tampered and garbage tokens are refused before anything is published"
    assert published_elsewhere == [], "so is another convention's ticket"


# --- (c) who may ------------------------------------------------------------------------------


async def test_an_attendee_sees_their_ticket_but_checks_nobody_in(stack: Stack, desk: Desk) -> None:
    owner_email, other_email = fresh_email("door-owner"), fresh_email("door-other")
    await asyncio.gather(verified_account(stack, owner_email), verified_account(stack, other_email))
    owner = bearer(await session_token(stack, owner_email))
    other = bearer(await session_token(stack, other_email))
    async with stack.client() as client:
        mine = await register(client, desk.convention_id, email=owner_email, headers=owner)
        registration_id = str(mine["registration_id"])
        assert mine["account_id"] is not None
        url = f"/api/v1/registrations/{registration_id}/ticket"

        shown = await client.get(url, headers=owner)
        assert shown.status_code == 200, shown.text
        ticket = shown.json()
        assert ticket["registration_id"] == registration_id
        assert ticket["convention_id"] == desk.convention_id
        assert (ticket["badge_type"], ticket["serial"]) == ("STD", 0)
        assert ticket["qr_svg_url"] == url + ".svg"
        assert ticket["pdf_url"] == url + ".pdf"
        assert str(verify(ticket["token"], public_keys(KEYS)).registration_id) == registration_id
        assert (await client.get(url, headers=other)).status_code == 404
        assert (await client.get(url)).status_code == 404
        by_staff = await client.get(url, headers=desk.staff)
        assert by_staff.status_code == 200, by_staff.text
        assert by_staff.json()["token"] == ticket["token"], "Ed25519 signs alike every time"

        svg = await client.get(url + ".svg", headers=owner)
        assert svg.status_code == 200, svg.text
        assert svg.headers["content-type"].startswith("image/svg+xml")
        assert svg.content.lstrip().startswith(b"<svg")
        pdf = await client.get(url + ".pdf", headers=owner)
        assert pdf.status_code == 200, pdf.text
        assert pdf.headers["content-type"].startswith("application/pdf")
        assert pdf.content.startswith(b"%PDF")
        assert (await client.get(url + ".pdf", headers=other)).status_code == 404

        for attempt in (
            client.post(
                staff_url(desk.convention_id, "/check-ins"),
                headers=owner,
                json={"token": ticket["token"], "station": "my-phone"},
            ),
            client.post(
                staff_url(desk.convention_id, "/check-ins/sync"), headers=owner, json={"scans": []}
            ),
            client.get(staff_url(desk.convention_id, "/tickets"), headers=owner),
            client.get(staff_url(desk.convention_id, "/check-ins"), headers=owner),
        ):
            refused = await attempt
            assert refused.status_code == 403, refused.text
            assert problem_type(refused) == "forbidden"

        admitted = await check_in(client, desk, ticket["token"])
        assert admitted.status_code == 201, admitted.text
        badge = await client.get(admitted.json()["badge_pdf_url"], headers=desk.staff)
        assert badge.status_code == 200, badge.text
        assert badge.content.startswith(b"%PDF")
        again = await check_in(client, desk, ticket["token"])
        assert again.status_code == 409, again.text
        assert problem_type(again) == "already-checked-in"
        assert again.json()["checked_in_station"] == "desk-1"
        assert moment(again.json()["checked_in_at"]) == moment(admitted.json()["scanned_at"])

    mail = await mail_to(stack, owner_email, "You are registered")
    [attachment] = list(mail.iter_attachments())
    assert attachment.get_content_type() == "image/png"
    assert attachment.get_filename() == "ticket.png"
    assert url + ".pdf" in str(mail.get_body(preferencelist=("plain",)).get_content())
